import type * as X509 from "@peculiar/x509"
import * as Crypto from "node:crypto"

/**
 * The x509 library, loaded when a renewal is checked: the daemon does not load it at boot
 * (it is a quarter of what it would load).
 *
 * @internal
 */
export const loadX509 = (): Promise<typeof X509> => import("@peculiar/x509")

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

/**
 * Every certificate of a PEM text (a CA file, a bundle, a leaf and its chain), in order.
 * Throws for a block that is not a certificate: a bundle is trusted whole or not at all.
 *
 * @internal
 */
export const certificatesIn = (text: string): ReadonlyArray<Crypto.X509Certificate> =>
  (text.match(PEM_CERTIFICATE) ?? []).map((block, index) => {
    try {
      return new Crypto.X509Certificate(block)
    } catch (error) {
      throw new Error(
        `certificate ${index + 1} cannot be read: ${error instanceof Error ? error.message : String(error)}`
      )
    }
  })

/** The subject CNs of a certificate (Node's `subject` text would have to be unescaped). */
const commonNames = (x509: typeof X509, certificate: Crypto.X509Certificate): ReadonlyArray<string> =>
  new x509.X509Certificate(certificate.raw).subjectName.getField("CN")

/**
 * Whether a certificate's CN names this machine: the bare machine id (legacy certificates),
 * or the control plane's `agent-<machineId>.<suffix>`. The agent is not told the suffix;
 * when the current certificate has that form, its suffix is the one the control plane
 * uses, so the new certificate must have the same.
 */
const namesMachine = (commonName: string, machineId: string, currentCommonName: string | null): boolean => {
  if (commonName === machineId) return true
  const prefix = `agent-${machineId}.`
  if (!commonName.startsWith(prefix) || commonName.length === prefix.length) return false
  return currentCommonName === null || !currentCommonName.startsWith(prefix) || currentCommonName === commonName
}

/** OpenSSL's answer, or false where it throws instead (a key of a kind it cannot compare). */
const safely = (check: () => boolean): boolean => {
  try {
    return check()
  } catch {
    return false
  }
}

/** The certificate among `candidates` that issued `certificate` and whose key signed it, if any. */
const issuerAmong = (
  certificate: Crypto.X509Certificate,
  candidates: ReadonlyArray<Crypto.X509Certificate>
): Crypto.X509Certificate | undefined =>
  candidates.find((candidate) =>
    safely(() => certificate.checkIssued(candidate) && certificate.verify(candidate.publicKey))
  )

/**
 * The checks a renewed certificate must pass before it replaces the working one.
 *
 * @internal
 */
export type CertificateCheck = "certificate" | "chain" | "machine" | "validity" | "key"

/**
 * What the checks made of a renewed certificate. `chain` says how far its issuer was
 * checked: by the configured CA, by the current certificate's issuer certificate, or
 * (neither being known) by the issuer's name only; `notAfter` is when it expires.
 *
 * @internal
 */
export type RenewalVerdict =
  | { readonly _tag: "Refused"; readonly check: CertificateCheck; readonly detail: string }
  | { readonly _tag: "Accepted"; readonly chain: "ca" | "issuer" | "issuer-name"; readonly notAfter: Date }

/** How far in the future a new certificate's `notBefore` may be: the issuer's clock may run ahead. */
export const NOT_BEFORE_SKEW_MS = 60_000

type Refusal = Extract<RenewalVerdict, { readonly _tag: "Refused" }>

const refused = (check: CertificateCheck, detail: string): Refusal => ({ _tag: "Refused", check, detail })

/**
 * The renewed leaf (also as x509 reads it, for its CN and dates) and the current file's
 * chain; anything that cannot be read is a refusal, never a throw.
 */
