/**
 * Conversions between a record and the control plane's `HostRolloutSnapshot`, the view it
 * hands a restarted agent in `HeartbeatResponse.bootstrapRollouts`.
 *
 * @since 0.1.0
 */
import type { HostRolloutSnapshot } from "@nixfleet/proto"
import { type HostRolloutState, newPending } from "./HostRolloutState.js"

/**
 * The snapshot of a record: its canonical fields. What the snapshot does not carry (probes,
 * first-observation and failure stamps, convergence, policy applied, revert) is dropped:
 * the agent re-declares its probes after rehydration and keeps its own copy of the rest.
 *
 * @since 0.1.0
 */
export const recordToSnapshot = (record: HostRolloutState): HostRolloutSnapshot => ({
  rolloutId: record.rolloutId,
  hostname: record.hostname,
  channel: record.channel,
  state: record.state,
  targetClosure: record.targetClosure,
  currentClosureAtDispatch: record.currentClosureAtDispatch,
  currentClosure: record.currentClosure,
  dispatchedAt: record.dispatchedAt,
  dispatchAckedAt: record.dispatchAckedAt,
  activationStartedAt: record.activationStartedAt,
  activationCompletedAt: record.activationCompletedAt,
  soakDueAt: record.soakDueAt,
  lastEventSeq: record.lastEventSeq
})

/**
 * A record from a snapshot: the snapshot's canonical fields, including its state and
 * `lastEventSeq`, over `base` (by default a fresh record of the snapshot's rollout), whose
 * other fields are kept. The control plane writes `currentClosureAtDispatch` as `""` when
 * it synthesised the acknowledgement itself: that is an unknown rollback target, `null`.
 *
 * @since 0.1.0
 */
export const recordFromSnapshot = (snapshot: HostRolloutSnapshot, base?: HostRolloutState): HostRolloutState => ({
  ...(base ?? newPending(snapshot)),
  rolloutId: snapshot.rolloutId,
  hostname: snapshot.hostname,
  channel: snapshot.channel,
  state: snapshot.state,
  targetClosure: snapshot.targetClosure,
  currentClosureAtDispatch: snapshot.currentClosureAtDispatch === "" ? null : snapshot.currentClosureAtDispatch,
  currentClosure: snapshot.currentClosure,
  dispatchedAt: snapshot.dispatchedAt,
  dispatchAckedAt: snapshot.dispatchAckedAt,
  activationStartedAt: snapshot.activationStartedAt,
  activationCompletedAt: snapshot.activationCompletedAt,
  soakDueAt: snapshot.soakDueAt,
  lastEventSeq: snapshot.lastEventSeq
})
