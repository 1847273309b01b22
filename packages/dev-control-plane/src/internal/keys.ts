/**
 * Public keys as the enrollment checks compare them: raw bytes, OpenSSH lines and the
 * fingerprint a bootstrap token names.
 *
 * @internal
 */
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"

const ED25519_TYPE = "ssh-ed25519"

/** One SSH wire-format string (uint32 length, bytes) at `offset`, or undefined past the end. */
const sshString = (bytes: Buffer, offset: number): { value: Buffer; next: number } | undefined => {
  if (offset + 4 > bytes.length) return undefined
  const length = bytes.readUInt32BE(offset)
  const next = offset + 4 + length
  return next > bytes.length ? undefined : { value: bytes.subarray(offset + 4, next), next }
}

/**
 * The raw 32-byte key of an OpenSSH public key line (`ssh-ed25519 AAAA… [comment]`), as
 * `fleet.resolved` declares a host's key; undefined for anything else.
 */
export const parseOpenSshEd25519 = (line: string): Uint8Array | undefined => {
  const [type, blob] = line.trim().split(/\s+/)
  if (type !== ED25519_TYPE || blob === undefined) return undefined
  const bytes = Buffer.from(blob, "base64")
  const name = sshString(bytes, 0)
  if (name === undefined || name.value.toString("latin1") !== ED25519_TYPE) return undefined
  const key = sshString(bytes, name.next)
  return key === undefined || key.value.length !== 32 || key.next !== bytes.length
    ? undefined
    : new Uint8Array(key.value)
}

/**
 * The key bytes a certificate request carries (the `subjectPublicKey` of its SPKI): the
 * 32 bytes of an ed25519 key, the uncompressed point of an EC key, PKCS#1 for RSA.
 */
export const rawPublicKey = (key: Crypto.KeyObject): Uint8Array => {
  switch (key.asymmetricKeyType) {
    case "ed25519":
    case "ed448":
    case "x25519":
    case "x448":
      return new Uint8Array(Buffer.from(key.export({ format: "jwk" }).x ?? "", "base64url"))
    case "ec": {
      const jwk = key.export({ format: "jwk" })
      return new Uint8Array(
        Buffer.concat([Buffer.of(4), Buffer.from(jwk.x ?? "", "base64url"), Buffer.from(jwk.y ?? "", "base64url")])
      )
    }
    case "rsa":
      return new Uint8Array(key.export({ format: "der", type: "pkcs1" }))
    default:
      // Never equal to an ed25519 key or its fingerprint, which is all that matters here.
      return new Uint8Array(key.export({ format: "der", type: "spki" }))
  }
}

/** base64(SHA-256(raw public key)): a bootstrap token's `expectedPubkeyFingerprint`. */
export const fingerprint = (raw: Uint8Array): string => Crypto.createHash("sha256").update(raw).digest("base64")

/** Byte equality. */
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b))
