/**
 * The development fleet CA: a P-256 CA generated at start, the server certificate it
 * signs for the listener, and the client certificates it issues to agents, shaped like
 * the ones the real control plane issues at enrollment.
 *
 * @since 0.1.0
 */
import * as x509 from "@peculiar/x509"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import { DevControlPlaneError } from "./DevControlPlaneError.js"

// @peculiar/x509 signs through a WebCrypto provider; Node's implements P-256 and Ed25519.
x509.cryptoProvider.set(Crypto.webcrypto)

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
const DAY_MS = 24 * 60 * 60 * 1000
/** The real control plane's default client certificate lifetime. */
const CLIENT_VALIDITY_MS = 30 * DAY_MS
const SERVER_VALIDITY_MS = 365 * DAY_MS
/** Start certificates a little in the past so that a peer with a slow clock accepts them. */
const BACKDATE_MS = 60 * 1000

/**
 * The CA and the listener's identity, all PEM.
 *
 * @since 0.1.0
 */
export interface Authority {
  readonly caPem: string
  readonly serverCertPem: string
  readonly serverKeyPem: string
  /** Signs a client certificate; see {@link issueClientCertificate}. */
  readonly sign: (args: ClientCertificateRequest) => Promise<string>
}

/**
 * @since 0.1.0
 */
export interface ClientCertificateRequest {
  readonly commonName: string
  /** An ed25519 public key, SPKI PEM. */
  readonly publicKeyPem: string
  readonly now: Date
}

/** A positive random serial number, as RFC 5280 wants (at most 20 octets, high bit clear). */
const serialNumber = (): string => {
  const bytes = Crypto.randomBytes(16)
  bytes[0] = bytes[0]! & 0x7f
  return bytes.toString("hex")
}

const generateP256 = (): Promise<Crypto.webcrypto.CryptoKeyPair> =>
  Crypto.webcrypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"]) as Promise<Crypto.webcrypto.CryptoKeyPair>

/** The certificate's second, as the real issuer truncates `notBefore`. */
const truncateToSecond = (date: Date): Date => new Date(Math.floor(date.getTime() / 1000) * 1000)

const isIp = (host: string): boolean => /^[0-9.]+$/.test(host) || host.includes(":")

/**
 * Generates the CA and a server certificate whose SANs cover `127.0.0.1`, `::1`,
 * `localhost` and every name of `hosts` (the listener's own host, when it is not a
 * wildcard address).
 *
 * @since 0.1.0
 */
export const makeAuthority = (hosts: ReadonlyArray<string>): Effect.Effect<Authority, DevControlPlaneError> =>
  Effect.tryPromise({
    try: async (): Promise<Authority> => {
      const now = Date.now()
      const caKeys = await generateP256()
      const ca = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: serialNumber(),
        name: "CN=nixfleet dev control plane CA, O=nixfleet dev",
        notBefore: new Date(now - BACKDATE_MS),
        notAfter: new Date(now + 10 * SERVER_VALIDITY_MS),
        signingAlgorithm: ECDSA_P256,
        keys: caKeys,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey)
        ]
      })
      const authorityKeyId = await x509.AuthorityKeyIdentifierExtension.create(ca)
      const names = new Set(["127.0.0.1", "::1", "localhost", ...hosts])
      const serverKeys = await generateP256()
      const server = await x509.X509CertificateGenerator.create({
        serialNumber: serialNumber(),
        subject: "CN=localhost",
        issuer: ca.subject,
        notBefore: new Date(now - BACKDATE_MS),
        notAfter: new Date(now + SERVER_VALIDITY_MS),
        signingAlgorithm: ECDSA_P256,
        publicKey: serverKeys.publicKey,
        signingKey: caKeys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension(
            [...names].map((name) => ({ type: isIp(name) ? "ip" : "dns", value: name }))
          ),
          authorityKeyId
        ]
      })
      const serverKey = await Crypto.webcrypto.subtle.exportKey("pkcs8", serverKeys.privateKey)
      return {
        caPem: ca.toString("pem"),
        serverCertPem: server.toString("pem"),
        serverKeyPem: x509.PemConverter.encode(serverKey, "PRIVATE KEY"),
        sign: async ({ commonName, now: at, publicKeyPem }) => {
          const spki = Crypto.createPublicKey(publicKeyPem).export({ type: "spki", format: "der" })
          const notBefore = truncateToSecond(at)
          const cert = await x509.X509CertificateGenerator.create({
            serialNumber: serialNumber(),
            subject: `CN=${commonName}`,
            issuer: ca.subject,
            notBefore,
            notAfter: new Date(notBefore.getTime() + CLIENT_VALIDITY_MS),
            signingAlgorithm: ECDSA_P256,
            publicKey: new Uint8Array(spki),
            signingKey: caKeys.privateKey,
            extensions: [
              new x509.BasicConstraintsExtension(false, undefined, true),
              new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
              new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
              new x509.SubjectAlternativeNameExtension([{ type: "dns", value: commonName }]),
              authorityKeyId
            ]
          })
          return cert.toString("pem")
        }
      }
    },
    catch: (cause) => new DevControlPlaneError({ operation: "generate the fleet CA", cause })
  })

/**
 * The common name of an agent's client certificate: `agent-<machineId>.<suffix>`.
 *
 * @since 0.1.0
 */
export const agentCommonName = (machineId: string, suffix: string): string => `agent-${machineId}.${suffix}`

/**
 * The machine id a client certificate names, as the real control plane reads it: the CN
 * without its `agent-` prefix and `.<suffix>` suffix when it has both, else the CN
 * verbatim (legacy bare-CN certificates). Applying it twice changes nothing.
 *
 * @since 0.1.0
 */
export const machineIdFromCommonName = (commonName: string, suffix: string): string => {
  if (!commonName.startsWith("agent-")) return commonName
  const rest = commonName.slice("agent-".length)
  const tail = `.${suffix}`
  return rest.endsWith(tail) ? rest.slice(0, rest.length - tail.length) : commonName
}

/**
 * Whether a PEM public key is an ed25519 key, the only kind the real control plane
 * certifies (the agent's key is its SSH host key).
 *
 * @since 0.1.0
 */
export const isEd25519PublicKeyPem = (pem: string): boolean => {
  try {
    return Crypto.createPublicKey(pem).asymmetricKeyType === "ed25519"
  } catch {
    return false
  }
}

/**
 * Issues a client certificate shaped like the real control plane's: subject CN
 * `commonName`, SAN dNSName the same, EKU clientAuth, `notBefore` the issuance second and
 * `notAfter` 30 days later, for the given key, signed by the fleet CA.
 *
 * @since 0.1.0
 */
export const issueClientCertificate = (
  authority: Authority,
  request: ClientCertificateRequest
): Effect.Effect<string, DevControlPlaneError> =>
  Effect.tryPromise({
    try: () => authority.sign(request),
    catch: (cause) => new DevControlPlaneError({ operation: `issue a certificate for ${request.commonName}`, cause })
  })
