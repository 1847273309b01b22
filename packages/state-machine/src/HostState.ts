/**
 * The seven host-rollout states and the predicates the planner uses on them.
 *
 * @since 0.1.0
 */
import { HostRolloutState as HostStateSchema, HostRolloutStates } from "@nixfleet/proto"

/**
 * `Pending Activating Deferred Soaking Converged Failed Reverted`, the same literals as the
 * wire and the control plane's database.
 *
 * @since 0.1.0
 */
export const HostState = HostStateSchema

/** @since 0.1.0 */
export type HostState = typeof HostState.Type

/** @since 0.1.0 */
export const HostStates: ReadonlyArray<HostState> = HostRolloutStates

/**
 * Converged or Deferred: host edges and wave promotion may move on.
 *
 * @since 0.1.0
 */
export const isTerminalForOrdering = (state: HostState): boolean => state === "Converged" || state === "Deferred"

/**
 * Pending, Activating or Soaking: the host holds a disruption-budget slot (Deferred does not).
 *
 * @since 0.1.0
 */
export const isInFlight = (state: HostState): boolean =>
  state === "Pending" || state === "Activating" || state === "Soaking"

/** @since 0.1.0 */
export const isFailed = (state: HostState): boolean => state === "Failed" || state === "Reverted"

/**
 * States that accept no event at all: a new rollout gets a new record.
 *
 * @since 0.1.0
 */
export const isTerminal = (state: HostState): boolean => state === "Converged" || state === "Reverted"
