/**
 * The whole agent runtime as one layer: the reducer, the activation worker, the outbound
 * sender and the advance ticker, forked in the layer's scope and talking over bounded
 * queues. An embedding program merges it into its own layers and stops it by closing the
 * scope; the library installs no signal handler and reads configuration only through the
 * current `ConfigProvider`.
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as Path from "@effect/platform/Path"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ActivationPipeline } from "./ActivationPipeline.js"
import { ActivationWorker } from "./ActivationWorker.js"
import { AdvanceTicker } from "./AdvanceTicker.js"
import { AgentConfig, type AgentConfigShape } from "./AgentConfig.js"
import { ControlPlaneClient } from "./ControlPlaneClient.js"
import { OutboundSender } from "./OutboundSender.js"
import { Outbox, type OutboxError } from "./Outbox.js"
import { Reducer } from "./Reducer.js"
import { type Capacities, defaultCapacities, RuntimeChannels } from "./RuntimeChannels.js"
import { Shutdown } from "./Shutdown.js"

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
}

/**
 * What the runtime needs from its host program: the activation pipeline, an HTTP client
 * for the control plane, and the platform (file system, paths, processes).
 *
 * @since 0.1.0
 */
export type AgentRuntimeRequirements =
  | ActivationPipeline
  | HttpClient.HttpClient
  | FileSystem.FileSystem
  | Path.Path
  | CommandExecutor.CommandExecutor

/**
 * Services the runtime layer makes available to the program that embeds it.
 *
 * @since 0.1.0
 */
export type AgentRuntimeServices = AgentRuntime | Reducer | Outbox | RuntimeChannels | Shutdown | AgentConfig

/**
 * @since 0.1.0
 */
export class AgentRuntime extends Context.Tag("@nixfleet/agent/AgentRuntime")<AgentRuntime, AgentRuntimeService>() {
  static readonly layer = (
    options: AgentRuntimeOptions = {}
  ): Layer.Layer<AgentRuntimeServices, OutboxError | ConfigError.ConfigError, AgentRuntimeRequirements> => {
    const config = options.config === undefined ? AgentConfig.layer : AgentConfig.make(options.config)
    const foundation = Layer.mergeAll(Shutdown.layer, RuntimeChannels.layer(options.capacities ?? defaultCapacities))
    const storage = Outbox.layer
    const core = Reducer.layer.pipe(Layer.provideMerge(storage), Layer.provideMerge(foundation))
    const workers = Layer.mergeAll(ActivationWorker, AdvanceTicker, OutboundSender).pipe(
      Layer.provide(ControlPlaneClient.layer)
    )
    const handle = Layer.effect(
      AgentRuntime,
      Effect.map(Shutdown, (deferred) => ({
        shutdown: Effect.asVoid(Deferred.succeed(deferred, undefined)),
        awaitShutdown: Deferred.await(deferred)
      }))
    )
    return Layer.mergeAll(workers, handle).pipe(Layer.provideMerge(core), Layer.provideMerge(config))
  }
}
