/**
 * `GET /v1/agent/dispatch?wait=N`: the body of a 200 answer.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { Timestamp } from "./Timestamp.js"

/**
 * One queued dispatch, snake_case on the wire with every field required. `hostname` must
 * equal the agent's machine id, and `target_closure` is advisory: the agent only acts on
 * it when the signed rollout manifest names the same closure for this host.
 * `soak_due_at` is the deadline before which convergence must not be declared;
 * `enqueued_at` is when the control plane queued the dispatch.
 *
 * @since 0.1.0
 */
export const DispatchResponse = Schema.Struct({
  hostname: Schema.String,
  rolloutId: Schema.propertySignature(Schema.String).pipe(Schema.fromKey("rollout_id")),
  targetClosure: Schema.propertySignature(Schema.String).pipe(Schema.fromKey("target_closure")),
  soakDueAt: Schema.propertySignature(Timestamp).pipe(Schema.fromKey("soak_due_at")),
  enqueuedAt: Schema.propertySignature(Timestamp).pipe(Schema.fromKey("enqueued_at"))
}).annotations({ identifier: "DispatchResponse" })
/** @since 0.1.0 */
export type DispatchResponse = typeof DispatchResponse.Type
