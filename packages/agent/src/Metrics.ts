/**
 * The agent's Prometheus metrics that are not owned by one worker (those live beside it:
 * `nixfleet_agent_outbox_deliveries_total` in OutboundSender, refused dispatches in
 * DispatchChecks, …), and the gauges sampled when metrics are collected: outbox depth and
 * dead letters, rollouts by state, the client certificate's expiry.
 *
 * Names follow Prometheus conventions: `nixfleet_agent_` prefix, base units (seconds),
 * `_total` for counters, labels for dimensions with few values.
 *
 * @since 0.1.0
 */
import { HostStates } from "@nixfleet/state-machine"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Ref from "effect/Ref"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import { AgentConfig } from "./AgentConfig.js"
import { Outbox } from "./Outbox.js"
import { Reducer, waitingForDisk } from "./Reducer.js"
import { VERSION } from "./version.js"

/**
 * Activations and rollbacks the worker ran, by `kind` (`activate`, `rollback`) and
 * `outcome` (the `activate`/`rollback` command's outcome names, or `test_mode`).
 *
 * @since 0.1.0
 */
export const activations = Metric.counter("nixfleet_agent_activations_total", {
  description: "Activations and rollbacks run by the agent, by kind and outcome",
  incremental: true
})

/**
 * How long each activation or rollback took, from the intent to the outcome. Buckets span
 * a fast switch (seconds) to the realise timeout (an hour).
 *
 * @since 0.1.0
 */
export const activationDuration = Metric.histogram(
  "nixfleet_agent_activation_duration_seconds",
  MetricBoundaries.fromIterable([1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]),
  "Duration of activations and rollbacks, by kind and outcome"
)

/**
 * Probe runs, by `probe`, `mode` and `status` (`pass`, `fail`).
 *
 * @since 0.1.0
 */
export const probeResults = Metric.counter("nixfleet_agent_probe_results_total", {
  description: "Health probe runs, by probe, mode and status",
  incremental: true
})

/**
 * 1 while the control plane refuses the agent's events for its identity, labelled with the
 * refusal's `status` (401, 403, 426); 0 otherwise. Set by the outbound sender when the state
 * changes (every status starts at 0), so an alert needs no log query.
 *
 * @since 0.1.0
 */
export const deliveryBlocked = Metric.gauge("nixfleet_agent_outbox_delivery_blocked", {
  description: "1 while the control plane refuses this agent's events (401, 403, 426), by status; 0 otherwise"
})

/**
 * The statuses that block delivery rather than condemn an event.
 *
 * @since 0.1.0
 */
export const BLOCKING_STATUSES: ReadonlyArray<number> = [401, 403, 426]

/**
 * Sets the gauge: 1 for `status` (when blocked), 0 for the others.
 *
 * @since 0.1.0
 */
export const setDeliveryBlocked = (status: number | null): Effect.Effect<void> =>
  Effect.forEach(
    BLOCKING_STATUSES,
    (each) => Metric.set(Metric.tagged(deliveryBlocked, "status", String(each)), each === status ? 1 : 0),
    { discard: true }
  )

/**
 * 1 while the metrics endpoint (`--metrics-listen`) is bound, 0 while its bind is refused
 * and retried (a port taken by another process, a privileged port). Read in the textfile,
 * or as the scrape's own failure.
 *
 * @since 0.1.0
 */
export const metricsListenUp = Metric.gauge("nixfleet_agent_metrics_listen_up", {
  description: "1 while the metrics endpoint is bound; 0 while binding it is refused and retried"
})

const outboxPending = Metric.gauge("nixfleet_agent_outbox_pending", {
  description: "Events in the outbox waiting for the control plane"
})

const outboxDeadLetters = Metric.gauge("nixfleet_agent_outbox_dead_letters", {
  description: "Events the control plane refused for good, kept in the outbox's dead letters"
})

const rollouts = Metric.gauge("nixfleet_agent_rollouts", {
  description: "Rollouts the agent holds, by state"
})

const certificateExpiry = Metric.gauge("nixfleet_agent_client_certificate_expiry_timestamp_seconds", {
  description: "When the mTLS client certificate expires (Unix time)"
})

const buildInfo = Metric.gauge("nixfleet_agent_build_info", {
  description: "Always 1; the version label says which agent runs"
})

/** The certificate's `notAfter`, or nothing when there is none to read (yet). */
const certificateNotAfter = (file: string) =>
  Effect.tryPromise(() => Fs.readFile(file)).pipe(
    Effect.flatMap((pem) => Effect.try(() => new Crypto.X509Certificate(pem))),
    Effect.map((certificate) => new Date(certificate.validTo).getTime() / 1000),
    Effect.option
  )

/**
 * Sets the sampled gauges from the running agent's state. Called before each collection;
 * a part that cannot be read keeps its previous value (the outbox logs its own errors).
 *
 * @since 0.1.0
 */
export const sampleGauges: Effect.Effect<void, never, Outbox | Reducer | AgentConfig> = Effect.gen(function*() {
  const outbox = yield* Outbox
  const reducer = yield* Reducer
  const config = yield* AgentConfig
  yield* Metric.set(Metric.tagged(buildInfo, "version", VERSION), 1)
  const stats = yield* Effect.option(outbox.stats)
  if (stats._tag === "Some") {
    yield* Metric.set(outboxPending, stats.value.pending)
    yield* Metric.set(outboxDeadLetters, stats.value.deadLetters)
  }
  const held = yield* Ref.get(reducer.diskBacklog)
  yield* Metric.set(waitingForDisk, held.events + held.activations)
  const records = yield* SubscriptionRef.get(reducer.records)
  for (const state of HostStates) {
    let n = 0
    for (const record of records.values()) if (record.state === state) n++
    yield* Metric.set(Metric.tagged(rollouts, "state", state), n)
  }
  if (config.clientCert !== null) {
    const notAfter = yield* certificateNotAfter(config.clientCert)
    if (notAfter._tag === "Some") yield* Metric.set(certificateExpiry, notAfter.value)
  }
})
