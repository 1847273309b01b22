/**
 * The whole agent runtime as one layer: the reducer, the activation worker, the outbound
 * sender, the long-poll, heartbeat and manifest-poll workers, the probe scheduler, the advance ticker
 * and certificate renewal, forked in the layer's scope (after boot recovery) as one supervised set
 * (`Workers`) and talking over bounded queues. A worker's fault stops the whole runtime. An
 * embedding program merges it into its own layers and stops it by closing the scope; the library installs no signal handler and reads configuration only through the
 * current `ConfigProvider`. Every metric the runtime's fibers record carries its machine id
 * (`Metrics.MACHINE_ID_LABEL`): two runtimes in one process keep their series apart, and
 * each one's `/metrics` and textfile show its own, without the label.
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { AgentConfig, type AgentConfigShape } from "./config/AgentConfig.js"
import { ControlPlaneClient, ControlPlaneTransport } from "./controlplane/ControlPlaneClient.js"
import type { ClientSetupError } from "./controlplane/ControlPlaneHttp.js"
import * as Heartbeat from "./controlplane/Heartbeat.js"
import * as Longpoll from "./controlplane/Longpoll.js"
import { ManifestCache } from "./controlplane/ManifestCache.js"
import * as ManifestPoll from "./controlplane/ManifestPoll.js"
import * as OutboundSender from "./controlplane/OutboundSender.js"
import * as CertificateRenewal from "./identity/CertificateRenewal.js"
import { labelLayer } from "./observability/Metrics.js"
import { type MetricsExporterError } from "./observability/MetricsExporter.js"
import * as MetricsExporter from "./observability/MetricsExporter.js"
import { Outbox, type OutboxError } from "./outbox/Outbox.js"
import type { ActivationPipeline } from "./pipeline/ActivationPipeline.js"
import * as ProbeScheduler from "./probes/ProbeScheduler.js"
import * as ActivationWorker from "./runtime/ActivationWorker.js"
import * as AdvanceTicker from "./runtime/AdvanceTicker.js"
import { HostLedger, type HostLedgerError } from "./runtime/HostLedger.js"
import { awaitDelivered, Observation, type RecordedEvent, type Transition } from "./runtime/Observation.js"
import { Reducer, type ReducerService } from "./runtime/Reducer.js"
import { type Capacities, defaultCapacities, RuntimeChannels } from "./runtime/RuntimeChannels.js"
import { Shutdown } from "./runtime/Shutdown.js"
import { StatusBoard } from "./runtime/StatusBoard.js"
import type { WorkerFault } from "./runtime/StatusBoard.js"
import { WorkerFailed, Workers } from "./runtime/Workers.js"
import { AgentStatus, type AgentStatusService, markRunning } from "./status/AgentStatus.js"

/**
 * @since 0.1.0
 */
export interface AgentRuntimeOptions {
  /** A fixed configuration; by default it is read from the current `ConfigProvider`. */
  readonly config?: AgentConfigShape
  /** Queue capacities (tests shrink them to provoke back-pressure). */
  readonly capacities?: Capacities
}

/**
 * @since 0.1.0
 */
export interface AgentRuntimeService {
  /** Asks every loop to stop taking new work (what SIGTERM does in the CLI). */
  readonly shutdown: Effect.Effect<void>
  /** Completes once a shutdown was asked for. */
  readonly awaitShutdown: Effect.Effect<void>
  /** The reducer, to feed it inputs (boot recovery, an embedder's own sources). */
  readonly reducer: ReducerService
  /** The agent's report on itself, and its phase line. */
  readonly status: AgentStatusService
  /** The first worker fault, once a worker died or ended unexpectedly (the runtime is then stopping). */
  readonly workerFault: Effect.Effect<Option.Option<WorkerFault>>
  /**
   * Each event the reducer stores in the outbox, once its row is committed, from the moment
   * the stream runs. A subscriber that falls behind by more than `capacities.observed`
   * loses the oldest (the agent never waits for it); the stream ends when the runtime stops.
   */
  readonly events: Stream.Stream<RecordedEvent>
  /** Each state transition of a rollout, as `events` (same capacity, same end). */
  readonly transitions: Stream.Stream<Transition>
  /**
   * Completes once every event stored before the call is settled with the control plane:
   * acknowledged (2xx) or refused for good (dead-lettered). Waits as long as delivery
   * takes: bound it with `Effect.timeout`.
   */
  readonly awaitDelivered: Effect.Effect<void>
}

/**
 * What the runtime needs from its host program: the activation pipeline and the platform
 * (file system, paths, processes). Not an HTTP client: the runtime builds its own
 * transport to the control plane from its configuration (`ControlPlaneTransport.layer`),
 * and an `HttpClient` in the embedding program's context is never used for it.
 *
 * @since 0.1.0
 */
export type AgentRuntimeRequirements =
  | ActivationPipeline
  | FileSystem.FileSystem
  | Path.Path
  | CommandExecutor.CommandExecutor

/**
 * Services the runtime layer makes available to the program that embeds it.
 *
 * @since 0.1.0
 */
export type AgentRuntimeServices =
  | AgentRuntime
  | Reducer
  | Outbox
  | HostLedger
  | RuntimeChannels
  | Shutdown
  | AgentConfig
  | StatusBoard
  | AgentStatus
  | Workers

/**
 * @since 0.1.0
 */