const readBoth = (x509: typeof X509, certPem: string, currentPem: string) => {
  try {
    const leaf = certificatesIn(certPem)[0]
    if (leaf === undefined) return refused("certificate", "the answer holds no PEM certificate")
    const current = certificatesIn(currentPem)
    const currentLeaf = current[0]
    if (currentLeaf === undefined) return refused("certificate", "the current certificate file holds no certificate")
    const parsed = new x509.X509Certificate(leaf.raw)
    const currentName = commonNames(x509, currentLeaf)[0] ?? null
    return { _tag: "Read", leaf, parsed, current, currentLeaf, currentName } as const
  } catch (error) {
    return refused("certificate", error instanceof Error ? error.message : String(error))
  }
}

/**
 * How the renewed leaf chains: to a certificate of `ca`, else (no CA configured) to the
 * current certificate's issuer, by its key when the current file holds it, by its name
 * otherwise.
 */
const chainOf = (
  leaf: Crypto.X509Certificate,
  current: ReadonlyArray<Crypto.X509Certificate>,
  currentLeaf: Crypto.X509Certificate,
  ca: ReadonlyArray<Crypto.X509Certificate> | null
) => {
  if (ca !== null) {
    if (!ca.some((candidate) => safely(() => leaf.checkIssued(candidate)))) {
      return refused("chain", `its issuer ${JSON.stringify(leaf.issuer)} is not the --ca-cert CA`)
    }
    return issuerAmong(leaf, ca) === undefined
      ? refused("chain", "its signature does not verify with the --ca-cert CA's key")
      : { _tag: "Chained", how: "ca" } as const
  }
  if (leaf.issuer !== currentLeaf.issuer) {
    return refused(
      "chain",
      `its issuer ${JSON.stringify(leaf.issuer)} is not the current certificate's ${JSON.stringify(currentLeaf.issuer)}`
    )
  }
  const issuer = issuerAmong(currentLeaf, current)
  if (issuer === undefined) return { _tag: "Chained", how: "issuer-name" } as const
  return issuerAmong(leaf, [issuer]) === undefined
    ? refused("chain", "its signature does not verify with the key of the current certificate's issuer")
    : { _tag: "Chained", how: "issuer" } as const
}

/**
 * Checks a renewed certificate, in this order: it chains to the configured CA (`ca`; without
 * one, it has the current certificate's issuer and, when the current file holds that
 * issuer's certificate, verifies with its key), names this machine, is valid at `now` (with
 * 60 s of skew on `notBefore`) and certifies `privateKey`. A certificate failing any of
 * these would leave the host unable to talk to the control plane, or speaking for another.
 *
 * @internal
 */
export const renewalVerdict = (renewal: {
  readonly certPem: string
  readonly currentPem: string
  readonly ca: ReadonlyArray<Crypto.X509Certificate> | null
  readonly machineId: string
  readonly privateKey: Crypto.KeyObject
  readonly now: Date
  /** `loadX509()`'s module. */
  readonly x509: typeof X509
}): RenewalVerdict => {
  const read = readBoth(renewal.x509, renewal.certPem, renewal.currentPem)
  if (read._tag === "Refused") return read
  const { current, currentLeaf, currentName, leaf, parsed } = read

  const chain = chainOf(leaf, current, currentLeaf, renewal.ca)
  if (chain._tag === "Refused") return chain

  const names = parsed.subjectName.getField("CN")
  if (names.length !== 1 || !namesMachine(names[0]!, renewal.machineId, currentName)) {
    return refused(
      "machine",
      `its subject CN ${JSON.stringify(names)} does not name this machine ${JSON.stringify(renewal.machineId)}`
    )
  }

  const now = renewal.now.getTime()
  if (parsed.notBefore.getTime() > now + NOT_BEFORE_SKEW_MS) {
    return refused("validity", `it is not valid before ${parsed.notBefore.toISOString()}`)
  }
  if (!(now < parsed.notAfter.getTime())) {
    return refused("validity", `it expired at ${parsed.notAfter.toISOString()}`)
  }

  if (!safely(() => leaf.checkPrivateKey(renewal.privateKey))) {
    return refused("key", "it certifies another key than ours")
  }
  return { _tag: "Accepted", chain: chain.how, notAfter: parsed.notAfter }
}
