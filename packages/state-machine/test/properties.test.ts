/**
 * Properties of `step` over random records and random event sequences.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  type Event,
  type HostRolloutState,
  isTerminal,
  remoteMirror,
  type RolloutPolicy,
  step
} from "@nixfleet/state-machine"
import { Either, FastCheck as fc } from "effect"
import * as arb from "./arbitraries.js"

const policy: fc.Arbitrary<RolloutPolicy> = fc.constantFrom("halt" as const, "rollback-and-halt" as const).map((
  onHealthFailure
) => ({ strategy: "all-at-once", waves: [], healthGate: {}, onHealthFailure }))

const now = new Date("2026-05-16T01:00:00Z")

/**
 * Runs a sequence, checking the per-step properties, and returns every record it went
 * through. With `agentSeq`, each event gets `lastEventSeq + 1`, as the agent's reducer
 * rewrites seqs, so that sequences go deep instead of stalling on regressions.
 */
const run = (
  start: HostRolloutState,
  events: ReadonlyArray<Event>,
  rolloutPolicy: RolloutPolicy,
  agentSeq: boolean
): ReadonlyArray<HostRolloutState> => {
  const visited = [start]
  let current = start
  for (const original of events) {
    const event = agentSeq ? { ...original, seq: current.lastEventSeq + 1 } : original
    const before = arb.snapshot(current)
    const eventBefore = arb.snapshot(event)
    const result = step(current, event, now, rolloutPolicy)

    expect(Either.isEither(result)).toBe(true)
    // Inputs are never mutated, including the probes map and the event's arrays.
    expect(current).toStrictEqual(before)
    expect(event).toStrictEqual(eventBefore)

    if (isTerminal(current.state)) {
      expect(Either.isLeft(result) && result.left._tag).toBe(
        event.seq <= current.lastEventSeq ? "SeqRegression" : "IllegalForState"
      )
    }
    if (Either.isRight(result)) {
      const next = result.right.state
      expect(next.lastEventSeq).toBe(event.seq)
      expect(next.lastEventSeq).toBeGreaterThan(current.lastEventSeq)
      expect(next.probes).not.toBe(current.probes)
      current = next
      visited.push(next)
    }
  }
  return visited
}

describe("properties", () => {
  it.prop(
    "random sequences from any state never throw and return an Either",
    [arb.record, fc.array(arb.event, { maxLength: 30 }), policy, fc.boolean()],
    ([start, events, rolloutPolicy, agentSeq]) => {
      run(start, events, rolloutPolicy, agentSeq)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "lastEventSeq only grows along a sequence",
    [arb.record, fc.array(arb.event, { maxLength: 30 }), policy],
    ([start, events, rolloutPolicy]) => {
      const seqs = run(start, events, rolloutPolicy, true).map((record) => record.lastEventSeq)
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!)
    },
    { fastCheck: { numRuns: 200 } }
  )

  it.prop(
    "terminal states absorb every event",
    [
      arb.record.map((r) => ({ ...r, state: r.state === "Reverted" ? "Reverted" as const : "Converged" as const })),
      arb.event,
      policy
    ],
    ([start, event, rolloutPolicy]) => {
      const result = step(start, { ...event, seq: start.lastEventSeq + 1 }, now, rolloutPolicy)
      expect(Either.isLeft(result) && result.left._tag).toBe("IllegalForState")
    }
  )

  it.prop(
    "Converged always has current == target and every enforce probe passing",
    [arb.record.map((r) => ({ ...r, state: "Soaking" as const })), fc.array(arb.event, { maxLength: 20 }), policy],
    ([start, events, rolloutPolicy]) => {
      for (const record of run(start, events, rolloutPolicy, true)) {
        if (record.state === "Converged") {
          expect(record.currentClosure).toBe(record.targetClosure)
          for (const probe of record.probes.values()) {
            if (probe.mode === "enforce") expect(probe.status).toBe("pass")
          }
        }
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "a Local event and its Remote mirror produce the same state",
    [arb.record, arb.localEvent, policy],
    ([start, event, rolloutPolicy]) => {
      const local = step(start, event, now, rolloutPolicy)
      const remote = step(start, remoteMirror(event), now, rolloutPolicy)
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
    [arb.record, arb.event, policy],
    ([start, event, rolloutPolicy]) => {
      const result = step(start, event, now, rolloutPolicy)
      if (Either.isRight(result)) {
        const forbidden = event._tag.startsWith("Local") ? "Remote" : "Local"
        for (const effect of result.right.effects) expect(effect._tag.startsWith(forbidden)).toBe(false)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "every change of state records exactly one transition, and only a change does",
    [arb.record, arb.event, policy],
    ([start, event, rolloutPolicy]) => {
      const result = step(start, event, now, rolloutPolicy)
      if (Either.isRight(result)) {
        const transitions = result.right.effects.filter((effect) => effect._tag === "RecordTransition")
        if (result.right.state.state === start.state) {
          expect(transitions).toHaveLength(0)
        } else {
          expect(transitions).toMatchObject([{ from: start.state, to: result.right.state.state }])
        }
      }
    },
    { fastCheck: { numRuns: 500 } }
  )
})
