/**
 * Probe vocabulary shared by events, the reducer and the health-check runners.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { omittedWhenNull, withDefault } from "./Optional.js"

/**
 * `"pass"` or `"fail"`; there is no unknown status.
 *
 * @since 0.1.0
 */
export const ProbeStatus = Schema.Literal("pass", "fail").annotations({ identifier: "ProbeStatus" })
/** @since 0.1.0 */
export type ProbeStatus = typeof ProbeStatus.Type

/**
 * Gate participation of a probe: only `enforce` gates. Absent means `enforce`, so that
 * old records keep gating.
 *
 * @since 0.1.0
 */
export const ProbeMode = Schema.Literal("enforce", "observe", "disabled").annotations({ identifier: "ProbeMode" })
/** @since 0.1.0 */
export type ProbeMode = typeof ProbeMode.Type

/**
 * What the agent does with a host whose rollout failed.
 *
 * @since 0.1.0
 */
export const OnHealthFailure = Schema.Literal("halt", "rollback-and-halt").annotations({
  identifier: "OnHealthFailure"
})
/** @since 0.1.0 */
export type OnHealthFailure = typeof OnHealthFailure.Type

/**
 * One declared probe, as sent in `ProbeTopologyDeclared`.
 *
 * @since 0.1.0
 */
export const ProbeTopologyEntry = Schema.Struct({
  probeName: Schema.String,
  kind: Schema.String,
  mode: ProbeMode
}).annotations({ identifier: "ProbeTopologyEntry" })
/** @since 0.1.0 */
export type ProbeTopologyEntry = typeof ProbeTopologyEntry.Type

/**
 * One control × framework-article result of an evidence probe. `article` and
 * `overrideReason` are omitted on the wire when absent; an empty `overrideReason` means
 * an override with a blank reason.
 *
 * @since 0.1.0
 */
export const ProbeSubResult = Schema.Struct({
  controlId: Schema.String,
  status: ProbeStatus,
  framework: Schema.String,
  article: omittedWhenNull(Schema.String),
  effectiveMode: withDefault(ProbeMode, () => "enforce" as const),
  overrideReason: omittedWhenNull(Schema.String)
}).annotations({ identifier: "ProbeSubResult" })
/** @since 0.1.0 */
export type ProbeSubResult = typeof ProbeSubResult.Type
