/**
 * The whole agent as one layer, as safe as `nixfleet-agent run`, which is built on it:
 * before the runtime starts it checks the trust file, prepares the state directory (0700,
 * refused when another user could steer it) and claims it (one agent per state directory);
 * it enrolls first when a bootstrap token is configured and there is no certificate yet;
 * then it runs the runtime (`AgentRuntime`) with the real Nix pipeline, the status socket
 * and, when an endpoint is set, tracing. The control plane is reached only through the
 * agent's own mTLS transport.
 *
 * `layer(options)` reads nothing from the environment: every setting comes from `options`,
 * under the name it has there (the flag's name in camelCase). `layerConfig()` reads the same
 * settings from the current `ConfigProvider` (the `NIXFLEET_AGENT_*` keys), which is what
 * `run` does with its flags laid over the environment. A setting that cannot be used is
 * either an error naming its key (the required ones) or its default with a warning in the
 * status report, as under `run`.
 *
 * The layer needs the platform (`NodeContext.layer`), installs no signal handler and never
 * exits the process: the embedder stops the agent by closing the layer's scope (or asks
 * for a drain with `shutdown` under `AgentRuntime.runUntilShutdown`).
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import * as AgentRuntime from "./AgentRuntime.js"
import { AgentConfig } from "./config/AgentConfig.js"
import { PipelineConfig, type SwitchMethod } from "./config/PipelineConfig.js"
import * as Settings from "./config/settings.js"
import { ACTIVATION_TEST_MODE, PROBE_TEST_MODE } from "./config/testGates.js"
import { enrollAnonymously, pendingEnrollment } from "./identity/Enrollment.js"
import * as Tracing from "./observability/Tracing.js"
import * as NixActivationPipeline from "./pipeline/NixActivationPipeline.js"
import type * as Observation from "./runtime/Observation.js"
import type { Capacities } from "./runtime/RuntimeChannels.js"
import type { WorkerFault } from "./runtime/StatusBoard.js"
import * as TestFailWorker from "./runtime/testFailWorker.js"
import type { StatusReport } from "./status/StatusReport.js"
import * as StatusServer from "./status/StatusServer.js"
import { prepareStateDir } from "./support/pathSafety.js"
import { lockStateDir } from "./support/stateDirLock.js"
import { readTrustFile } from "./support/trustFile.js"

/**
 * Every setting of the agent. Only `machineId` and `controlPlaneUrl` are required; the
 * others default as under `run` (see the README's settings table). `null` means "none"
 * where a setting can be off (a file, the metrics endpoint, tracing, renewal).
 *
 * @since 0.1.0
 */
export interface Options {
  readonly machineId: string
  readonly controlPlaneUrl: string
  readonly stateDir?: string
  readonly trustFile?: string
  readonly caCert?: string | null
  readonly clientCert?: string | null
  readonly clientKey?: string | null
  readonly bootstrapTokenFile?: string | null
  readonly manifestFreshnessWindowSecs?: number
  readonly sustainedFailureSecs?: number
  readonly outboxNonDurableCap?: number
  readonly renewalThresholdFraction?: number | null
  readonly currentSystemPath?: string
  readonly healthChecksFile?: string
  readonly sshHostKeyFile?: string
  readonly systemProfile?: string
  readonly switchLockPath?: string
  readonly storeDir?: string
  readonly switchMethod?: SwitchMethod
  readonly verifyTimeoutSecs?: number
  readonly realiseTimeoutSecs?: number
  /** `[host:]port` of the Prometheus endpoint; null or absent: none. */
  readonly metricsListen?: string | null
  /** A node_exporter textfile to keep up to date; null or absent: none. */
  readonly metricsTextfile?: string | null
  /** The OTLP/HTTP endpoint traces go to; null or absent: no tracing. */
  readonly otlpEndpoint?: string | null
  /** Activation test mode: activations and rollbacks are reported, not run. */
  readonly activationTestMode?: boolean
  /** Probe test mode: no probe runs. */
  readonly probeTestMode?: boolean
  /** Queue capacities (tests shrink them to provoke back-pressure). */
  readonly capacities?: Capacities
}

