/**
 * The whole 7 × 24 transition table (spec/state-machine.md §3.1 and §3.3): every legal
 * pair's resulting state and exact ordered commands, every illegal pair's error.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  type Command,
  type EventName,
  EventNames,
  type HostRolloutState,
  type HostState,
  HostStates,
  LegalTransitions,
  outboundPayload,
  step
} from "@nixfleet/state-machine"
import { eventWithSeq, mins, policyRollback, stateIn } from "./fixtures.js"
import { left, right } from "./helpers.js"

/** After the soak deadline, so that a legal convergence passes its gate. */
const at = mins(6)

type Expected = (record: HostRolloutState, name: EventName) => {
  readonly to: HostState
  readonly effects: ReadonlyArray<Command>
}

const rt = (record: HostRolloutState, to: HostState): Command => ({
  _tag: "RecordTransition",
  host: record.hostname,
  rolloutId: record.rolloutId,
  from: record.state,
  to,
  at
})
const emit = (name: EventName, durable: boolean): Command => ({
  _tag: "LocalEmitEvent",
  rolloutId: "r1",
  payload: outboundPayload(eventWithSeq(name, 1, at, { policyApplied: "rollback-and-halt" })),
  durable
})
const log = (record: HostRolloutState, name: EventName): Command => ({
  _tag: "RemoteAppendEventLog",
  host: record.hostname,
  rolloutId: "r1",
  payload: outboundPayload(eventWithSeq(name, 1, at, { policyApplied: "rollback-and-halt" }))
})
const rollback: Command = { _tag: "LocalFireRollbackTo", rolloutId: "r1", closure: "prior-closure" }
const reset: Command = { _tag: "LocalResetProbeCache", rolloutId: "r1" }

/** The 28 legal pairs, under policy rollback-and-halt and an event policy of rollback-and-halt. */
const legal: Partial<Record<HostState, Partial<Record<EventName, Expected>>>> = {
  Pending: {
    LocalActivate: (r, n) => ({
      to: "Activating",
      effects: [rt(r, "Activating"), emit(n, true), { _tag: "LocalFireSwitch", rolloutId: "r1", target: "target-abc" }]
    }),
    RemoteDispatchAck: (r, n) => ({ to: "Activating", effects: [log(r, n), rt(r, "Activating")] })
  },
  Activating: {
    LocalActivationStarted: (_, n) => ({ to: "Activating", effects: [emit(n, true)] }),
    RemoteActivationStarted: (r, n) => ({ to: "Activating", effects: [log(r, n)] }),
    LocalActivationCompleted: (r, n) => ({ to: "Soaking", effects: [reset, emit(n, true), rt(r, "Soaking")] }),
    RemoteActivationCompleted: (r, n) => ({ to: "Soaking", effects: [log(r, n), rt(r, "Soaking")] }),
    LocalActivationDeferred: (r, n) => ({ to: "Deferred", effects: [emit(n, true), rt(r, "Deferred")] }),
    RemoteActivationDeferred: (r, n) => ({ to: "Deferred", effects: [log(r, n), rt(r, "Deferred")] }),
    LocalActivationFailed: (r, n) => ({ to: "Failed", effects: [emit(n, true), rt(r, "Failed"), rollback] }),
    RemoteActivationFailed: (r, n) => ({ to: "Failed", effects: [log(r, n), rt(r, "Failed")] })
  },
  Deferred: {
    LocalActivationCompleted: (r, n) => ({ to: "Soaking", effects: [reset, emit(n, true), rt(r, "Soaking")] }),
    RemoteActivationCompleted: (r, n) => ({ to: "Soaking", effects: [log(r, n), rt(r, "Soaking")] }),
    LocalActivationFailed: (r, n) => ({ to: "Failed", effects: [emit(n, true), rt(r, "Failed")] }),
    RemoteActivationFailed: (r, n) => ({ to: "Failed", effects: [log(r, n), rt(r, "Failed")] })
  },
  Soaking: {
    LocalProbeTopologyDeclared: (_, n) => ({ to: "Soaking", effects: [emit(n, true)] }),
    RemoteProbeTopologyDeclared: (r, n) => ({ to: "Soaking", effects: [log(r, n)] }),
    LocalProbeObservedFirst: (_, n) => ({ to: "Soaking", effects: [emit(n, false)] }),
    RemoteProbeObservedFirst: (r, n) => ({ to: "Soaking", effects: [log(r, n)] }),
    LocalProbeResult: (_, n) => ({ to: "Soaking", effects: [emit(n, false)] }),
    RemoteProbeResult: (r, n) => ({ to: "Soaking", effects: [log(r, n)] }),
    LocalProbeFailureFirst: (_, n) => ({ to: "Soaking", effects: [emit(n, false)] }),
    RemoteProbeFailureFirst: (r, n) => ({ to: "Soaking", effects: [log(r, n)] }),
    LocalSustainedFailureCrossed: (r, n) => ({ to: "Failed", effects: [emit(n, true), rt(r, "Failed"), rollback] }),
    RemoteFailed: (r, n) => ({ to: "Failed", effects: [log(r, n), rt(r, "Failed")] }),
    LocalConvergedReached: (r, n) => ({ to: "Converged", effects: [emit(n, true), rt(r, "Converged")] }),
    RemoteConverged: (r, n) => ({ to: "Converged", effects: [log(r, n), rt(r, "Converged")] })
  },
  Failed: {
    LocalRollbackCompleted: (r, n) => ({ to: "Reverted", effects: [emit(n, true), rt(r, "Reverted")] }),
    RemoteRollbackComplete: (r, n) => ({
      to: "Reverted",
      effects: [
        log(r, n),
        { _tag: "RemoteInsertQuarantine", channel: "stable", closure: "target-abc" },
        rt(r, "Reverted")
      ]
    })
  }
}

describe("transition table", () => {
  it("has 7 states, 24 events and 28 legal pairs", () => {
    expect(HostStates).toHaveLength(7)
    expect(new Set(EventNames).size).toBe(24)
    const pairs = Object.entries(legal).flatMap(([from, row]) =>
      Object.keys(row ?? {}).map((event) => `${from} ${event}`)
    )
    expect(pairs).toHaveLength(28)
    // The exported table lists the same pairs as this file's expectations.
    expect(new Set(pairs)).toStrictEqual(new Set(LegalTransitions.map(({ event, from }) => `${from} ${event}`)))
  })

  for (const state of HostStates) {
    describe(state, () => {
      for (const name of EventNames) {
        const expected = legal[state]?.[name]
        const record = stateIn(state, { withDispatchClosure: true })
        const event = eventWithSeq(name, 1, at, { policyApplied: "rollback-and-halt" })
        if (expected === undefined) {
          it(`${name} is IllegalForState`, () => {
            expect(left(step(record, event, at, policyRollback))).toMatchObject({
              _tag: "IllegalForState",
              from: state,
              event: name,
              rolloutId: "r1",
              hostname: "h1"
            })
          })
        } else {
          it(`${name} → ${expected(record, name).to}`, () => {
            const out = right(step(record, event, at, policyRollback))
            const { effects, to } = expected(record, name)
            expect(out.state.state).toBe(to)
            expect(out.state.lastEventSeq).toBe(1)
            expect(out.effects).toStrictEqual(effects)
          })
        }
      }
    })
  }
})
