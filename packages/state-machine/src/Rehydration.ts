/**
 * Re-priming workers after the control plane hands the agent a snapshot of a record.
 *
 * @since 0.1.0
 */
import type { Command } from "./Command.js"
import type { HostRolloutState } from "./HostRolloutState.js"

/**
 * Nothing for a Pending record (nothing is in flight); for any other state, reset the
 * probe cache so tickers of an earlier process, tagged with a stale rollout, are dropped
 * and the declarations are re-read under the restored rollout.
 *
 * @since 0.1.0
 */
export const rehydrationEffects = (record: HostRolloutState): ReadonlyArray<Command> =>
  record.state === "Pending" ? [] : [{ _tag: "LocalResetProbeCache", rolloutId: record.rolloutId }]
