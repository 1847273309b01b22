import type { OnHealthFailure } from "@nixfleet/proto"
import type { LocalEvent } from "@nixfleet/state-machine"
import type { RolloutEntry } from "./entry.js"

/**
 * The event a tick synthesises for one rollout, with seq 0 (the reducer assigns it).
 *
 * @internal
 */
export interface SynthesisedEvent {
  readonly rolloutId: string
  readonly event: LocalEvent
}

const enforceAllPass = (entry: RolloutEntry): boolean => {
  for (const probe of entry.record.probes.values()) {
    if (probe.mode === "enforce" && probe.status !== "pass") return false
  }
  return true
}

/**
 * The fail gate: a Soaking rollout one of whose enforce-mode probes is failing now and
 * has been failing without interruption for at least `thresholdSecs` goes to Failed with
 * the channel's `onHealthFailure`. Reported: every enforce-mode probe failing now, and the
 * longest window.
 *
 * @internal
 */
export const failGate = (
  rolloutId: string,
  entry: RolloutEntry,
  now: Date,
  thresholdSecs: number,
  onHealthFailure: OnHealthFailure
): SynthesisedEvent | undefined => {
  if (entry.record.state !== "Soaking" || entry.failingSince.size === 0) return undefined
  let earliest = Infinity
  for (const since of entry.failingSince.values()) earliest = Math.min(earliest, since.getTime())
  const elapsedMs = now.getTime() - earliest
  if (elapsedMs < thresholdSecs * 1000) return undefined
  return {
    rolloutId,
    event: {
      _tag: "LocalSustainedFailureCrossed",
      failedAt: now,
      sustainedDurationSecs: Math.floor(elapsedMs / 1000),
      failingProbes: [...entry.failingSince.keys()].sort(),
      policyApplied: onHealthFailure,
      seq: 0
    }
  }
}

/**
 * The pass gate: a Soaking rollout whose soak deadline has passed, whose current closure
 * is the target and whose enforce-mode probes all pass (vacuously with none) converges.
 *
 * @internal
 */
export const passGate = (rolloutId: string, entry: RolloutEntry, now: Date): SynthesisedEvent | undefined => {
  const record = entry.record
  if (record.state !== "Soaking" || record.soakDueAt === null) return undefined
  if (now.getTime() < record.soakDueAt.getTime()) return undefined
  if (record.currentClosure === null || record.currentClosure !== record.targetClosure) return undefined
  if (!enforceAllPass(entry)) return undefined
  return {
    rolloutId,
    event: { _tag: "LocalConvergedReached", convergedAt: now, currentClosure: record.currentClosure, seq: 0 }
  }
}
