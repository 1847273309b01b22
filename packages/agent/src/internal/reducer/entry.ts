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
}

/** @internal */
export const entryOf = (record: HostRolloutState): RolloutEntry => ({ record, failingSince: new Map() })
