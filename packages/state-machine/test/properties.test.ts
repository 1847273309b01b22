/**
 * Properties of `step` over the kit's records, events and whole rollouts.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  type HostRolloutState,
  isLegal,
  isTerminal,
  remoteMirror,
  step,
  transitionTarget
} from "@nixfleet/state-machine"
import * as Arbitraries from "@nixfleet/state-machine/testing"
import { Either, FastCheck as fc } from "effect"
import { deepCopy } from "./helpers.js"

const now = Arbitraries.epoch

/** Every record a rollout went through, checking on the way that `step` never mutates its inputs. */
const visited = (run: Arbitraries.Rollout): ReadonlyArray<HostRolloutState> => {
  const records = [run.record]
  let current = run.record
  for (const event of run.events) {
    const before = deepCopy(current)
    const eventBefore = deepCopy(event)
    const result = step(current, event, Arbitraries.eventTime(event), run.policy)
    expect(current).toStrictEqual(before)
    expect(event).toStrictEqual(eventBefore)
    if (Either.isRight(result)) {
      expect(result.right.state.probes).not.toBe(current.probes)
      current = result.right.state
      records.push(current)
    }
  }
  return records
}

describe("properties", () => {
  it.prop(
    "random events from any state never throw, and never mutate the record or the event",
    [Arbitraries.record(), fc.array(Arbitraries.event(), { maxLength: 30 }), Arbitraries.policy],
    ([start, events, policy]) => {
      let current = start
      for (const event of events) {
        const before = deepCopy(current)
        const result = step(current, event, now, policy)
        expect(Either.isEither(result)).toBe(true)
        expect(current).toStrictEqual(before)
        if (Either.isRight(result)) current = result.right.state
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "along a rollout, an event is refused for its seq first, then for its pair, then by the gate",
    [Arbitraries.rollout()],
    ([run]) => {
      for (const { before, event, result } of Arbitraries.replay(run)) {
        if (event.seq <= before.lastEventSeq) {
          expect(Either.isLeft(result) && result.left._tag).toBe("SeqRegression")
        } else if (!isLegal(before.state, event._tag)) {
          expect(Either.isLeft(result) && result.left._tag).toBe("IllegalForState")
        } else if (Either.isLeft(result)) {
          expect(result.left._tag).toBe("Invariant")
          expect(transitionTarget(before.state, event._tag)).toBe("Converged")
        } else {
          expect(result.right.state.state).toBe(transitionTarget(before.state, event._tag))
          expect(result.right.state.lastEventSeq).toBe(event.seq)
        }
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "lastEventSeq only grows along a rollout, and a record never leaves a terminal state",
    [Arbitraries.rollout()],
    ([run]) => {
      const records = visited(run)
      for (let i = 1; i < records.length; i++) {
        expect(records[i]!.lastEventSeq).toBeGreaterThan(records[i - 1]!.lastEventSeq)
        expect(isTerminal(records[i - 1]!.state)).toBe(false)
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "terminal states absorb every event",
    [Arbitraries.record(["Converged", "Reverted"]), Arbitraries.event(), Arbitraries.policy],
    ([start, event, policy]) => {
      const result = step(start, { ...event, seq: start.lastEventSeq + 1 }, now, policy)
      expect(Either.isLeft(result) && result.left._tag).toBe("IllegalForState")
    }
  )

  it.prop(
    "Converged always has current == target, every enforce probe passing, and the soak deadline behind it",
    [Arbitraries.rollout()],
    ([run]) => {
      for (const record of visited(run)) {
        if (record.state !== "Converged") continue
        expect(record.currentClosure).toBe(record.targetClosure)
        expect(record.convergedAt!.getTime()).toBeGreaterThanOrEqual(record.soakDueAt?.getTime() ?? 0)
        for (const probe of record.probes.values()) {
          if (probe.mode === "enforce") expect(probe.status).toBe("pass")
        }
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "a rollout replayed on the other side ends in the same state",
    [Arbitraries.rollout({ side: "Local", faults: false })],
    ([run]) => {
      const remote = { ...run, side: "Remote" as const, events: run.events.map(remoteMirror) }
      expect(Arbitraries.finalRecord(remote)).toStrictEqual(Arbitraries.finalRecord(run))
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "a Local event and its Remote mirror produce the same state",
    [Arbitraries.record(), Arbitraries.localEvent(), Arbitraries.policy],
    ([start, event, policy]) => {
      const local = step(start, event, now, policy)
      const remote = step(start, remoteMirror(event), now, policy)
      if (Either.isRight(local)) {
        expect(Either.isRight(remote) && remote.right.state).toStrictEqual(local.right.state)
      } else {
        expect(Either.isLeft(remote) && remote.left._tag).toBe(local.left._tag)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "Local events only produce agent and shared commands, Remote events only control-plane and shared ones",
    [Arbitraries.record(), Arbitraries.event(), Arbitraries.policy],
    ([start, event, policy]) => {
      const result = step(start, event, now, policy)
      if (Either.isRight(result)) {
        const forbidden = event._tag.startsWith("Local") ? "Remote" : "Local"
        for (const effect of result.right.effects) expect(effect._tag.startsWith(forbidden)).toBe(false)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "every change of state records exactly one transition, and only a change does",
    [Arbitraries.rollout()],
    ([run]) => {
      for (const { before, result } of Arbitraries.replay(run)) {
        if (Either.isLeft(result)) continue
        const transitions = result.right.effects.filter((effect) => effect._tag === "RecordTransition")
        if (result.right.state.state === before.state) {
          expect(transitions).toHaveLength(0)
        } else {
          expect(transitions).toMatchObject([{ from: before.state, to: result.right.state.state }])
        }
      }
    },
    { fastCheck: { numRuns: 500 } }
  )
})
