/**
 * The transition table as data (spec/state-machine.md §3.1): the 28 (state, event) pairs
 * that `step` accepts and the state each leads to. Property tests and planners read it
 * instead of re-typing the spec; a test checks it against `step` over all 7 × 24 pairs.
 *
 * @since 0.1.0
 */
import type { EventName } from "./Event.js"
import type { HostState } from "./HostState.js"

/**
 * One legal pair and where it leads. A Converged pair leads to Converged only when the
 * convergence gate passes; otherwise `step` answers `Invariant` and the record stays.
 *
 * @since 0.1.0
 */
export interface LegalTransition {
  readonly from: HostState
  readonly event: EventName
  readonly to: HostState
}

const pairs = (from: HostState, to: HostState, events: ReadonlyArray<EventName>): Array<LegalTransition> =>
  events.map((event) => ({ from, event, to }))

/**
 * The 28 legal pairs, Local before Remote, in the order of the spec's table. Converged and
 * Reverted have none: they absorb every event.
 *
 * @since 0.1.0
 */
export const LegalTransitions: ReadonlyArray<LegalTransition> = [
  ...pairs("Pending", "Activating", ["LocalActivate", "RemoteDispatchAck"]),
  ...pairs("Activating", "Activating", ["LocalActivationStarted", "RemoteActivationStarted"]),
  ...pairs("Activating", "Soaking", ["LocalActivationCompleted", "RemoteActivationCompleted"]),
  ...pairs("Activating", "Deferred", ["LocalActivationDeferred", "RemoteActivationDeferred"]),
  ...pairs("Activating", "Failed", ["LocalActivationFailed", "RemoteActivationFailed"]),
  ...pairs("Deferred", "Soaking", ["LocalActivationCompleted", "RemoteActivationCompleted"]),
  ...pairs("Deferred", "Failed", ["LocalActivationFailed", "RemoteActivationFailed"]),
  ...pairs("Soaking", "Soaking", [
    "LocalProbeTopologyDeclared",
    "RemoteProbeTopologyDeclared",
    "LocalProbeObservedFirst",
    "RemoteProbeObservedFirst",
    "LocalProbeResult",
    "RemoteProbeResult",
    "LocalProbeFailureFirst",
    "RemoteProbeFailureFirst"
  ]),
  ...pairs("Soaking", "Failed", ["LocalSustainedFailureCrossed", "RemoteFailed"]),
  ...pairs("Soaking", "Converged", ["LocalConvergedReached", "RemoteConverged"]),
  ...pairs("Failed", "Reverted", ["LocalRollbackCompleted", "RemoteRollbackComplete"])
]

const key = (state: string, event: string): string => `${state} ${event}`

const targets: ReadonlyMap<string, HostState> = new Map(
  LegalTransitions.map((transition) => [key(transition.from, transition.event), transition.to])
)

/**
 * Whether `step` accepts this event in this state (given a seq above the record's):
 * `false` means `IllegalForState`. Unknown states and names are illegal.
 *
 * @since 0.1.0
 */
export const isLegal = (state: HostState, event: EventName): boolean => targets.has(key(state, event))

/**
 * The state a legal pair leads to (Converged subject to the gate), or `null` for an
 * illegal pair.
 *
 * @since 0.1.0
 */
export const transitionTarget = (state: HostState, event: EventName): HostState | null =>
  targets.get(key(state, event)) ?? null

/**
 * The events a state accepts, in table order; empty for Converged and Reverted.
 *
 * @since 0.1.0
 */
export const legalEvents = (state: HostState): ReadonlyArray<EventName> =>
  LegalTransitions.filter((transition) => transition.from === state).map((transition) => transition.event)