/** Each option's key: the same keys `run`'s flags and the environment set. */
const KEYS: { readonly [K in Exclude<keyof Options, "capacities">]-?: string } = {
  machineId: Settings.machineId.key,
  controlPlaneUrl: Settings.controlPlaneUrl.key,
  stateDir: Settings.stateDir.key,
  trustFile: Settings.trustFile.key,
  caCert: Settings.caCert.key,
  clientCert: Settings.clientCert.key,
  clientKey: Settings.clientKey.key,
  bootstrapTokenFile: Settings.bootstrapTokenFile.key,
  manifestFreshnessWindowSecs: Settings.manifestFreshnessWindowSecs.key,
  sustainedFailureSecs: Settings.sustainedFailureSecs.key,
  outboxNonDurableCap: Settings.outboxNonDurableCap.key,
  renewalThresholdFraction: Settings.renewalThresholdFraction.key,
  currentSystemPath: Settings.currentSystemPath.key,
  healthChecksFile: Settings.healthChecksFile.key,
  sshHostKeyFile: Settings.sshHostKeyFile.key,
  systemProfile: Settings.systemProfile.key,
  switchLockPath: Settings.switchLockPath.key,
  storeDir: Settings.storeDir.key,
  switchMethod: Settings.switchMethod.key,
  verifyTimeoutSecs: Settings.verifyTimeoutSecs.key,
  realiseTimeoutSecs: Settings.realiseTimeoutSecs.key,
  metricsListen: Settings.metricsListen.key,
  metricsTextfile: Settings.metricsTextfile.key,
  otlpEndpoint: "OTEL_EXPORTER_OTLP_ENDPOINT",
  activationTestMode: ACTIVATION_TEST_MODE,
  probeTestMode: PROBE_TEST_MODE
}

/**
 * The options as the keys and texts a `ConfigProvider` serves: the only configuration an
 * agent built with `layer` sees.
 *
 * @since 0.1.0
 */
export const configProvider = (options: Options): ConfigProvider.ConfigProvider => {
  const entries = new Map<string, string>()
  for (const [name, key] of Object.entries(KEYS)) {
    const value: unknown = options[name as keyof typeof KEYS]
    if (value === undefined || value === null || value === false) continue
    entries.set(key, value === true ? "1" : String(value))
  }
  return ConfigProvider.fromMap(entries)
}

/**
 * The agent could not start: `reason` says which check refused it, `message` what to fix.
 *
 * @since 0.1.0
 */
export class NixfleetAgentError extends Data.TaggedError("NixfleetAgentError")<{
  readonly reason: "TrustFile" | "StateDirectory" | "AlreadyRunning" | "Enrollment"
  readonly message: string
}> {}

/**
 * An event the agent stored in its outbox, for the control plane: its rollout, its seq (a
 * rollout's events are numbered in order), its kind (`DispatchAck`, `ActivationStarted`,
 * …, `Converged`) and the event itself (`body`, the value whose wire JSON is posted).
 *
 * @since 0.1.0
 */
export type RecordedEvent = Observation.RecordedEvent

/**
 * A change of a rollout's state (`Pending` → `Activating` → … → `Converged`): from, the
 * agent's event that caused it (`LocalActivate`, …), to, and that event's timestamp.
 *
 * @since 0.1.0
 */
export type Transition = Observation.Transition

/**
 * The running agent, as its embedding program sees it. Nothing here changes what the
 * agent does but `shutdown`.
 *
 * @since 0.1.0
 */
export interface NixfleetAgentService {
  /** The report `nixfleet-agent status` shows, as of now. */
  readonly status: Effect.Effect<StatusReport>
  /**
   * Each event the agent records, once it is durable (committed to the outbox), from the
   * moment the stream runs: a rollout's events in seq order. A subscriber that falls more
   * than `capacities.observed` (1024) behind loses the oldest; the agent never waits for
   * it, and the control plane still gets every event. The stream ends when the agent stops.
   */
  readonly events: Stream.Stream<RecordedEvent>
  /** Each state transition of a rollout, from the moment the stream runs (as `events`). */
  readonly transitions: Stream.Stream<Transition>
  /**
   * Completes once every event recorded before the call has been delivered to the control
   * plane: acknowledged by it, or refused by it for good and kept as a dead letter (probe
   * chatter the outbox's cap dropped no longer counts). It waits as long as delivery takes
   * (a control plane down, an agent it refuses): bound it with `Effect.timeout`.
   */
  readonly awaitDelivered: Effect.Effect<void>
  /** Asks every loop to stop taking new work; the scope's closing then drains them. */
  readonly shutdown: Effect.Effect<void>
  /** Completes once a shutdown was asked for (by `shutdown` or by a worker's fault). */
  readonly awaitShutdown: Effect.Effect<void>
  /** The first worker fault, once a worker died or ended unexpectedly. */
  readonly workerFault: Effect.Effect<Option.Option<WorkerFault>>
}

/**
 * @since 0.1.0
 */
export class NixfleetAgent extends Context.Tag("@nixfleet/agent/NixfleetAgent")<
  NixfleetAgent,
  NixfleetAgentService
>() {}

