/**
 * The CI release key of the development fleet: an ed25519 key generated at start, whose
 * public half is the `ciReleaseKey.current` of the generated trust file. A second key,
 * never trusted, signs forged manifests.
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
    sign: (text) => new Uint8Array(Crypto.sign(null, Buffer.from(text, "utf8"), privateKey))
  }
})

/**
 * The trust file an agent of this fleet is given: the release key as `ciReleaseKey.current`
 * and, with TLS, the fleet CA as `rootCaPem`.
 *
 * @since 0.1.0
 */
export const trustConfig = (key: SigningKey, caPem: string | null): TrustConfig => ({
  schemaVersion: 1,
  ciReleaseKey: { current: { algorithm: "ed25519", public: key.publicBase64 }, previous: null, rejectBefore: null },
  cacheKeys: [],
  orgRootKey: null,
  rootCaPem: caPem,
  issuanceCaPems: []
})
