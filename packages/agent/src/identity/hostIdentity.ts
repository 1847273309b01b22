import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import { privateKeyFrom } from "../support/sshKey.js"

/**
 * The host's ed25519 key (its SSH host key in production) as the agent's certificate key:
 * a CSR signed by it, the fingerprint a bootstrap token names, and the checks that an
 * issued certificate certifies it. The private key stays in memory: only the CSR and the
 * public key leave.
 *
 * @internal
 */
export interface HostKey {
  readonly privateKey: Crypto.KeyObject
  /** The raw 32-byte ed25519 public key. */
  readonly publicKeyRaw: Uint8Array
}

const ED25519 = { name: "Ed25519" }

/**
 * Reads an OpenSSH or PEM private key; throws unless it is ed25519, the only key the
 * control plane certifies.
 *
 * @internal
 */
export const hostKeyFrom = (text: string): HostKey => {
  const privateKey = privateKeyFrom(text)
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new Error(`expected an ed25519 key, got ${privateKey.asymmetricKeyType ?? "an unknown key type"}`)
  }
  const jwk = Crypto.createPublicKey(privateKey).export({ format: "jwk" })
  return { privateKey, publicKeyRaw: new Uint8Array(Buffer.from(jwk.x ?? "", "base64url")) }
}

/**
 * base64(SHA-256(raw public key)): what a bootstrap token's `expectedPubkeyFingerprint`
 * must be for this key.
 *
 * @internal
 */
export const publicKeyFingerprint = (raw: Uint8Array): string =>
  Crypto.createHash("sha256").update(raw).digest("base64")

/**
 * A PEM PKCS#10 request whose subject is `CN=<machineId>` (the control plane rewrites it
 * to `agent-<machineId>.<suffix>`), for the host key and signed by it.
 *
 * @internal
 */
export const certificateRequest = async (machineId: string, key: HostKey): Promise<string> => {
  // Loaded here, for enrollment and renewal only: a quarter of what the daemon would load at boot.
  const x509 = await import("@peculiar/x509")
  const subtle = Crypto.webcrypto.subtle
  const publicKey = Crypto.createPublicKey(key.privateKey)
  const keys = {
    privateKey: await subtle.importKey(
      "pkcs8",
      key.privateKey.export({ format: "der", type: "pkcs8" }),
      ED25519,
      false,
      ["sign"]
    ),
    publicKey: await subtle.importKey("spki", publicKey.export({ format: "der", type: "spki" }), ED25519, true, [
      "verify"
    ])
  }
  // A typed value is taken verbatim; a plain string would be parsed (quotes, `\`, `#`).
  const request = await x509.Pkcs10CertificateRequestGenerator.create(
    { name: new x509.Name([{ CN: [{ utf8String: machineId }] }]), keys, signingAlgorithm: ED25519 },
    Crypto.webcrypto
  )
  return request.toString("pem")
}

/**
 * What the agent needs to know of a certificate.
 *
 * @internal
 */
export interface CertificateValidity {
  readonly notBefore: Date
  readonly notAfter: Date
}

/**
 * The validity of a PEM certificate; throws for anything that is not one.
 *
 * @internal
 */
export const certificateValidity = (pem: string): CertificateValidity => {
  // Node's reader (the x509 library is loaded for enrollment and renewal only); its dates
  // are texts such as "Mar 25 00:00:00 2027 GMT".
  const certificate = new Crypto.X509Certificate(pem)
  return { notBefore: new Date(certificate.validFrom), notAfter: new Date(certificate.validTo) }
}

/**
 * Whether a PEM certificate is for this key: an issued certificate that is not could never
 * be used, so it is not written.
 *
 * @internal
 */
export const certifiesKey = (pem: string, key: HostKey): boolean => {
  try {
    return new Crypto.X509Certificate(pem).checkPrivateKey(key.privateKey)
  } catch {
    return false
  }
}
