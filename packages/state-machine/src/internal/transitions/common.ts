import * as Either from "effect/Either"
import type { Command, RecordTransition } from "../../Command.js"
import type { Event } from "../../Event.js"
import type { HostRolloutState } from "../../HostRolloutState.js"
import type { HostState } from "../../HostState.js"
import type { RolloutPolicy } from "../../RolloutPolicy.js"
import { IllegalForState, type TransitionError } from "../../TransitionError.js"
import { outboundPayload } from "../../Wire.js"

/** @internal */
export interface Transition {
  readonly state: HostRolloutState
  readonly effects: ReadonlyArray<Command>
}

/** @internal */
export type StepResult = Either.Either<Transition, TransitionError>

/** @internal */
export type Handler = (record: HostRolloutState, event: Event, policy: RolloutPolicy) => StepResult

/** @internal */
export const illegal = (record: HostRolloutState, event: Event): StepResult =>
  Either.left(
    new IllegalForState({
      from: record.state,
      event: event._tag,
      rolloutId: record.rolloutId,
      hostname: record.hostname
    })
  )

/**
 * The next record: the given field updates, the event's seq, and a fresh probes map so
 * that the caller's record never shares mutable state with the result.
 *
 * @internal
 */
export const next = (
  record: HostRolloutState,
  event: Event,
  updates: Partial<HostRolloutState>
): HostRolloutState => ({
  ...record,
  ...updates,
  probes: updates.probes ?? new Map(record.probes),
  lastEventSeq: event.seq
})

/** @internal */
export const ok = (state: HostRolloutState, effects: ReadonlyArray<Command>): StepResult =>
  Either.right({ state, effects })

/** @internal */
export const recordTransition = (record: HostRolloutState, to: HostState, at: Date): RecordTransition => ({
  _tag: "RecordTransition",
  host: record.hostname,
  rolloutId: record.rolloutId,
  from: record.state,
  to,
  at
})

/** @internal */
export const emit = (record: HostRolloutState, event: Event, durable: boolean): Command => ({
  _tag: "LocalEmitEvent",
  rolloutId: record.rolloutId,
  payload: outboundPayload(event),
  durable
})

/** @internal */
export const appendLog = (record: HostRolloutState, event: Event): Command => ({
  _tag: "RemoteAppendEventLog",
  host: record.hostname,
  rolloutId: record.rolloutId,
  payload: outboundPayload(event)
})

/**
 * The visible report of an event: emitted by the agent, logged by the control plane.
 *
 * @internal
 */
export const report = (record: HostRolloutState, event: Event, durable: boolean): Command =>
  event._tag.startsWith("Local") ? emit(record, event, durable) : appendLog(record, event)

/** @internal */
export const isLocal = (event: Event): boolean => event._tag.startsWith("Local")
