/**
 * The test host key (an ssh-keygen OpenSSH ed25519 key) and certificates for it, for the
 * enrollment and renewal tests.
 */
import * as x509 from "@peculiar/x509"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { privateKeyFrom } from "../../src/support/sshKey.js"

export const HOST_KEY_FILE = Path.join(__dirname, "../fixtures/ssh/ssh_host_ed25519_key")
export const HOST_KEY = Fs.readFileSync(HOST_KEY_FILE, "utf8")
/** `ssh-ed25519 AAAA… comment`: what `fleet.resolved` declares for the host. */
export const HOST_PUBKEY = Fs.readFileSync(`${HOST_KEY_FILE}.pub`, "utf8").trim()
/** The host key's public half, SPKI PEM. */
export const HOST_SPKI = Crypto.createPublicKey(privateKeyFrom(HOST_KEY)).export({ format: "pem", type: "spki" })
  .toString()

/** The WebCrypto form of a Node key pair (x509 signs through WebCrypto). */
export const cryptoKeys = async (privateKey: Crypto.KeyObject): Promise<Crypto.webcrypto.CryptoKeyPair> => {
  const subtle = Crypto.webcrypto.subtle
  const algorithm = { name: "Ed25519" }
  return {
    privateKey: await subtle.importKey("pkcs8", privateKey.export({ format: "der", type: "pkcs8" }), algorithm, false, [
      "sign"
    ]),
    publicKey: await subtle.importKey(
      "spki",
      Crypto.createPublicKey(privateKey).export({ format: "der", type: "spki" }),
      algorithm,
      true,
      ["verify"]
    )
  }
}

/** A self-signed certificate for an ed25519 key (OpenSSH or PEM text), valid between the two dates. */
export const selfSigned = async (key: string, notBefore: Date, notAfter: Date, commonName = "web-01") =>
  (await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: Crypto.randomBytes(8).toString("hex").replace(/^./, "1"),
      name: [{ CN: [commonName] }],
      notBefore,
      notAfter,
      keys: await cryptoKeys(privateKeyFrom(key)),
      signingAlgorithm: { name: "Ed25519" }
    },
    Crypto.webcrypto
  )).toString("pem")

/** The SHA-256 fingerprint of a PEM certificate, as the dev control plane's request log has it. */
export const fingerprintOf = (pem: string): string => new Crypto.X509Certificate(pem).fingerprint256
