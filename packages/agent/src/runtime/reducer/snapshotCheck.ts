import { ClosureName, type HostRolloutSnapshot, rolloutChannel, RolloutId } from "@nixfleet/proto"
import * as Schema from "effect/Schema"

/**
 * The highest `lastEventSeq` a snapshot may carry. An honest control plane only reports
 * seqs this agent sent; the bound keeps a hostile one from pushing the counter to 2^53,
 * where every later event of the rollout would be lost.
 *
 * @internal
 */
export const MAX_SNAPSHOT_SEQ = 2 ** 31 - 1

/**
 * What the reducer knows that a snapshot must agree with.
 *
 * @internal
 */
export interface SnapshotContext {
  readonly machineId: string
  /** The channels of the verified fleet; null while no fleet has been verified yet. */
  readonly knownChannels: ReadonlySet<string> | null
  /** The closure the signed manifest named for this rollout, when this agent accepted it. */
  readonly verifiedTarget: string | null
  /** The rollout finished here and was evicted: a snapshot must not bring it back. */
  readonly finished: boolean
}

const isClosureName = Schema.is(ClosureName)
const isRolloutId = Schema.is(RolloutId)

const showClosure = (value: string) => JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)

/**
 * Why a snapshot must not be merged, or null when it may. A snapshot is the control
 * plane's bookkeeping, checked as strictly as a dispatch: it never names a closure that
 * is not a store basename, nor a target other than the one the signed manifest gave.
 *
 * @internal
 */
export const snapshotRefusal = (snapshot: HostRolloutSnapshot, context: SnapshotContext): string | null => {
  if (snapshot.hostname !== context.machineId) return `it is for host ${JSON.stringify(snapshot.hostname)}`
  if (!isRolloutId(snapshot.rolloutId)) return "its rollout id is not well formed"
  if (snapshot.channel !== rolloutChannel(snapshot.rolloutId)) {
    return `its channel ${JSON.stringify(snapshot.channel)} is not the rollout id's`
  }
  if (context.knownChannels !== null && !context.knownChannels.has(snapshot.channel)) {
    return `channel ${JSON.stringify(snapshot.channel)} is not in the verified fleet`
  }
  if (!isClosureName(snapshot.targetClosure)) {
    return `target ${showClosure(snapshot.targetClosure)} is not a Nix store basename`
  }
  const dispatchClosure = snapshot.currentClosureAtDispatch
  if (dispatchClosure !== null && dispatchClosure !== "" && !isClosureName(dispatchClosure)) {
    return `currentClosureAtDispatch ${showClosure(dispatchClosure)} is not a Nix store basename`
  }
  if (snapshot.currentClosure !== null && !isClosureName(snapshot.currentClosure)) {
    return `currentClosure ${showClosure(snapshot.currentClosure)} is not a Nix store basename`
  }
  if (snapshot.lastEventSeq > MAX_SNAPSHOT_SEQ) return `lastEventSeq ${snapshot.lastEventSeq} is out of range`
  if (context.verifiedTarget !== null && snapshot.targetClosure !== context.verifiedTarget) {
    return `target ${showClosure(snapshot.targetClosure)} is not the signed manifest's ${context.verifiedTarget}`
  }
  if (context.finished) return "the rollout already finished here"
  return null
}
