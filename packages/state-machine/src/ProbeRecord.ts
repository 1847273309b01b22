/**
 * The reducer's memory of one probe within a rollout.
 *
 * @since 0.1.0
 */
import { Instant, ProbeMode, ProbeStatus } from "@nixfleet/proto"
import * as Schema from "effect/Schema"

/**
 * Latest status and mode of a probe; `lastPassAt` survives failures, `failureReason` is
 * cleared by a pass.
 *
 * @since 0.1.0
 */
export const ProbeRecord = Schema.Struct({
  status: ProbeStatus,
  mode: ProbeMode,
  lastObservedAt: Instant,
  lastPassAt: Schema.NullOr(Instant),
  failureReason: Schema.NullOr(Schema.String)
}).annotations({ identifier: "ProbeRecord" })

/** @since 0.1.0 */
export type ProbeRecord = typeof ProbeRecord.Type