/** The trust file must parse at start, as upstream (it is re-read on every verification). */
const checkTrustFile = Effect.flatMap(AgentConfig, ({ trustFile }) =>
  readTrustFile(trustFile).pipe(
    Effect.mapError((message) => new NixfleetAgentError({ reason: "TrustFile", message }))
  ))

/**
 * What `run` checks before anything is written: the trust file, the state directory (created
 * 0700 when missing, refused when another user could steer it) and that no other agent
 * holds it (its lock, held for the layer's life; only then is a stale status socket
 * removed); then first-boot enrollment when it is due.
 */
const preflight = Effect.gen(function*() {
  yield* checkTrustFile
  const { stateDir } = yield* AgentConfig
  yield* prepareStateDir(stateDir).pipe(
    Effect.mapError((message) => new NixfleetAgentError({ reason: "StateDirectory", message }))
  )
  yield* lockStateDir(stateDir).pipe(
    Effect.mapError((message) => new NixfleetAgentError({ reason: "AlreadyRunning", message }))
  )
  yield* StatusServer.claimStatusSocket(stateDir).pipe(
    Effect.mapError((error) => new NixfleetAgentError({ reason: "AlreadyRunning", message: error.message }))
  )
  const files = yield* pendingEnrollment
  if (files !== null) {
    yield* enrollAnonymously(files).pipe(
      Effect.mapError((error) => new NixfleetAgentError({ reason: "Enrollment", message: error.message }))
    )
  }
}).pipe(Effect.provide(AgentConfig.layer))

/**
 * The services an embedding program gets: the agent's handle, and the runtime's services
 * (see `AgentRuntime.AgentRuntimeServices`).
 *
 * @since 0.1.0
 */
export type Services = NixfleetAgent | AgentRuntime.AgentRuntimeServices

/**
 * What can stop the agent from starting.
 *
 * @since 0.1.0
 */
export type StartError =
  | NixfleetAgentError
  | Layer.Layer.Error<ReturnType<typeof AgentRuntime.layer>>
  | Layer.Layer.Error<
    typeof StatusServer.layer
  >

/**
 * What the agent needs from its program: the platform (`NodeContext.layer` from
 * `@effect/platform-node`), so that an embedder may wrap the command executor (a sandbox's
 * environment for Nix, say).
 *
 * @since 0.1.0
 */
export type Platform = FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor

/**
 * The agent with its settings read from the current `ConfigProvider` (the `NIXFLEET_AGENT_*`
 * keys, `OTEL_EXPORTER_OTLP_ENDPOINT`), as `run` builds it.
 *
 * @since 0.1.0
 */
export const layerConfig = (
  options: { readonly capacities?: Capacities } = {}
): Layer.Layer<Services, StartError, Platform> => {
  const runtime = StatusServer.layer.pipe(
    Layer.provideMerge(AgentRuntime.layer(options.capacities === undefined ? {} : { capacities: options.capacities })),
    Layer.provide(NixActivationPipeline.layer.pipe(Layer.provide(PipelineConfig.layer))),
    // Off unless NIXFLEET_AGENT_TEST_FAIL_WORKER is set.
    Layer.provide(TestFailWorker.layer)
  )
  const handle = Layer.effect(
    NixfleetAgent,
    Effect.map(AgentRuntime.AgentRuntime, (runtime) =>
      NixfleetAgent.of({
        status: runtime.status.report,
        events: runtime.events,
        transitions: runtime.transitions,
        awaitDelivered: runtime.awaitDelivered,
        shutdown: runtime.shutdown,
        awaitShutdown: runtime.awaitShutdown,
        workerFault: runtime.workerFault
      }))
  )
  return Layer.provideMerge(handle, runtime).pipe(
    Layer.provide(Layer.scopedDiscard(preflight)),
    // Built first and released last: spans are flushed after the drain.
    Layer.provide(Tracing.layer),
    // Each agent its own: two in one layer graph never share an outbox or a reducer.
    Layer.fresh
  )
}

/**
 * The agent with every setting from `options` and nothing from the environment.
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Services, StartError, Platform> => {
  // A setting given as an empty or blank text is a mistake, never "the default".
  const blank = Object.entries(KEYS).find(([name]) => {
    const value: unknown = options[name as keyof typeof KEYS]
    return typeof value === "string" && value.trim() === ""
  })
  if (blank !== undefined) {
    const [name, key] = blank
    return Layer.fail(ConfigError.InvalidData([key], `${name} (${key}) is empty`))
  }
  return layerConfig(options.capacities === undefined ? {} : { capacities: options.capacities }).pipe(
    Layer.provide(Layer.setConfigProvider(configProvider(options)))
  )
}
