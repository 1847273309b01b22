/**
 * `evidence.json`: the compliance collector's output, read by the agent's evidence probe.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { JsonRecord } from "./JsonRecord.js"
import { U32 } from "./Numbers.js"
import { omittedWhenNull, withDefault } from "./Optional.js"
import { Timestamp } from "./Timestamp.js"

/**
 * Any JSON value.
 *
 * @since 0.1.0
 */
export type EvidenceDetails =
  | null
  | boolean
  | number
  | string
  | ReadonlyArray<EvidenceDetails>
  | { readonly [key: string]: EvidenceDetails }

const evidenceDetails = Schema.suspend((): Schema.Schema<EvidenceDetails> => EvidenceDetails)

/**
 * The free-form `details` of a control: any JSON value, kept as is (upstream it is a
 * `serde_json::Value`). Typed as JSON rather than `unknown` so that a decoded file can
 * always be encoded back; numbers must be finite, as in JSON. The gate never reads it.
 *
 * @since 0.1.0
 */
export const EvidenceDetails: Schema.Schema<EvidenceDetails> = Schema.Union(
  Schema.Null,
  Schema.Boolean,
  Schema.Finite,
  Schema.String,
  Schema.Array(evidenceDetails),
  JsonRecord(evidenceDetails)
).annotations({ identifier: "EvidenceDetails" })

/** Framework name → the articles of that framework a control covers. */
const FrameworkArticles = JsonRecord(Schema.Array(Schema.String))

/**
 * One evaluated control. `passed` is the control-level result the gate uses.
 * `frameworkArticles` maps a framework to the articles the control covers and defaults to
 * `{}` (legal: a control tied to no framework). `details` and `schema` (a hint such as
 * `"anssi-bp028/v1"` telling auditor tools how to read `details`) are omitted when absent;
 * a `null` `details` counts as absent, as with serde's `Option<Value>`.
 *
 * @since 0.1.0
 */
export const EvidenceControl = Schema.Struct({
  controlId: Schema.String,
  passed: Schema.Boolean,
  frameworkArticles: withDefault(FrameworkArticles, (): typeof FrameworkArticles.Type => ({})),
  details: omittedWhenNull(EvidenceDetails),
  schema: omittedWhenNull(Schema.String)
}).annotations({ identifier: "EvidenceControl" })
/** @since 0.1.0 */
export type EvidenceControl = typeof EvidenceControl.Type

/**
 * The whole evidence file. `schemaVersion` is any `u32` here: refusing versions other
 * than 1 is the evidence probe's job, with its own message. The file's signature is over
 * the canonical form of the raw file, so it must be checked on the file's text, not on a
 * re-encoding (which drops unknown fields).
 *
 * @since 0.1.0
 */
export const EvidenceFile = Schema.Struct({
  schemaVersion: U32,
  hostname: Schema.String,
  collectedAt: Timestamp,
  controls: Schema.Array(EvidenceControl)
}).annotations({ identifier: "EvidenceFile" })
/** @since 0.1.0 */
export type EvidenceFile = typeof EvidenceFile.Type
