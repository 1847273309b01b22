/**
 * Probe outcomes and the bound on their failure reasons.
 *
 * @since 0.1.0
 */
import type { ProbeSubResult } from "@nixfleet/proto"
import * as ParseResult from "effect/ParseResult"
import type { ProbeOutcome } from "./ProbeOutcome.js"

/**
 * The most bytes (UTF-8) a failure reason may take. LOADBEARING: a reason travels in an
 * event through the outbox and the control plane's event log; unbounded stderr or error
 * text would inflate both.
 *
 * @since 0.1.0
 */
export const MAX_REASON_BYTES = 512

const SUFFIX = "...[truncated]"
const SUFFIX_BYTES = Buffer.byteLength(SUFFIX)

/**
 * `text` if it fits in {@link MAX_REASON_BYTES} bytes of UTF-8; otherwise its longest
 * prefix that ends on a character boundary and leaves room for `...[truncated]`, which is
 * appended (the result never exceeds the bound, suffix included).
 *
 * @since 0.1.0
 */
export const capReason = (text: string): string => {
  const bytes = Buffer.from(text, "utf8")
  if (bytes.length <= MAX_REASON_BYTES) return text
  let end = MAX_REASON_BYTES - SUFFIX_BYTES
  // Back up over continuation bytes (10xxxxxx) so that no character is split.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--
  return `${bytes.subarray(0, end).toString("utf8")}${SUFFIX}`
}

/**
 * A passing run.
 *
 * @since 0.1.0
 */
export const passed: ProbeOutcome = { status: "pass", failureReason: null, subResults: null }

/**
 * A failing run. Every failure goes through here, so every reason is capped.
 *
 * @since 0.1.0
 */
export const failed = (reason: string, subResults: ReadonlyArray<ProbeSubResult> | null = null): ProbeOutcome => ({
  status: "fail",
  failureReason: capReason(reason),
  subResults
})

/**
 * A decoding failure as one line, `path.to.key: what is wrong; …`, rather than the
 * schema's multi-line tree (a reason is a single line in logs and events).
 *
 * @since 0.1.0
 */
export const describeParseError = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => issue.path.length === 0 ? issue.message : `${issue.path.join(".")}: ${issue.message}`)
    .join("; ")
