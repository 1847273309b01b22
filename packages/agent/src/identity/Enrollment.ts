/**
 * First-boot enrollment: when the agent has a client key and a bootstrap token but no
 * certificate yet, it asks the control plane for one (`POST /v1/enroll`) before the
 * runtime starts. The request carries the token and a CSR for the host key (CN = machine
 * id); the key itself never leaves the host. Only the issued certificate is written.
 *
 * @since 0.1.0
 */
import { BootstrapToken } from "@nixfleet/proto"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs/promises"
import { AgentConfig } from "../config/AgentConfig.js"
import {
  ControlPlaneClient,
  type ControlPlaneError,
  ControlPlaneTransport
} from "../controlplane/ControlPlaneClient.js"
import { decodeJson } from "../support/boundedJson.js"
import { type CertificateError, readHostKey, requestFor, writeIssued } from "./ClientCertificate.js"
import { publicKeyFingerprint } from "./hostIdentity.js"

/**
 * How long to wait between two enrollment attempts while the control plane is not ready
 * (cold start, before its first signed artifact) or cannot be reached.
 *
 * @since 0.1.0
 */
export const ENROLLMENT_RETRY_INTERVAL = Duration.seconds(10)

/**
 * Enrollment cannot proceed on this host: an unreadable or invalid token or key, a token
 * for another host or key, a certificate that cannot be written, an answer that is not a
 * certificate for the host key.
 *
 * @since 0.1.0
 */
export class EnrollmentError extends Data.TaggedError("EnrollmentError")<{ readonly detail: string }> {
  override get message(): string {
    return `enrollment failed: ${this.detail}`
  }
}

/**
 * The control plane refused to enroll this host (409 for a token already used, 401 for a
 * token or host key it does not accept, 400 for a CSR it cannot read, ...).
 *
 * @since 0.1.0
 */
export class EnrollmentRefused extends Data.TaggedError("EnrollmentRefused")<{
  readonly status: number
  readonly body: string
}> {
  override get message(): string {
    return `the control plane refused enrollment: HTTP ${this.status}${this.body === "" ? "" : `: ${this.body}`}`
  }
}

/**
 * Worth another attempt: the control plane's cold-start refusal (503 whose body says
 * `control plane not ready`), or no answer at all. Nothing is spent by either: the token's
 * nonce is only recorded when a certificate is issued.
 */
const isTransient = (error: ControlPlaneError): boolean =>
  error._tag === "TransportError" ||
  (error._tag === "StatusError" && error.status === 503 && error.body.includes("control plane not ready"))

const decodeToken = decodeJson(BootstrapToken)

/**
 * Reads and checks a bootstrap token file.
 *
 * @since 0.1.0
 */
export const readBootstrapToken = Effect.fn("Enrollment.readBootstrapToken")(function*(file: string) {
  const text = yield* Effect.tryPromise({
    try: () => Fs.readFile(file, "utf8"),
    catch: (error) =>
      new EnrollmentError({
        detail: `cannot read the bootstrap token ${file}: ${error instanceof Error ? error.message : String(error)}`
      })
  })
  return yield* decodeToken(text).pipe(
    Effect.mapError((error) => new EnrollmentError({ detail: `${file} is not a bootstrap token: ${error.detail}` }))
  )
})

const fromCertificateError = (error: CertificateError) => new EnrollmentError({ detail: error.detail })

/**
 * Enrolls: reads the token and the key, checks that the token is for this host and this
 * key (a mismatch would be refused anyway, with a less helpful answer), posts the token and
 * a CSR, retries every 10 s while the control plane is not ready or unreachable, and writes
 * the certificate atomically with mode 0600. Any other answer fails with
 * `EnrollmentRefused`.
 *
 * @since 0.1.0
 */
export const enroll = Effect.fn("Enrollment.enroll")(function*(files: {
  readonly tokenFile: string
  readonly keyFile: string
  readonly certFile: string
}) {
  const config = yield* AgentConfig
  const client = yield* ControlPlaneClient
  const token = yield* readBootstrapToken(files.tokenFile)
  const key = yield* readHostKey(files.keyFile).pipe(Effect.mapError(fromCertificateError))
  if (token.claims.hostname !== config.machineId) {
    return yield* new EnrollmentError({
      detail: `the bootstrap token is for ${JSON.stringify(token.claims.hostname)}, this host is ${
        JSON.stringify(config.machineId)
      }`
    })
  }
  if (token.claims.expectedPubkeyFingerprint !== publicKeyFingerprint(key.publicKeyRaw)) {
    return yield* new EnrollmentError({ detail: `the bootstrap token was not minted for the key ${files.keyFile}` })
  }
  const csrPem = yield* requestFor(config.machineId, key).pipe(Effect.mapError(fromCertificateError))
  yield* Effect.logInfo("enrolling with the control plane")
  const issued = yield* client.enroll({ token, csrPem }).pipe(
    Effect.tapError((error) =>
      isTransient(error)
        ? Effect.logWarning(`enrollment not possible yet; retrying in ${Duration.format(ENROLLMENT_RETRY_INTERVAL)}`)
          .pipe(Effect.annotateLogs("reason", error.message))
        : Effect.void
    ),
    Effect.retry({ schedule: Schedule.spaced(ENROLLMENT_RETRY_INTERVAL), while: isTransient }),
    Effect.catchTags({
      StatusError: (error) => Effect.fail(new EnrollmentRefused({ status: error.status, body: error.body })),
      TransportError: (error) => Effect.fail(new EnrollmentError({ detail: error.message })),
      BadResponse: (error) => Effect.fail(new EnrollmentError({ detail: error.message }))
    })
  )
  yield* writeIssued(files.certFile, issued.certPem, key).pipe(Effect.mapError(fromCertificateError))
  yield* Effect.logInfo("enrolled: client certificate written").pipe(
    Effect.annotateLogs({ certificate: files.certFile, notAfter: issued.notAfter.toISOString() })
  )
})

/**
 * The files enrollment needs, when it is due: `--client-cert`, `--client-key` and
 * `--bootstrap-token-file` are all set and the certificate does not exist yet.
 *
 * @since 0.1.0
 */
export const pendingEnrollment = Effect.gen(function*() {
  const config = yield* AgentConfig
  if (config.clientCert === null || config.clientKey === null || config.bootstrapTokenFile === null) return null
  const certFile = config.clientCert
  // Any other reason the certificate cannot be looked at is for the transport to report.
  const missing = yield* Effect.promise(() =>
    Fs.access(certFile).then(() => false, (error: NodeJS.ErrnoException) => error.code === "ENOENT")
  )
  return missing ? { certFile, keyFile: config.clientKey, tokenFile: config.bootstrapTokenFile } : null
})

/**
 * `enroll` over a client that trusts the control plane but has no certificate to present.
 *
 * @since 0.1.0
 */
export const enrollAnonymously = (files: {
  readonly tokenFile: string
  readonly keyFile: string
  readonly certFile: string
}) =>
  enroll(files).pipe(Effect.provide(ControlPlaneClient.layer.pipe(Layer.provide(ControlPlaneTransport.layerAnonymous))))

/**
 * Enrolls when it is due (see `pendingEnrollment`). Returns whether it enrolled.
 *
 * @since 0.1.0
 */
export const enrollIfNeeded = Effect.gen(function*() {
  const files = yield* pendingEnrollment
  if (files === null) return false
  yield* enrollAnonymously(files)
  return true
}).pipe(Effect.withSpan("Enrollment.enrollIfNeeded"))
