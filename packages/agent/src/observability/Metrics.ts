/**
 * The gauges sampled when metrics are collected: outbox depth and dead letters, rollouts by
 * state, the client certificate's expiry, the build. Every other metric is defined beside
 * the part that records it (activations in ActivationWorker, probe results in
 * ProbeScheduler, deliveries in OutboundSender, refused dispatches in DispatchChecks, the
 * endpoint's own gauge in MetricsExporter), so that no layer imports this one.
 *
 * Names follow Prometheus conventions: `nixfleet_agent_` prefix, base units (seconds),
 * `_total` for counters, labels for dimensions with few values.
 *
 * @since 0.1.0
 */
import { HostStates } from "@nixfleet/state-machine"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import type * as MetricPair from "effect/MetricPair"
import * as Ref from "effect/Ref"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import { AgentConfig } from "../config/AgentConfig.js"
import { Outbox } from "../outbox/Outbox.js"
import { Reducer, waitingForDisk } from "../runtime/Reducer.js"
import { VERSION } from "../support/version.js"

/**
 * The label every metric an agent's fibers record carries: its machine id. Effect's metric
 * registry is process-wide, so two agents in one process would otherwise add to the same
 * series; each agent's exposition keeps its own series and leaves the label out, so
 * Prometheus sees what a lone agent always exposed. A program reading the registry itself
 * (`Metric.value`, `Metric.snapshot`) sees it.
 *
 * @since 0.1.0
 */
export const MACHINE_ID_LABEL = "nixfleet_agent_machine_id"

const withMachineId = (machineId: string) => (labels: ReadonlyArray<MetricLabel.MetricLabel>) => [
  ...labels.filter((label) => label.key !== MACHINE_ID_LABEL),
  MetricLabel.make(MACHINE_ID_LABEL, machineId)
]

/**
 * Builds `layer` with every metric its fibers record (those it forks included) labelled
 * with `machineId`.
 *
 * @since 0.1.0
 */
export const labelLayer = (machineId: string) => <A, E, R>(layer: Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.locallyWith(layer, FiberRef.currentMetricLabels, withMachineId(machineId))

/**
 * Runs `effect` with the metrics it records (or reads) labelled with `machineId`.
 *
 * @since 0.1.0
 */
export const labelEffect = (machineId: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.locallyWith(effect, FiberRef.currentMetricLabels, withMachineId(machineId))

/**
 * The series one agent recorded: the other agents' series and those recorded outside any
 * agent are left out.
 *
 * @since 0.1.0
 */
export const seriesOf = (
  machineId: string,
  pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>
): ReadonlyArray<MetricPair.MetricPair.Untyped> =>
  pairs.filter((pair) =>
    pair.metricKey.tags.some((label) => label.key === MACHINE_ID_LABEL && label.value === machineId)
  )

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
