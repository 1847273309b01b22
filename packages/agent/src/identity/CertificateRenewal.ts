/**
 * Client certificate renewal: every 60 s (the first check at once) the fraction of the
 * certificate's validity that remains is compared with `--renewal-threshold-fraction`;
 * below it, the agent asks for a new certificate (`POST /v1/agent/renew` over mTLS) with a
 * CSR signed by the SSH host key (`--ssh-host-key-file`), as upstream: the control plane
 * certifies only the host key `fleet.resolved` declares. The answer is not trusted: the
 * certificate must chain to the fleet CA, name this machine, be valid now and certify the
 * host key (else it is refused), and then work: one request presenting it with the host
 * key must be taken by the control plane. Only then is it written atomically over the
 * working one; no key file is written. The control-plane transport notices the new file
 * and presents it with the key it certifies (`--client-key`, or else the host key), from
 * the next request on; the process is not restarted. A failed or refused attempt is
 * logged, counted and retried 30 s later, the working certificate untouched; it never
 * stops the fiber. An out-of-range threshold is no renewal (`AgentConfig`'s
 * `settingWarnings` says so), never an exit.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import { AgentConfig } from "../config/AgentConfig.js"
import { ControlPlaneClient } from "../controlplane/ControlPlaneClient.js"
import { tryIdentity } from "../controlplane/ControlPlaneHttp.js"
import { type Shutdown, untilShutdown } from "../runtime/Shutdown.js"
import { forkWorker } from "../runtime/Workers.js"
import {
  type CertificateRefused,
  checkRenewed,
  readCertificate,
  readHostKey,
  requestFor,
  writeIssued
} from "./ClientCertificate.js"

/** @since 0.1.0 */
export const RENEWAL_CHECK_INTERVAL = Duration.seconds(60)

/** @since 0.1.0 */
export const RENEWAL_RETRY_DELAY = Duration.seconds(30)

/**
 * Renewal attempts, by `outcome` (`renewed`; `failed`: no certificate, or one that did not
 * work; `refused`: a certificate that failed a check).
 *
 * @since 0.1.0
 */
export const certificateRenewals = Metric.counter("nixfleet_agent_certificate_renewals_total", {
  description: "Client certificate renewal attempts, by outcome",
  incremental: true
})

/**
 * The fraction of a certificate's validity that remains at `now`, between 0 (expired, or
 * a validity that is empty) and 1 (not valid yet).
 *
 * @since 0.1.0
 */
export const remainingFraction = (
  validity: { readonly notBefore: Date; readonly notAfter: Date },
  now: Date
): number => {
  const lifetime = validity.notAfter.getTime() - validity.notBefore.getTime()
  if (!(lifetime > 0)) return 0
  return Math.min(1, Math.max(0, (validity.notAfter.getTime() - now.getTime()) / lifetime))
}

/**
 * What one check did.
 *
 * @since 0.1.0
 */
export type RenewalCheck = "fresh" | "renewed"

/**
 * One check: renews when less than `threshold` of the certificate's validity remains,
 * installing the new certificate only once it passed `checkRenewed` and `tryIdentity`.
 * `keyFile` signs the CSR: the SSH host key.
 *
 * @since 0.1.0
 */
export const checkRenewal = Effect.fn("CertificateRenewal.check")(function*(settings: {
  readonly certFile: string
  readonly keyFile: string
  readonly threshold: number
}) {
  const config = yield* AgentConfig
  const client = yield* ControlPlaneClient
  const current = yield* readCertificate(settings.certFile)
  const remaining = remainingFraction(current, new Date(yield* Clock.currentTimeMillis))
  if (remaining >= settings.threshold) return "fresh" satisfies RenewalCheck
  yield* Effect.logInfo("renewing the client certificate").pipe(
    Effect.annotateLogs({ remaining: remaining.toFixed(4), notAfter: current.notAfter.toISOString() })
  )
  const key = yield* readHostKey(settings.keyFile, "SSH host key")
  const csrPem = yield* requestFor(config.machineId, key)
  const renewed = yield* client.renew({ csrPem })
  const { notAfter } = yield* checkRenewed({
    certPem: renewed.certPem,
    currentPem: current.pem,
    caFile: config.caCert,
    machineId: config.machineId,
    key
  })
  const trial = yield* tryIdentity({
    cert: renewed.certPem,
    key: key.privateKey.export({ format: "pem", type: "pkcs8" }).toString()
  })
  if (trial._tag === "NotTried") {
    yield* Effect.logInfo("the renewed certificate is not tried: plain http presents no client certificate")
  }
  yield* writeIssued(settings.certFile, renewed.certPem, key)
  yield* Effect.logInfo("client certificate renewed").pipe(
    Effect.annotateLogs({ certificate: settings.certFile, notAfter: notAfter.toISOString() })
  )
  return "renewed" satisfies RenewalCheck
})

/**
 * The renewal fiber, forked in the runtime's scope when a threshold is configured (and a
 * client certificate and key to renew). Without a threshold there is no fiber.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<never, never, AgentConfig | ControlPlaneClient | Shutdown> = Layer
  .scopedDiscard(
    Effect.gen(function*() {
      const config = yield* AgentConfig
      const threshold = config.renewalThresholdFraction
      if (threshold === null) return
      if (config.clientCert === null || config.clientKey === null) {
        yield* Effect.logWarning("--renewal-threshold-fraction needs --client-cert and --client-key; no renewal")
        return
      }
      const settings = { certFile: config.clientCert, keyFile: config.sshHostKeyFile, threshold }
      const context = yield* Effect.context<AgentConfig | ControlPlaneClient>()
      const failed = (reason: string) =>
        Effect.logWarning(`client certificate renewal failed; retrying in ${Duration.format(RENEWAL_RETRY_DELAY)}`)
          .pipe(
            Effect.annotateLogs("reason", reason),
            Effect.zipRight(Metric.increment(Metric.tagged(certificateRenewals, "outcome", "failed"))),
            Effect.as(RENEWAL_RETRY_DELAY)
          )
      const refused = (error: CertificateRefused) =>
        Effect.logError(
          `renewed client certificate refused: it fails the ${error.check} check; keeping the current one, retrying in ${
            Duration.format(RENEWAL_RETRY_DELAY)
          }`
        ).pipe(
          Effect.annotateLogs({ check: error.check, reason: error.detail }),
          Effect.zipRight(Metric.increment(Metric.tagged(certificateRenewals, "outcome", "refused"))),
          Effect.as(RENEWAL_RETRY_DELAY)
        )
      // Each check says how long to wait for the next one.
      const check = checkRenewal(settings).pipe(
        Effect.tap((outcome) =>
          outcome === "renewed"
            ? Metric.increment(Metric.tagged(certificateRenewals, "outcome", "renewed"))
            : Effect.void
        ),
        Effect.as(RENEWAL_CHECK_INTERVAL),
        Effect.catchTag("CertificateRefused", refused),
        Effect.catchAll((error) => failed(error.message)),
        // Not even a bug in a library may stop renewal: the certificate would expire.
        Effect.catchAllDefect((defect) => failed(String(defect))),
        Effect.provide(context)
      )
      yield* forkWorker("CertificateRenewal", untilShutdown(Effect.void, () => check, { pause: Effect.sleep }))
    })
  )
