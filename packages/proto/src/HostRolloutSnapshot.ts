/**
 * `HostRolloutSnapshot`: the control plane's view of one (host, rollout) record, carried in
 * `HeartbeatResponse.bootstrap_rollouts` so that a restarted agent can rehydrate its state.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { HostRolloutState } from "./HostRolloutState.js"
import { U64 } from "./Numbers.js"
import { omittedWhenNull } from "./Optional.js"
import { Timestamp } from "./Timestamp.js"

/**
 * camelCase, unlike the snake_case heartbeat envelope around it. The control plane
 * serialises it with `skip_serializing_none`, so every optional field is omitted when
 * absent. `rolloutId` is a plain string on the wire (the agent validates it with
 * `RolloutId` before using it in a path). `currentClosureAtDispatch` may be `""` when the
 * control plane synthesised the dispatch acknowledgement itself. Probe state is not
 * carried: the agent re-declares its topology after rehydration. The agent's next `seq`
 * for the rollout is `lastEventSeq + 1`.
 *
 * @since 0.1.0
 */
export const HostRolloutSnapshot = Schema.Struct({
  rolloutId: Schema.String,
  hostname: Schema.String,
  channel: Schema.String,
  state: HostRolloutState,
  targetClosure: Schema.String,
  currentClosureAtDispatch: omittedWhenNull(Schema.String),
  currentClosure: omittedWhenNull(Schema.String),
  dispatchedAt: Timestamp,
  dispatchAckedAt: omittedWhenNull(Timestamp),
  activationStartedAt: omittedWhenNull(Timestamp),
  activationCompletedAt: omittedWhenNull(Timestamp),
  soakDueAt: omittedWhenNull(Timestamp),
  lastEventSeq: U64
}).annotations({ identifier: "HostRolloutSnapshot" })
/** @since 0.1.0 */
export type HostRolloutSnapshot = typeof HostRolloutSnapshot.Type
