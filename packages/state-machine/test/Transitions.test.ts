/**
 * The transition table as data agrees with `step` over every (state, event) pair.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  EventNames,
  HostStates,
  isLegal,
  legalEvents,
  LegalTransitions,
  step,
  transitionTarget
} from "@nixfleet/state-machine"
import * as Arbitraries from "@nixfleet/state-machine/testing"
import { Either, FastCheck as fc } from "effect"
import { eventWithSeq, mins, policyHalt, policyRollback, stateIn } from "./fixtures.js"

describe("Transitions", () => {
  it("lists 28 distinct pairs, none from Converged or Reverted", () => {
    expect(LegalTransitions).toHaveLength(28)
    expect(new Set(LegalTransitions.map(({ event, from }) => `${from} ${event}`)).size).toBe(28)
    expect(legalEvents("Converged")).toStrictEqual([])
    expect(legalEvents("Reverted")).toStrictEqual([])
    expect(HostStates.reduce((n, state) => n + legalEvents(state).length, 0)).toBe(28)
  })

  it("agrees with step on all 7 × 24 pairs: legal pairs lead where the table says, the others are IllegalForState", () => {
    for (const policy of [policyHalt, policyRollback]) {
      for (const state of HostStates) {
        for (const name of EventNames) {
          // After the soak deadline and on the target, so that a legal convergence passes its gate.
          const result = step(
            stateIn(state, { withDispatchClosure: true }),
            eventWithSeq(name, 1, mins(6)),
            mins(6),
            policy
          )
          const pair = `${state} + ${name}`
          expect(Either.isRight(result), pair).toBe(isLegal(state, name))
          expect(Either.isRight(result) ? result.right.state.state : null, pair).toBe(transitionTarget(state, name))
          if (Either.isLeft(result)) expect(result.left._tag, pair).toBe("IllegalForState")
        }
      }
    }
  })

  it.prop(
    "agrees with step on random records and events of every kind",
    [
      Arbitraries.record(),
      fc.constantFrom(...EventNames).chain((name) => Arbitraries.eventOf(name)),
      Arbitraries.policy
    ],
    ([record, event, policy]) => {
      const result = step(record, { ...event, seq: record.lastEventSeq + 1 }, Arbitraries.epoch, policy)
      const illegal = Either.isLeft(result) && result.left._tag === "IllegalForState"
      expect(illegal).toBe(!isLegal(record.state, event._tag))
      if (Either.isRight(result)) expect(result.right.state.state).toBe(transitionTarget(record.state, event._tag))
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it("answers false and null for names and states it does not know", () => {
    expect(isLegal("Pending", "Nope" as never)).toBe(false)
    expect(transitionTarget("Paused" as never, "LocalActivate")).toBeNull()
    expect(legalEvents("Paused" as never)).toStrictEqual([])
  })
})
