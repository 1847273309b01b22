/**
 * Ports of the host-level unit tests inside upstream modules (spec/state-machine.md §7.5):
 * `transitions/pending.rs` and `rehydration.rs`, plus the display texts of §1.8.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  HostStates,
  IllegalForState,
  Invariant,
  newPending,
  rehydrationEffects,
  SeqRegression,
  step
} from "@nixfleet/state-machine"
import { mins, policyHalt, secs, t0 } from "./fixtures.js"
import { left, right, tags } from "./helpers.js"

const pending = () =>
  newPending({
    rolloutId: "r1",
    hostname: "h1",
    channel: "stable",
    targetClosure: "abc123",
    dispatchedAt: t0,
    soakDueAt: mins(5)
  })

describe("pending", () => {
  it("local activate moves to Activating: transition, then ack, then fire", () => {
    const out = right(
      step(
        pending(),
        {
          _tag: "LocalActivate",
          currentClosureAtDispatch: "prior-closure",
          targetClosure: "target",
          receivedAt: secs(1),
          soakDueAt: mins(5),
          seq: 1
        },
        secs(1),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Activating")
    expect(out.state.currentClosureAtDispatch).toBe("prior-closure")
    expect(out.state.dispatchAckedAt).toStrictEqual(secs(1))
    expect(out.state.lastEventSeq).toBe(1)
    expect(tags(out.effects)).toStrictEqual(["RecordTransition", "LocalEmitEvent", "LocalFireSwitch"])
    // The switch fires on the record's target, not on the event's.
    expect(out.effects[2]).toStrictEqual({ _tag: "LocalFireSwitch", rolloutId: "r1", target: "abc123" })
  })

  it("remote dispatch ack moves to Activating: log, then transition", () => {
    const out = right(
      step(
        pending(),
        { _tag: "RemoteDispatchAck", currentClosureAtDispatch: "prior-closure", receivedAt: secs(1), seq: 1 },
        secs(1),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Activating")
    expect(tags(out.effects)).toStrictEqual(["RemoteAppendEventLog", "RecordTransition"])
  })

  it("activation completed is illegal from Pending", () => {
    expect(
      left(
        step(
          pending(),
          {
            _tag: "LocalActivationCompleted",
            observedCurrentClosure: "abc123",
            exitCode: 0,
            completedAt: secs(5),
            seq: 1
          },
          secs(5),
          policyHalt
        )
      )
    ).toBeInstanceOf(IllegalForState)
  })

  it("a seq equal to the last one is a regression", () => {
    const result = step(
      { ...pending(), lastEventSeq: 5 },
      {
        _tag: "LocalActivate",
        currentClosureAtDispatch: "prior-closure",
        targetClosure: "target",
        receivedAt: secs(1),
        soakDueAt: mins(5),
        seq: 5
      },
      secs(1),
      policyHalt
    )
    expect(left(result)).toStrictEqual(new SeqRegression({ got: 5, last: 5, rolloutId: "r1", hostname: "h1" }))
  })

  it("newPending starts at seq 0 with no probes and every optional field null", () => {
    const record = pending()
    expect(record.state).toBe("Pending")
    expect(record.lastEventSeq).toBe(0)
    expect(record.probes.size).toBe(0)
    expect(record.soakDueAt).toStrictEqual(mins(5))
    for (
      const key of [
        "currentClosureAtDispatch",
        "currentClosure",
        "revertedTo",
        "dispatchAckedAt",
        "activationStartedAt",
        "activationCompletedAt",
        "activationFailedAt",
        "probeObservedFirstAt",
        "probeFailureFirstAt",
        "convergedAt",
        "failedAt",
        "policyApplied",
        "revertedAt"
      ] as const
    ) {
      expect(record[key], key).toBeNull()
    }
  })
})

describe("rehydration", () => {
  const record = (state: (typeof HostStates)[number]) => ({
    ...newPending({
      rolloutId: "stable@r1",
      hostname: "h1",
      channel: "stable",
      targetClosure: "abc123",
      dispatchedAt: t0,
      soakDueAt: null
    }),
    state
  })

  it("Pending needs nothing", () => {
    expect(rehydrationEffects(record("Pending"))).toStrictEqual([])
  })

  it("every other state resets the probe cache, and only that", () => {
    for (const state of HostStates.filter((s) => s !== "Pending")) {
      expect(rehydrationEffects(record(state)), state).toStrictEqual([
        { _tag: "LocalResetProbeCache", rolloutId: "stable@r1" }
      ])
    }
  })
})

describe("error texts", () => {
  it("match upstream's display strings", () => {
    expect(
      new IllegalForState({ from: "Pending", event: "LocalConvergedReached", rolloutId: "r1", hostname: "h1" }).message
    )
      .toBe("event LocalConvergedReached not legal from state Pending (rollout r1, host h1)")
    expect(new SeqRegression({ got: 3, last: 7, rolloutId: "r1", hostname: "h1" }).message).toBe(
      "event seq 3 is not > last_event_seq 7 (rollout r1, host h1)"
    )
    const invariant = new Invariant({ message: "Converged event: current_closure != target_closure" })
    expect(invariant.message).toBe("Converged event: current_closure != target_closure")
    expect(String(invariant)).toBe("invariant violation: Converged event: current_closure != target_closure")
  })
})