export class AgentRuntime extends Context.Tag("@nixfleet/agent/AgentRuntime")<AgentRuntime, AgentRuntimeService>() {
  static readonly layer = (
    options: AgentRuntimeOptions = {}
  ): Layer.Layer<
    AgentRuntimeServices,
    OutboxError | HostLedgerError | ConfigError.ConfigError | MetricsExporterError | ClientSetupError,
    AgentRuntimeRequirements
  > => {
    const config = options.config === undefined ? AgentConfig.layer : AgentConfig.make(options.config)
    const capacities = options.capacities ?? defaultCapacities
    const foundation = Workers.layer.pipe(
      Layer.provideMerge(Layer.mergeAll(
        Shutdown.layer,
        RuntimeChannels.layer(capacities),
        StatusBoard.layer
      ))
    )
    const storage = Layer.merge(Outbox.layer, HostLedger.layer)
    const core = AgentStatus.layer.pipe(Layer.provideMerge(Reducer.layer), Layer.provideMerge(storage))
    const controlPlane = ManifestCache.layer.pipe(
      Layer.provideMerge(ControlPlaneClient.layer),
      Layer.provide(ControlPlaneTransport.layer)
    )
    // Boot recovery is built first: its snapshots reach the reducer before any worker input.
    const workers = Layer.mergeAll(
      ActivationWorker.layer,
      AdvanceTicker.layer,
      OutboundSender.layer,
      Longpoll.layer,
      Heartbeat.layer,
      ManifestPoll.layer,
      ProbeScheduler.layer,
      MetricsExporter.layer,
      CertificateRenewal.layer
    )
      .pipe(
        Layer.provide(Heartbeat.layerBootRecovery),
        Layer.provide(controlPlane),
        Layer.tap(() => markRunning)
      )
    const handle = Layer.effect(
      AgentRuntime,
      Effect.gen(function*() {
        const [deferred, reducer, status, workers, observation] = yield* Effect.all([
          Shutdown,
          Reducer,
          AgentStatus,
          Workers,
          Observation
        ])
        const delivered = yield* Effect.context<Outbox | Observation>()
        return {
          shutdown: Effect.asVoid(Deferred.succeed(deferred, undefined)),
          awaitShutdown: Deferred.await(deferred),
          reducer,
          status,
          workerFault: workers.fault,
          events: observation.events,
          transitions: observation.transitions,
          awaitDelivered: Effect.provide(awaitDelivered, delivered)
        }
      })
    )
    // The board's logger is installed over everything that forks, so every fiber reports to it.
    const runtime = Layer.mergeAll(workers, handle).pipe(
      Layer.provideMerge(core),
      Layer.provide(StatusBoard.logger),
      // Provided, not merged: the feeds reach the embedder through the handle only.
      Layer.provide(Observation.layer(capacities.observed)),
      Layer.provideMerge(foundation)
    )
    // Every fiber the runtime forks labels its metrics with the machine id (two agents in one
    // process keep their series apart); the configuration is read first, to know it.
    return Layer.unwrapEffect(Effect.map(AgentConfig, ({ machineId }) => labelLayer(machineId)(runtime))).pipe(
      Layer.provideMerge(config)
    )
  }
}

/**
 * The whole stop is bounded by this deadline, under systemd's default `TimeoutStopSec`
 * (90 s) with room to spare. Durable data never depends on the drain.
 *
 * @since 0.1.0
 */
export const DRAIN_DEADLINE = Duration.seconds(25)

/**
 * Builds the runtime, runs it until a shutdown is asked for (`AgentRuntime.shutdown`, which
 * the CLI calls on SIGTERM and SIGINT), then closes its scope: loops stop taking work, work
 * in progress is interrupted, finalizers run. If that takes longer than the deadline it
 * gives up waiting (the caller then exits the process) and says so. When a worker's fault
 * asked for the shutdown, it fails with `WorkerFailed` once the scope is closed.
 *
 * @since 0.1.0
 */
export const runUntilShutdown = <E, R>(
  layer: Layer.Layer<AgentRuntimeServices, E, R>,
  options: {
    readonly drainDeadline?: Duration.DurationInput
    /** Called once the runtime is up, with its handle (e.g. to install signal handlers). */
    readonly onStarted?: (runtime: AgentRuntimeService) => Effect.Effect<void>
  } = {}
): Effect.Effect<void, E | WorkerFailed, R> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope).pipe(
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    const runtime = Context.get(context, AgentRuntime)
    if (options.onStarted !== undefined) yield* options.onStarted(runtime)
    yield* runtime.awaitShutdown
    const deadline = options.drainDeadline ?? DRAIN_DEADLINE
    yield* Effect.logInfo("shutting down")
    const closed = yield* Effect.timeoutOption(Scope.close(scope, Exit.void), deadline)
    if (Option.isNone(closed)) {
      yield* Effect.logWarning(`drain exceeded ${Duration.format(deadline)}; forcing exit`)
    } else {
      yield* Effect.logInfo("stopped")
    }
    const fault = yield* runtime.workerFault
    if (Option.isSome(fault)) {
      return yield* new WorkerFailed({
        worker: fault.value.worker,
        message: `worker ${fault.value.worker} failed: ${fault.value.reason}`
      })
    }
  })

/**
 * The whole runtime (see `AgentRuntime.layer`): `AgentRuntime.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = AgentRuntime.layer
