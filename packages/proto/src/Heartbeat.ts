/**
 * `POST /v1/agent/heartbeat`: request and response bodies.
 *
 * Both are snake_case on the wire (no serde rename); in memory they are camelCase like
 * every other value of this package.
 *
 * @since 0.1.0
 */
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { HostRolloutSnapshot } from "./HostRolloutSnapshot.js"
import { nullWhenAbsent, omittedWhenNull } from "./Optional.js"
import { Timestamp } from "./Timestamp.js"

/**
 * The heartbeat body. `rollout_id` and `current_closure` are omitted when absent; the
 * reference agent never sends `rollout_id`, so the control plane treats every heartbeat as
 * a boot-recovery heartbeat and answers with `bootstrap_rollouts`. `current_closure` is
 * the basename of `/run/current-system`, omitted when the link is missing.
 *
 * @since 0.1.0
 */
export const HeartbeatRequest = Schema.Struct({
  hostname: Schema.String,
  rolloutId: omittedWhenNull(Schema.String).pipe(Schema.fromKey("rollout_id")),
  currentClosure: omittedWhenNull(Schema.String).pipe(Schema.fromKey("current_closure")),
  at: Timestamp
}).annotations({ identifier: "HeartbeatRequest" })
/** @since 0.1.0 */
export type HeartbeatRequest = typeof HeartbeatRequest.Type

/**
 * `bootstrap_rollouts`: `Vec` with `skip_serializing_if = "Vec::is_empty"` upstream. An
 * absent key or `null` decodes to `[]`, and `[]` is omitted on encode.
 */
const bootstrapRollouts = Schema.optionalToRequired(
  Schema.NullOr(Schema.Array(HostRolloutSnapshot)),
  Schema.Array(Schema.typeSchema(HostRolloutSnapshot)),
  {
    decode: (value) => Option.getOrNull(value) ?? [],
    encode: Option.liftPredicate((snapshots) => snapshots.length > 0)
  }
).pipe(Schema.fromKey("bootstrap_rollouts"))

/**
 * The heartbeat answer. `received_at` is always written by the control plane (plain serde
 * `Option`, so `null` when unset); an absent key is read as `null` too, since test doubles
 * answer `{}`. `bootstrap_rollouts` holds one snapshot per active record of this host,
 * ordered by rollout id, and is omitted when there is none.
 *
 * @since 0.1.0
 */
export const HeartbeatResponse = Schema.Struct({
  receivedAt: nullWhenAbsent(Timestamp).pipe(Schema.fromKey("received_at")),
  bootstrapRollouts
}).annotations({ identifier: "HeartbeatResponse" })
/** @since 0.1.0 */
export type HeartbeatResponse = typeof HeartbeatResponse.Type
