/**
 * The agent's client certificate on disk and the key it certifies, as enrollment and
 * renewal use them: the key is read from `--client-key` (in production the SSH host key,
 * the key the control plane has on record for the host), a CSR is signed with it, and an
 * issued certificate is written atomically with mode 0600 once it is known to certify it.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import { writeFileAtomic } from "./internal/atomicFile.js"
import {
  certificateRequest,
  type CertificateValidity,
  certificateValidity,
  certifiesKey,
  type HostKey,
  hostKeyFrom
} from "./internal/hostIdentity.js"

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
 * The ed25519 key in `file` (OpenSSH or PEM).
 *
 * @since 0.1.0
 */
export const readHostKey = (file: string): Effect.Effect<HostKey, CertificateError> =>
  Effect.flatMap(readText(file, "client key"), (text) =>
    Effect.try({
      try: () => hostKeyFrom(text),
      catch: (error) => new CertificateError({ detail: `${file} cannot sign a CSR: ${errorText(error)}` })
    }))

/**
 * The validity of the certificate in `file`.
 *
 * @since 0.1.0
 */
export const readCertificate = (file: string): Effect.Effect<CertificateValidity, CertificateError> =>
  Effect.flatMap(readText(file, "client certificate"), (pem) =>
    Effect.try({
      try: () => certificateValidity(pem),
      catch: (error) => new CertificateError({ detail: `${file} is not a certificate: ${errorText(error)}` })
    }))

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
      catch: (error) => new CertificateError({ detail: `cannot write ${file}: ${errorText(error)}` })
    })
    : Effect.fail(new CertificateError({ detail: "the control plane issued a certificate for another key" }))
