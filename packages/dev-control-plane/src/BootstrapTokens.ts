/**
 * Bootstrap tokens as `nixfleet mint-token` makes them: claims naming a host and the
 * fingerprint of its key, valid between two instants, with a fresh 16-byte nonce, signed
 * (ed25519 over the JCS of the claims) by the org root key of the trust file. The same
 * rules hold for the library call and for `POST /v1/operator/bootstrap-tokens`.
 *
 * @since 0.1.0
 */
import { type BootstrapToken, canonicalize, formatRfc3339, Timestamp } from "@nixfleet/proto"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import { InvalidTokenRequest } from "./DevControlPlaneError.js"
import { fingerprint, parseOpenSshEd25519 } from "./internal/keys.js"
import type { SigningKey } from "./Signing.js"

/**
 * What to mint a token for.
 *
 * @since 0.1.0
 */
export interface MintBootstrapToken {
  /** The machine id the token enrolls (the CN of the host's CSR). */
  readonly hostname: string
  /** The host's key as an OpenSSH public key line, e.g. its `ssh_host_ed25519_key.pub`. */
  readonly pubkey: string
  /** Default now. */
  readonly issuedAt?: Date
  /** Default `issuedAt` + 24 hours. A date in the past mints an expired token. */
  readonly expiresAt?: Date
}

/**
 * The JSON body of `POST /v1/operator/bootstrap-tokens`: a {@link MintBootstrapToken}
 * with dates as RFC 3339 text.
 *
 * @since 0.1.0
 */
export const MintBootstrapTokenJson = Schema.Struct({
  hostname: Schema.String,
  pubkey: Schema.String,
  issuedAt: Schema.optionalWith(Timestamp, { exact: true }),
  expiresAt: Schema.optionalWith(Timestamp, { exact: true })
}).annotations({ identifier: "MintBootstrapTokenJson" })

/**
 * A minted token and the allowlist entry the control plane keeps for its nonce.
 *
 * @since 0.1.0
 */
export interface MintedToken {
  readonly token: BootstrapToken
  readonly nonce: string
  readonly hostname: string
  readonly expiresAt: Date
}

const DEFAULT_VALIDITY_MS = 24 * 60 * 60 * 1000

const timestamp = (date: Date, name: string): Either.Either<string, InvalidTokenRequest> => {
  const text = formatRfc3339(date)
  return text === undefined
    ? Either.left(new InvalidTokenRequest({ reason: `${name} cannot be written as RFC 3339` }))
    : Either.right(text)
}

/**
 * Mints a token signed by `orgRootKey`.
 *
 * @since 0.1.0
 */
export const mint = (
  orgRootKey: SigningKey,
  request: MintBootstrapToken,
  now: Date
): Either.Either<MintedToken, InvalidTokenRequest> =>
  Either.gen(function*() {
    if (request.hostname.trim() === "") return yield* Either.left(new InvalidTokenRequest({ reason: "empty hostname" }))
    const raw = parseOpenSshEd25519(request.pubkey)
    if (raw === undefined) {
      return yield* Either.left(
        new InvalidTokenRequest({ reason: "pubkey must be an OpenSSH ssh-ed25519 public key line" })
      )
    }
    const issuedAt = request.issuedAt ?? now
    const expiresAt = request.expiresAt ?? new Date(issuedAt.getTime() + DEFAULT_VALIDITY_MS)
    if (!(expiresAt.getTime() > issuedAt.getTime())) {
      return yield* Either.left(new InvalidTokenRequest({ reason: "expiresAt must be after issuedAt" }))
    }
    const nonce = Crypto.randomBytes(16).toString("hex")
    const claims = {
      hostname: request.hostname,
      expectedPubkeyFingerprint: fingerprint(raw),
      issuedAt: yield* timestamp(issuedAt, "issuedAt"),
      expiresAt: yield* timestamp(expiresAt, "expiresAt"),
      nonce
    }
    const signature = Buffer.from(orgRootKey.sign(canonicalize(claims))).toString("base64")
    return { token: { version: 1, claims, signature }, nonce, hostname: request.hostname, expiresAt }
  })
