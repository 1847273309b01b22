/**
 * The queues between the runtime's fibers. Every queue is bounded, and no cycle of
 * blocking offers exists: workers block offering to the reducer, the reducer never blocks
 * offering to a worker (it holds surplus activation intents itself and resets probes
 * through a sliding queue).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import type { ReducerInput } from "./ReducerInput.js"

/**
 * What the activation worker runs: a forward switch to `closure`, or a rollback to it.
 *
 * @since 0.1.0
 */
export interface ActivationIntent {
  readonly rolloutId: string
  readonly closure: string
  readonly rollback: boolean
  /**
   * Set when a previous run of the agent released this switch or rollback and died before
   * its outcome was recorded: the worker looks at the host before doing anything again.
   */
  readonly resume?: boolean
}

/**
 * A reducer input as queued: `handled`, when set, completes once the reducer has handled it.
 *
 * @since 0.1.0
 */
export interface QueuedInput {
  readonly input: ReducerInput
  readonly handled: Deferred.Deferred<void> | null
}

/**
 * Drop the probe cache and restart the probes under this rollout.
 *
 * @since 0.1.0
 */
export interface ProbeReset {
  readonly rolloutId: string
}

/**
 * @since 0.1.0
 */
export interface Capacities {
  /**
   * Reducer input. A rollout's burst is about 32 inputs (dispatch, started, completed, per
   * probe an observation and a result per interval, convergence); doubled for safety.
   */
  readonly reducerInput: number
  /**
   * Activation intents. At most one switch runs at a time; a few cover a rollback queued
   * behind a running activation.
   */
  readonly activationIntents: number
  /**
   * Events (and, separately, transitions) a subscriber of the runtime's feeds may fall
   * behind by before it loses the oldest; 1024 when absent (see `Observation`).
   */
  readonly observed?: number
}

/** @since 0.1.0 */
export const defaultCapacities: Capacities = { reducerInput: 64, activationIntents: 4 }

/**
 * @since 0.1.0
 */
export interface RuntimeChannelsShape {
  readonly reducerInput: Queue.Queue<QueuedInput>
  readonly activationIntents: Queue.Queue<ActivationIntent>
  /** Only the latest reset matters: a newer one supersedes an older one not yet seen. */
  readonly probeResets: Queue.Queue<ProbeReset>
  readonly capacities: Capacities
}

/**
 * @since 0.1.0
 */
export class RuntimeChannels extends Context.Tag("@nixfleet/agent/RuntimeChannels")<
  RuntimeChannels,
  RuntimeChannelsShape
>() {
  static readonly layer = (capacities: Capacities = defaultCapacities) =>
    Layer.effect(
      RuntimeChannels,
      Effect.all({
        reducerInput: Queue.bounded<QueuedInput>(capacities.reducerInput),
        activationIntents: Queue.bounded<ActivationIntent>(capacities.activationIntents),
        probeResets: Queue.sliding<ProbeReset>(1),
        capacities: Effect.succeed(capacities)
      })
    )
}

/**
 * The channels, with capacities: `RuntimeChannels.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = RuntimeChannels.layer
