/**
 * The reducer's 24 inputs: `Local*` events come from the agent's own workers, `Remote*`
 * events are the control plane's view of what the agent reported. `_tag` is the upstream
 * variant name; every event carries `seq`.
 *
 * @since 0.1.0
 */
import {
  I32,
  Instant,
  OnHealthFailure,
  ProbeMode,
  ProbeStatus,
  ProbeSubResult,
  ProbeTopologyEntry,
  U64
} from "@nixfleet/proto"
import * as Schema from "effect/Schema"

const Closure = Schema.String
const Seq = U64
const TopologyEntry = Schema.typeSchema(ProbeTopologyEntry)
const SubResult = Schema.typeSchema(ProbeSubResult)

const activate = { currentClosureAtDispatch: Closure, receivedAt: Instant, seq: Seq }
const started = { startedAt: Instant, switchMethod: Schema.String, seq: Seq }
const completed = { observedCurrentClosure: Closure, exitCode: I32, completedAt: Instant, seq: Seq }
const deferred = { component: Schema.String, deferredAt: Instant, seq: Seq }
const failed = { exitCode: I32, stderrTail: Schema.String, failedAt: Instant, seq: Seq }
const topology = { probes: Schema.Array(TopologyEntry), declaredAt: Instant, seq: Seq }
const observedFirst = { probeName: Schema.String, mode: ProbeMode, observedAt: Instant, seq: Seq }
const result = {
  probeName: Schema.String,
  mode: ProbeMode,
  status: ProbeStatus,
  observedAt: Instant,
  failureReason: Schema.NullOr(Schema.String),
  subResults: Schema.NullOr(Schema.Array(SubResult)),
  seq: Seq
}
const failureFirst = { probeName: Schema.String, mode: ProbeMode, firstFailedAt: Instant, seq: Seq }
const sustained = {
  failedAt: Instant,
  sustainedDurationSecs: U64,
  failingProbes: Schema.Array(Schema.String),
  policyApplied: OnHealthFailure,
  seq: Seq
}
const rolledBack = { revertedToClosure: Closure, exitCode: I32, completedAt: Instant, seq: Seq }
const converged = { convergedAt: Instant, currentClosure: Closure, seq: Seq }

/**
 * The agent received a dispatch checked against the signed manifest. `targetClosure` and
 * `soakDueAt` are for the runtime's bootstrap of the record; `step` ignores them.
 *
 * @since 0.1.0
 */
export const LocalActivate = Schema.TaggedStruct("LocalActivate", {
  ...activate,
  targetClosure: Closure,
  soakDueAt: Instant
})
/** @since 0.1.0 */
export const LocalActivationStarted = Schema.TaggedStruct("LocalActivationStarted", started)
/** @since 0.1.0 */
export const LocalActivationCompleted = Schema.TaggedStruct("LocalActivationCompleted", completed)
/** @since 0.1.0 */
export const LocalActivationDeferred = Schema.TaggedStruct("LocalActivationDeferred", deferred)
/** @since 0.1.0 */
export const LocalActivationFailed = Schema.TaggedStruct("LocalActivationFailed", failed)
/** @since 0.1.0 */
export const LocalProbeTopologyDeclared = Schema.TaggedStruct("LocalProbeTopologyDeclared", topology)
/** @since 0.1.0 */
export const LocalProbeObservedFirst = Schema.TaggedStruct("LocalProbeObservedFirst", observedFirst)
/** @since 0.1.0 */
export const LocalProbeResult = Schema.TaggedStruct("LocalProbeResult", result)
/** @since 0.1.0 */
export const LocalProbeFailureFirst = Schema.TaggedStruct("LocalProbeFailureFirst", failureFirst)
/** @since 0.1.0 */
export const LocalSustainedFailureCrossed = Schema.TaggedStruct("LocalSustainedFailureCrossed", sustained)
/** @since 0.1.0 */
export const LocalRollbackCompleted = Schema.TaggedStruct("LocalRollbackCompleted", rolledBack)
/** @since 0.1.0 */
export const LocalConvergedReached = Schema.TaggedStruct("LocalConvergedReached", converged)

/**
 * The control plane's mirror of `LocalActivate`: no target, no soak deadline.
 *
 * @since 0.1.0
 */
