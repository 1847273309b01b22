/**
 * `POST /v1/agent/events`: the twelve outbound agent events and their envelope.
 *
 * On the wire an event is internally tagged by `kind` with camelCase fields; in memory it
 * is tagged by `_tag`, which makes the decoded value the reducer's outbound payload as is.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { I32, U64 } from "./Numbers.js"
import { omittedWhenNull } from "./Optional.js"
import { OnHealthFailure, ProbeMode, ProbeStatus, ProbeSubResult, ProbeTopologyEntry } from "./Probe.js"
import { Timestamp } from "./Timestamp.js"

const variant = <const Kind extends string, Fields extends Schema.Struct.Fields>(kind: Kind, fields: Fields) =>
  Schema.Struct({
    _tag: Schema.propertySignature(Schema.Literal(kind)).pipe(Schema.fromKey("kind")),
    ...fields,
    seq: U64
  }).annotations({ identifier: kind })

/**
 * Every variant, by name.
 *
 * @since 0.1.0
 */
export const AgentEventVariants = {
  DispatchAck: variant("DispatchAck", {
    currentClosureAtDispatch: Schema.String,
    receivedAt: Timestamp
  }),
  ActivationStarted: variant("ActivationStarted", {
    startedAt: Timestamp,
    switchMethod: Schema.String
  }),
  ActivationCompleted: variant("ActivationCompleted", {
    observedCurrentClosure: Schema.String,
    exitCode: I32,
    completedAt: Timestamp
  }),
  ActivationFailed: variant("ActivationFailed", {
    exitCode: I32,
    stderrTail: Schema.String,
    failedAt: Timestamp
  }),
  ActivationDeferred: variant("ActivationDeferred", {
    component: Schema.String,
    deferredAt: Timestamp
  }),
  ProbeTopologyDeclared: variant("ProbeTopologyDeclared", {
    probes: Schema.Array(ProbeTopologyEntry),
    declaredAt: Timestamp
  }),
  ProbeObservedFirst: variant("ProbeObservedFirst", {
    probeName: Schema.String,
    mode: ProbeMode,
    observedAt: Timestamp
  }),
  ProbeResult: variant("ProbeResult", {
    probeName: Schema.String,
    mode: ProbeMode,
    status: ProbeStatus,
    observedAt: Timestamp,
    failureReason: omittedWhenNull(Schema.String),
    subResults: omittedWhenNull(Schema.Array(ProbeSubResult))
  }),
  ProbeFailureFirst: variant("ProbeFailureFirst", {
    probeName: Schema.String,
    mode: ProbeMode,
    firstFailedAt: Timestamp
  }),
  Failed: variant("Failed", {
    failedAt: Timestamp,
    sustainedDurationSecs: U64,
    failingProbes: Schema.Array(Schema.String),
    policyApplied: OnHealthFailure
  }),
  RollbackComplete: variant("RollbackComplete", {
    revertedToClosure: Schema.String,
    exitCode: I32,
    completedAt: Timestamp
  }),
  Converged: variant("Converged", {
    convergedAt: Timestamp,
    currentClosure: Schema.String
  })
} as const

/**
 * One agent event: `{"kind": "DispatchAck", ..., "seq": 1}` on the wire.
 *
 * @since 0.1.0
 */
export const AgentEvent = Schema.Union(
  AgentEventVariants.DispatchAck,
  AgentEventVariants.ActivationStarted,
  AgentEventVariants.ActivationCompleted,
  AgentEventVariants.ActivationFailed,
  AgentEventVariants.ActivationDeferred,
  AgentEventVariants.ProbeTopologyDeclared,
  AgentEventVariants.ProbeObservedFirst,
  AgentEventVariants.ProbeResult,
  AgentEventVariants.ProbeFailureFirst,
  AgentEventVariants.Failed,
  AgentEventVariants.RollbackComplete,
  AgentEventVariants.Converged
).annotations({ identifier: "AgentEvent" })

/** @since 0.1.0 */
export type AgentEvent = typeof AgentEvent.Type

/** @since 0.1.0 */
export type AgentEventKind = AgentEvent["_tag"]

/** @since 0.1.0 */
export const AgentEventKinds: ReadonlyArray<AgentEventKind> = Object.keys(AgentEventVariants) as Array<AgentEventKind>

/**
 * The body of `POST /v1/agent/events`. `rolloutId` is camelCase here (unlike heartbeat and
 * dispatch); `signature` is reserved and omitted in v0.2.
 *
 * @since 0.1.0
 */
export const AgentEventEnvelope = Schema.Struct({
  hostname: Schema.String,
  rolloutId: Schema.String,
  event: AgentEvent,
  signature: omittedWhenNull(Schema.String)
}).annotations({ identifier: "AgentEventEnvelope" })

/** @since 0.1.0 */
export type AgentEventEnvelope = typeof AgentEventEnvelope.Type
