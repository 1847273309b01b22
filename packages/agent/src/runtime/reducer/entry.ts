import type { HostRolloutState } from "@nixfleet/state-machine"

/**
 * The reducer's memory of one rollout: the state machine's record plus what only the
 * agent tracks.
 *
 * @internal
 */
export interface RolloutEntry {
  readonly record: HostRolloutState
  /**
   * When each enforce-mode probe that is failing now started failing. A probe that passes
   * again leaves the map, so its next failure starts a fresh sustained-failure window.
   */
  readonly failingSince: ReadonlyMap<string, Date>
  /**
   * The closure the verified manifest named when this agent accepted the dispatch (or
   * recorded in the host ledger before switching): the only closure a switch may go to.
   * Null for a rollout known only from the control plane's snapshots.
   */
  readonly verifiedTarget: string | null
}

/** @internal */
export const entryOf = (record: HostRolloutState, verifiedTarget: string | null = null): RolloutEntry => ({
  record,
  failingSince: new Map(),
  verifiedTarget
})