export const RemoteDispatchAck = Schema.TaggedStruct("RemoteDispatchAck", activate)
/** @since 0.1.0 */
export const RemoteActivationStarted = Schema.TaggedStruct("RemoteActivationStarted", started)
/** @since 0.1.0 */
export const RemoteActivationDeferred = Schema.TaggedStruct("RemoteActivationDeferred", deferred)
/** @since 0.1.0 */
export const RemoteActivationCompleted = Schema.TaggedStruct("RemoteActivationCompleted", completed)
/** @since 0.1.0 */
export const RemoteActivationFailed = Schema.TaggedStruct("RemoteActivationFailed", failed)
/** @since 0.1.0 */
export const RemoteProbeTopologyDeclared = Schema.TaggedStruct("RemoteProbeTopologyDeclared", topology)
/** @since 0.1.0 */
export const RemoteProbeObservedFirst = Schema.TaggedStruct("RemoteProbeObservedFirst", observedFirst)
/** @since 0.1.0 */
export const RemoteProbeResult = Schema.TaggedStruct("RemoteProbeResult", result)
/** @since 0.1.0 */
export const RemoteProbeFailureFirst = Schema.TaggedStruct("RemoteProbeFailureFirst", failureFirst)
/** @since 0.1.0 */
export const RemoteFailed = Schema.TaggedStruct("RemoteFailed", sustained)
/**
 * Mirror of `LocalRollbackCompleted`; the upstream spelling is "Complete".
 *
 * @since 0.1.0
 */
export const RemoteRollbackComplete = Schema.TaggedStruct("RemoteRollbackComplete", rolledBack)
/** @since 0.1.0 */
export const RemoteConverged = Schema.TaggedStruct("RemoteConverged", converged)

/** @since 0.1.0 */
export const LocalEvent = Schema.Union(
  LocalActivate,
  LocalActivationStarted,
  LocalActivationCompleted,
  LocalActivationDeferred,
  LocalActivationFailed,
  LocalProbeTopologyDeclared,
  LocalProbeObservedFirst,
  LocalProbeResult,
  LocalProbeFailureFirst,
  LocalSustainedFailureCrossed,
  LocalRollbackCompleted,
  LocalConvergedReached
).annotations({ identifier: "LocalEvent" })
/** @since 0.1.0 */
export type LocalEvent = typeof LocalEvent.Type

/** @since 0.1.0 */
export const RemoteEvent = Schema.Union(
  RemoteDispatchAck,
  RemoteActivationStarted,
  RemoteActivationDeferred,
  RemoteActivationCompleted,
  RemoteActivationFailed,
  RemoteProbeTopologyDeclared,
  RemoteProbeObservedFirst,
  RemoteProbeResult,
  RemoteProbeFailureFirst,
  RemoteFailed,
  RemoteRollbackComplete,
  RemoteConverged
).annotations({ identifier: "RemoteEvent" })
/** @since 0.1.0 */
export type RemoteEvent = typeof RemoteEvent.Type

/** @since 0.1.0 */
export const Event = Schema.Union(LocalEvent, RemoteEvent).annotations({ identifier: "Event" })
/** @since 0.1.0 */
export type Event = typeof Event.Type

/** @since 0.1.0 */
export type EventName = Event["_tag"]

/**
 * All 24 event names, Local first, in upstream declaration order.
 *
 * @since 0.1.0
 */
export const EventNames: ReadonlyArray<EventName> = [
  "LocalActivate",
  "LocalActivationStarted",
  "LocalActivationCompleted",
  "LocalActivationDeferred",
  "LocalActivationFailed",
  "LocalProbeTopologyDeclared",
  "LocalProbeObservedFirst",
  "LocalProbeResult",
  "LocalProbeFailureFirst",
  "LocalSustainedFailureCrossed",
  "LocalRollbackCompleted",
  "LocalConvergedReached",
  "RemoteDispatchAck",
  "RemoteActivationStarted",
  "RemoteActivationDeferred",
  "RemoteActivationCompleted",
  "RemoteActivationFailed",
  "RemoteProbeTopologyDeclared",
  "RemoteProbeObservedFirst",
  "RemoteProbeResult",
  "RemoteProbeFailureFirst",
  "RemoteFailed",
  "RemoteRollbackComplete",
  "RemoteConverged"
]

/**
 * The event's variant name, as `IllegalForState.event` reports it.
 *
 * @since 0.1.0
 */
export const eventName = (event: Event): string => event._tag
