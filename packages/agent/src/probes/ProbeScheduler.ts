/**
 * The probe scheduler: on every probe reset (an activation completed, or a snapshot
 * re-primed a rollout) it stops every ticker of the previous rollout, re-reads the
 * declarations, declares the topology, then runs one ticker per probe.
 *
 * @since 0.1.0
 */
import type { ProbeMode, ProbeTopologyEntry } from "@nixfleet/proto"
import type { LocalEvent } from "@nixfleet/state-machine"
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AgentConfig } from "../config/AgentConfig.js"
import { PROBE_TEST_MODE, switchGate } from "../config/testGates.js"
import { Reducer } from "../runtime/Reducer.js"
import { ReducerInput } from "../runtime/ReducerInput.js"
import { RuntimeChannels } from "../runtime/RuntimeChannels.js"
import { drainUntilShutdown } from "../runtime/Shutdown.js"
import { forkWorker, Workers } from "../runtime/Workers.js"
import { loadHealthChecks, type ProbeDeclaration } from "./HealthChecks.js"
import { runProbe } from "./Runner.js"

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
 * Set to a true value (`1`, `true`, `yes`), resets run no probe (no file read, no topology,
 * no tickers). See `config/testGates`.
 *
 * @since 0.1.0
 */
export const probeTestMode: Config.Config<boolean> = switchGate(PROBE_TEST_MODE)

/** Probes run while their rollout soaks; afterwards their results would only be refused. */
const STILL_SOAKING = new Set(["Activating", "Deferred", "Soaking"])

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

type Declared = { readonly name: string } & ProbeDeclaration

/**
 * One probe's ticker: a run at once, then one every interval (a slow run delays the next
 * rather than stacking them). Its first result is announced; every pass-to-fail edge (and a
 * first failure) raises `ProbeFailureFirst`; every run reports a `ProbeResult`.
 */
const ticker = (rolloutId: string, probe: Declared) =>
  Effect.gen(function*() {
    const config = yield* AgentConfig
    const reducer = yield* Reducer
    const send = (event: LocalEvent) => reducer.offer(ReducerInput.HostEvent({ rolloutId, event }))
    const mode: ProbeMode = probe.mode
    let first = true
    let previous: "pass" | "fail" | null = null
    while (true) {
      const state = (yield* SubscriptionRef.get(reducer.records)).get(rolloutId)?.state
      if (state !== undefined && !STILL_SOAKING.has(state)) {
        return yield* Effect.logDebug(`rollout is ${state}; probe ${probe.name} stops`)
      }
      const observedAt = yield* now
      const outcome = yield* runProbe(probe, { sshHostKeyFile: config.sshHostKeyFile, now: observedAt })
      yield* Metric.increment(
        Metric.tagged(
          Metric.tagged(Metric.tagged(probeResults, "probe", probe.name), "mode", mode),
          "status",
          outcome.status
        )
      )
      if (first) {
        yield* send({ _tag: "LocalProbeObservedFirst", probeName: probe.name, mode, observedAt, seq: 0 })
        first = false
      }
      if (outcome.status === "fail" && previous !== "fail") {
        yield* send({ _tag: "LocalProbeFailureFirst", probeName: probe.name, mode, firstFailedAt: observedAt, seq: 0 })
      }
      yield* send({
        _tag: "LocalProbeResult",
        probeName: probe.name,
        mode,
        status: outcome.status,
        observedAt,
        failureReason: outcome.failureReason,
        subResults: outcome.subResults,
        seq: 0
      })
      previous = outcome.status
      if (probe.runOnce) return
      yield* Effect.sleep(Duration.seconds(probe.intervalSeconds))
    }
  }).pipe(Effect.annotateLogs({ rolloutId, probe: probe.name }))

/**
 * @since 0.1.0
 */
export const layer = Layer.scopedDiscard(
  Effect.gen(function*() {
    const channels = yield* RuntimeChannels
    const tickers = yield* FiberMap.make<string>()
    const workers = yield* Workers
    const context = yield* Effect.context<
      | AgentConfig
      | Reducer
      | Effect.Effect.Context<ReturnType<typeof runProbe>>
      | Effect.Effect.Context<ReturnType<typeof loadHealthChecks>>
    >()

    const reset = (rolloutId: string) =>
      Effect.gen(function*() {
        // No ticker of the previous rollout may report after this reset.
        yield* FiberMap.clear(tickers)
        if (yield* probeTestMode.pipe(Effect.orElseSucceed(() => false))) {
          return yield* Effect.logWarning("NIXFLEET_AGENT_PROBE_TEST_MODE is set: no probe runs")
        }
        const config = yield* AgentConfig
        const reducer = yield* Reducer
        // An invalid file is logged and counted by the loader; it then declares no probe
        // rather than silently keeping the previous declaration.
        const probes = yield* loadHealthChecks(config.healthChecksFile).pipe(
          Effect.orElseSucceed((): ReadonlyArray<Declared> => [])
        )
        const topology: Array<ProbeTopologyEntry> = probes.map((p) => ({
          probeName: p.name,
          kind: p.kind,
          mode: p.mode
        }))
        yield* reducer.offer(ReducerInput.HostEvent({
          rolloutId,
          event: { _tag: "LocalProbeTopologyDeclared", probes: topology, declaredAt: yield* now, seq: 0 }
        }))
        for (const probe of probes) {
          if (probe.mode === "disabled") continue
          // Supervised like every worker; a ticker ends on its own once the rollout stops soaking.
          yield* FiberMap.run(
            tickers,
            probe.name,
            workers.watch(`ProbeScheduler.${probe.name}`, ticker(rolloutId, probe), { mayEnd: true })
          )
        }
        yield* Effect.logInfo(`probes started: ${probes.filter((p) => p.mode !== "disabled").length}`)
      }).pipe(Effect.annotateLogs({ rolloutId }), Effect.provide(context))

    yield* forkWorker("ProbeScheduler", drainUntilShutdown(channels.probeResets, ({ rolloutId }) => reset(rolloutId)))
  })
)
