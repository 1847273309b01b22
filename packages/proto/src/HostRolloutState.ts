/**
 * The seven host-rollout states, as the control plane writes them.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** @since 0.1.0 */
export const HostRolloutStates = [
  "Pending",
  "Activating",
  "Deferred",
  "Soaking",
  "Converged",
  "Failed",
  "Reverted"
] as const

/**
 * Case-sensitive; the v0.1 names (`Queued`, `Dispatched`, `ConfirmWindow`, `Healthy`,
 * `Soaked`) are refused like any other unknown literal.
 *
 * @since 0.1.0
 */
export const HostRolloutState = Schema.Literal(...HostRolloutStates).annotations({
  identifier: "HostRolloutState",
  message: (issue) => ({ message: `unknown host_rollout_state: ${JSON.stringify(issue.actual)}`, override: true })
})
/** @since 0.1.0 */
export type HostRolloutState = typeof HostRolloutState.Type
