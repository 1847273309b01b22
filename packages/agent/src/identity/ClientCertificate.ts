/**
 * The agent's client certificate on disk and the key it certifies, as enrollment and
 * renewal use them: enrollment signs its CSR with `--client-key`, renewal with the SSH
 * host key (`--ssh-host-key-file`), as upstream (in production both are the host key, the
 * key the control plane has on record for the host), and an issued certificate is written
 * atomically with mode 0600 once it is known to certify that key. Only the certificate is
 * written, never a key.
 * A renewed certificate must also chain to the fleet CA, name this machine and be valid
 * now: anything else would take the place of a certificate that works.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import { writeFileAtomic } from "../support/atomicFile.js"
import { type CertificateCheck, certificatesIn, loadX509, renewalVerdict } from "../support/certificateChecks.js"
import { describeError } from "../support/describeError.js"
import {
  certificateRequest,
  type CertificateValidity,
  certificateValidity,
  certifiesKey,
  type HostKey,
  hostKeyFrom
} from "./hostIdentity.js"

/**
 * A certificate or key that cannot be read or used, or a certificate that cannot be
 * written.
 *
 * @since 0.1.0
 */
export class CertificateError extends Data.TaggedError("CertificateError")<{ readonly detail: string }> {
  override get message(): string {
    return this.detail
  }
}

const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const readText = (file: string, what: string) =>
  Effect.tryPromise({
    try: () => Fs.readFile(file, "utf8"),
    catch: (error) => new CertificateError({ detail: `cannot read the ${what} ${file}: ${errorText(error)}` })
  })

/**
 * The ed25519 key in `file` (OpenSSH or PEM); `what` names it in errors.
 *
 * @since 0.1.0
 */
export const readHostKey = (file: string, what = "client key"): Effect.Effect<HostKey, CertificateError> =>
  Effect.flatMap(readText(file, what), (text) =>
    Effect.try({
      try: () => hostKeyFrom(text),
      catch: (error) => new CertificateError({ detail: `${file} cannot sign a CSR: ${errorText(error)}` })
    }))

/**
 * A renewed certificate that must not replace the working one: `check` names the check it
 * failed (`certificate`: not one; `chain`: not from the fleet CA; `machine`: its CN names
 * another machine; `validity`: expired or not valid yet; `key`: not for our key).
 *
 * @since 0.1.0
 */
export class CertificateRefused extends Data.TaggedError("CertificateRefused")<{
  readonly check: CertificateCheck
  readonly detail: string
}> {
  override get message(): string {
    return `the renewed certificate fails the ${this.check} check: ${this.detail}`
  }
}

/**
 * The certificate in `file`: its PEM text and its validity.
 *
 * @since 0.1.0
 */
export const readCertificate = (
  file: string
): Effect.Effect<CertificateValidity & { readonly pem: string }, CertificateError> =>
  Effect.flatMap(readText(file, "client certificate"), (pem) =>
    Effect.try({
      try: () => ({ pem, ...certificateValidity(pem) }),
      catch: (error) => new CertificateError({ detail: `${file} is not a certificate: ${errorText(error)}` })
    }))

/**
 * Checks a renewed certificate before it may replace `currentPem`: it chains to the CA of
 * `caFile` (without one: it has the current certificate's issuer, verified with that
 * issuer's key when the current file holds its certificate), its CN names `machineId`, it
 * is valid now (`notBefore` up to 60 s ahead) and it certifies `key`. Returns when it
 * expires.
 *
 * @since 0.1.0
 */
export const checkRenewed = Effect.fn("ClientCertificate.checkRenewed")(function*(renewal: {
  readonly certPem: string
  readonly currentPem: string
  readonly caFile: string | null
  readonly machineId: string
  readonly key: HostKey
}) {
  const caFile = renewal.caFile
  const ca = caFile === null ? null : yield* Effect.flatMap(readText(caFile, "CA certificate"), (pem) =>
    Effect.try({
      try: () => {
        const certificates = certificatesIn(pem)
        if (certificates.length === 0) throw new Error("no PEM certificate in it")
        return certificates
      },
      catch: (error) => new CertificateError({ detail: `invalid CA certificate ${caFile}: ${errorText(error)}` })
    }))
  const x509 = yield* Effect.tryPromise({
    try: loadX509,
    catch: (error) => new CertificateError({ detail: `cannot load the x509 library: ${errorText(error)}` })
  })
  const verdict = renewalVerdict({
    certPem: renewal.certPem,
    currentPem: renewal.currentPem,
    ca,
    machineId: renewal.machineId,
    privateKey: renewal.key.privateKey,
    now: new Date(yield* Clock.currentTimeMillis),
    x509
  })
  if (verdict._tag === "Refused") return yield* new CertificateRefused({ check: verdict.check, detail: verdict.detail })
  if (verdict.chain === "issuer-name") {
    yield* Effect.logWarning(
      "the renewed certificate's chain could not be checked beyond its issuer name: no --ca-cert, and the current certificate file holds no issuer certificate"
    )
  }
  return { notAfter: verdict.notAfter }
})

/**
 * A PEM CSR for `key` with CN = `machineId`.
 *
 * @since 0.1.0
 */
export const requestFor = (machineId: string, key: HostKey): Effect.Effect<string, CertificateError> =>
  Effect.tryPromise({
    try: () => certificateRequest(machineId, key),
    catch: (error) => new CertificateError({ detail: `cannot build the CSR: ${errorText(error)}` })
  })

/**
 * Writes an issued certificate atomically (mode 0600), after checking that it certifies
 * `key`: one for another key would leave the agent unable to connect.
 *
 * @since 0.1.0
 */
export const writeIssued = (file: string, certPem: string, key: HostKey): Effect.Effect<void, CertificateError> =>
  certifiesKey(certPem, key)
    ? Effect.tryPromise({
      try: () => writeFileAtomic(file, certPem, 0o600),
      // The error names the file and the system's error code (ENOSPC, EROFS, …) itself.
      catch: (error) => new CertificateError({ detail: describeError(error) })
    })
    : Effect.fail(new CertificateError({ detail: "the control plane issued a certificate for another key" }))
