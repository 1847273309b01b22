/**
 * The keys of the development fleet, ed25519 keys generated at start: the CI release key
 * (`ciReleaseKey.current` of the generated trust file), which signs artifacts; the org
 * root key (`orgRootKey.current`), which signs bootstrap tokens; and a key never trusted,
 * which signs forged manifests.
 *
 * @since 0.1.0
 */
import type { TrustConfig } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"

/**
 * An ed25519 key pair able to sign artifacts.
 *
 * @since 0.1.0
 */
export interface SigningKey {
  /** Standard padded base64 of the raw 32-byte public key, as trust files carry it. */
  readonly publicBase64: string
  /** The raw 64-byte ed25519 signature of the UTF-8 bytes of `text`. */
  readonly sign: (text: string) => Uint8Array
  /** Whether `signature` is this key's signature of the UTF-8 bytes of `text`. */
  readonly verify: (text: string, signature: Uint8Array) => boolean
}

/**
 * A fresh ed25519 key pair.
 *
 * @since 0.1.0
 */
export const generate: Effect.Effect<SigningKey> = Effect.sync(() => {
  const { privateKey, publicKey } = Crypto.generateKeyPairSync("ed25519")
  // The JWK `x` member is the raw public key in base64url.
  const jwk = publicKey.export({ format: "jwk" })
  return {
    publicBase64: Buffer.from(jwk.x ?? "", "base64url").toString("base64"),
    sign: (text) => new Uint8Array(Crypto.sign(null, Buffer.from(text, "utf8"), privateKey)),
    verify: (text, signature) => Crypto.verify(null, Buffer.from(text, "utf8"), publicKey, signature)
  }
})

/**
 * The trust file an agent of this fleet is given: the release key as `ciReleaseKey.current`,
 * the org root key as `orgRootKey.current` and, with TLS, the fleet CA as `rootCaPem`.
 *
 * @since 0.1.0
 */
export const trustConfig = (key: SigningKey, orgRootKey: SigningKey, caPem: string | null): TrustConfig => ({
  schemaVersion: 1,
  ciReleaseKey: { current: { algorithm: "ed25519", public: key.publicBase64 }, previous: null, rejectBefore: null },
  cacheKeys: [],
  orgRootKey: {
    current: { algorithm: "ed25519", public: orgRootKey.publicBase64 },
    previous: null,
    rejectBefore: null
  },
  rootCaPem: caPem,
  issuanceCaPems: []
})
