/**
 * What the reducer asks its runtime to do: effects as data. Named `Command` so it does not
 * collide with Effect. `Local*` commands are the agent's, `Remote*` the control plane's;
 * an applier refuses the other side's.
 *
 * @since 0.1.0
 */
import type { AgentEvent } from "@nixfleet/proto"
import type { HostState } from "./HostState.js"

/**
 * The payload of `LocalEmitEvent` and `RemoteAppendEventLog`: the wire `AgentEvent` as
 * decoded (`_tag` is the upstream OutboundAgentEvent name).
 *
 * @since 0.1.0
 */
export type OutboundAgentEvent = AgentEvent

/**
 * Run the switch on the record's target closure.
 *
 * @since 0.1.0
 */
export interface LocalFireSwitch {
  readonly _tag: "LocalFireSwitch"
  readonly rolloutId: string
  readonly target: string
}

/**
 * Switch back to `closure`, always the record's `currentClosureAtDispatch`.
 *
 * @since 0.1.0
 */
export interface LocalFireRollbackTo {
  readonly _tag: "LocalFireRollbackTo"
  readonly rolloutId: string
  readonly closure: string
}

/**
 * Drop cached probe results and tickers so stale passes cannot satisfy this rollout.
 *
 * @since 0.1.0
 */
export interface LocalResetProbeCache {
  readonly _tag: "LocalResetProbeCache"
  readonly rolloutId: string
}

/**
 * Report an event to the control plane; `durable` events are stored before they are sent.
 *
 * @since 0.1.0
 */
export interface LocalEmitEvent {
  readonly _tag: "LocalEmitEvent"
  readonly rolloutId: string
  readonly payload: OutboundAgentEvent
  readonly durable: boolean
}

/**
 * Queue a dispatch for the host's next long-poll. `step` never emits it.
 *
 * @since 0.1.0
 */
export interface RemoteQueueDispatch {
  readonly _tag: "RemoteQueueDispatch"
  readonly host: string
  readonly rolloutId: string
  readonly targetClosure: string
  readonly soakDueAt: Date
}

/**
 * Quarantine a closure on a channel (append-only).
 *
 * @since 0.1.0
 */
export interface RemoteInsertQuarantine {
  readonly _tag: "RemoteInsertQuarantine"
  readonly channel: string
  readonly closure: string
}

/**
 * Create a host rollout record. `step` never emits it.
 *
 * @since 0.1.0
 */
export interface RemoteOpenRolloutRecord {
  readonly _tag: "RemoteOpenRolloutRecord"
  readonly rolloutId: string
  readonly channel: string
  readonly host: string
}

/**
 * Append an inbound agent event to the control plane's audit log.
 *
 * @since 0.1.0
 */
export interface RemoteAppendEventLog {
  readonly _tag: "RemoteAppendEventLog"
  readonly host: string
  readonly rolloutId: string
  readonly payload: OutboundAgentEvent
}

/**
 * Every change of state, stamped with the event's own timestamp.
 *
 * @since 0.1.0
 */
export interface RecordTransition {
  readonly _tag: "RecordTransition"
  readonly host: string
  readonly rolloutId: string
  readonly from: HostState
  readonly to: HostState
  readonly at: Date
}

/**
 * A metric sample. `step` never emits it.
 *
 * @since 0.1.0
 */
export interface EmitMetric {
  readonly _tag: "EmitMetric"
  readonly name: string
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly value: number
}

/**
 * A log line. `step` never emits it.
 *
 * @since 0.1.0
 */
export interface EmitLog {
  readonly _tag: "EmitLog"
  readonly level: "Trace" | "Debug" | "Info" | "Warn" | "Error"
  readonly target: string
  readonly message: string
  readonly fields: ReadonlyArray<readonly [string, string]>
}

/** @since 0.1.0 */
export type LocalCommand = LocalFireSwitch | LocalFireRollbackTo | LocalResetProbeCache | LocalEmitEvent

/** @since 0.1.0 */
export type RemoteCommand =
  | RemoteQueueDispatch
  | RemoteInsertQuarantine
  | RemoteOpenRolloutRecord
  | RemoteAppendEventLog

/** @since 0.1.0 */
export type SharedCommand = RecordTransition | EmitMetric | EmitLog

/** @since 0.1.0 */
export type Command = LocalCommand | RemoteCommand | SharedCommand

/** @since 0.1.0 */
export type CommandName = Command["_tag"]

/**
 * True for commands only the agent may execute.
 *
 * @since 0.1.0
 */
export const isLocalCommand = (command: Command): command is LocalCommand => command._tag.startsWith("Local")

/**
 * True for commands only the control plane may execute.
 *
 * @since 0.1.0
 */
export const isRemoteCommand = (command: Command): command is RemoteCommand => command._tag.startsWith("Remote")
