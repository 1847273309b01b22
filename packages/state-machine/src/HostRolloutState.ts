/**
 * One host's record of one rollout: what the reducer reads and returns.
 *
 * @since 0.1.0
 */
import { Instant, OnHealthFailure, U64 } from "@nixfleet/proto"
import * as Schema from "effect/Schema"
import { HostState } from "./HostState.js"
import { ProbeRecord } from "./ProbeRecord.js"

const NullableInstant = Schema.NullOr(Instant)

/**
 * The per-(rollout, host) record. Optional fields are `null` when absent.
 * `currentClosureAtDispatch` is the rollback target; `dispatchedAt` is the only timestamp
 * taken from the control plane's clock.
 *
 * @since 0.1.0
 */
export const HostRolloutState = Schema.Struct({
  rolloutId: Schema.String,
  hostname: Schema.String,
  channel: Schema.String,
  state: HostState,
  targetClosure: Schema.String,
  currentClosureAtDispatch: Schema.NullOr(Schema.String),
  currentClosure: Schema.NullOr(Schema.String),
  revertedTo: Schema.NullOr(Schema.String),
  dispatchedAt: Instant,
  dispatchAckedAt: NullableInstant,
  activationStartedAt: NullableInstant,
  activationCompletedAt: NullableInstant,
  activationFailedAt: NullableInstant,
  probeObservedFirstAt: NullableInstant,
  probeFailureFirstAt: NullableInstant,
  soakDueAt: NullableInstant,
  convergedAt: NullableInstant,
  failedAt: NullableInstant,
  policyApplied: Schema.NullOr(OnHealthFailure),
  revertedAt: NullableInstant,
  probes: Schema.ReadonlyMapFromSelf({ key: Schema.String, value: ProbeRecord }),
  lastEventSeq: U64
}).annotations({ identifier: "HostRolloutState" })

/** @since 0.1.0 */
export type HostRolloutState = typeof HostRolloutState.Type

/**
 * The only legitimate way to create a record: state Pending, seq 0, no probes, every
 * other optional field `null`.
 *
 * @since 0.1.0
 */
export const newPending = (args: {
  readonly rolloutId: string
  readonly hostname: string
  readonly channel: string
  readonly targetClosure: string
  readonly dispatchedAt: Date
  readonly soakDueAt: Date | null
}): HostRolloutState => ({
  rolloutId: args.rolloutId,
  hostname: args.hostname,
  channel: args.channel,
  state: "Pending",
  targetClosure: args.targetClosure,
  currentClosureAtDispatch: null,
  currentClosure: null,
  revertedTo: null,
  dispatchedAt: args.dispatchedAt,
  dispatchAckedAt: null,
  activationStartedAt: null,
  activationCompletedAt: null,
  activationFailedAt: null,
  probeObservedFirstAt: null,
  probeFailureFirstAt: null,
  soakDueAt: args.soakDueAt,
  convergedAt: null,
  failedAt: null,
  policyApplied: null,
  revertedAt: null,
  probes: new Map(),
  lastEventSeq: 0
})
