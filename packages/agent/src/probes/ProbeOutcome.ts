/**
 * What one probe run found.
 *
 * @since 0.1.0
 */
import type { ProbeSubResult } from "@nixfleet/proto"

/**
 * A probe run's result. Every error is a failure with a reason (there is no "unknown"):
 * a probe that cannot run is failing.
 *
 * @since 0.1.0
 */
export interface ProbeOutcome {
  readonly status: "pass" | "fail"
  readonly failureReason: string | null
  readonly subResults: ReadonlyArray<ProbeSubResult> | null
}
