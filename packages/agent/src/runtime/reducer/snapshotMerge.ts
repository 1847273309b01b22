import type { HostRolloutSnapshot } from "@nixfleet/proto"
import { type HostRolloutState, type HostState, recordFromSnapshot } from "@nixfleet/state-machine"
import { entryOf, type RolloutEntry } from "./entry.js"

/** Which states follow which: `later(a, b)` when b can be reached from a. */
const successors: Readonly<Record<HostState, ReadonlyArray<HostState>>> = {
  Pending: ["Activating"],
  Activating: ["Deferred", "Soaking", "Failed"],
  Deferred: ["Soaking", "Failed"],
  Soaking: ["Converged", "Failed"],
  Converged: [],
  Failed: ["Reverted"],
  Reverted: []
}

const reachable = (from: HostState, to: HostState): boolean => {
  const seen = new Set<HostState>()
  const stack = [...successors[from]]
  while (stack.length > 0) {
    const state = stack.pop()!
    if (state === to) return true
    if (seen.has(state)) continue
    seen.add(state)
    stack.push(...successors[state])
  }
  return false
}

/**
 * What this agent recorded itself about a rollout before switching (the host ledger):
 * it outranks the control plane's copy.
 *
 * @internal
 */
export interface OwnRecord {
  readonly target: string
  readonly previous: string | null
  readonly soakDueAt: Date | null
}

/** @internal */
export interface MergeResult {
  readonly entry: RolloutEntry
  /** The snapshot changed the rollout or its state (or the rollout is new here): re-prime probes. */
  readonly changed: boolean
  /** The snapshot's state was older than ours while our events were still queued: kept ours. */
  readonly keptLocalState: boolean
}

/**
 * Merges the control plane's record into the agent's (spec agent-runtime §2.6), with our
 * rules on top:
 * - canonical fields come from the snapshot, agent-local ones (probes, failure windows,
 *   failure and convergence stamps, policy applied, revert) stay ours when we know the
 *   rollout;
 * - `lastEventSeq` never moves backwards, so a new event never reuses a queued seq;
 * - while the outbox still holds events of this rollout, a snapshot that lags behind our
 *   state (our state is reachable from its state) does not move us back: the control
 *   plane has not seen those events yet;
 * - closures and the soak deadline are never the snapshot's when the agent has its own
 *   (`own`, from the host ledger): a snapshot is bookkeeping, not a source of closures.
 *
 * @internal
 */
export const mergeSnapshot = (
  existing: RolloutEntry | undefined,
  snapshot: HostRolloutSnapshot,
  eventsQueued: boolean,
  own: OwnRecord | null = null
): MergeResult => {
  const local = existing?.record
  const keptLocalState = local !== undefined && eventsQueued && reachable(snapshot.state, local.state)
  if (local !== undefined && keptLocalState) {
    const record: HostRolloutState = { ...local, lastEventSeq: Math.max(local.lastEventSeq, snapshot.lastEventSeq) }
    return { entry: { ...existing!, record }, changed: false, keptLocalState }
  }
  const record: HostRolloutState = {
    ...recordFromSnapshot(snapshot, local),
    lastEventSeq: Math.max(local?.lastEventSeq ?? 0, snapshot.lastEventSeq),
    ...(own === null ? {} : {
      targetClosure: own.target,
      currentClosureAtDispatch: own.previous,
      soakDueAt: own.soakDueAt ?? snapshot.soakDueAt
    })
  }
  const changed = local === undefined || local.state !== record.state || local.targetClosure !== record.targetClosure
  const verifiedTarget = existing?.verifiedTarget ?? own?.target ?? null
  return {
    entry: existing === undefined ? entryOf(record, verifiedTarget) : { ...existing, record, verifiedTarget },
    changed,
    keptLocalState: false
  }
}
