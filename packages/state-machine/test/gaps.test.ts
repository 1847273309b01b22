/**
 * Cases the upstream tests do not cover, derived from the code (spec/state-machine.md §7.6).
 */
import { describe, expect, it } from "@effect/vitest"
import { type Event, EventNames, type HostRolloutState, step } from "@nixfleet/state-machine"
import { eventWithSeq, mins, policyHalt, policyRollback, secs, stateIn } from "./fixtures.js"
import { left, right, tags } from "./helpers.js"

const soakingWith = (probes: HostRolloutState["probes"], soakDueAt: Date | null = mins(5)): HostRolloutState => ({
  ...stateIn("Soaking"),
  probes,
  soakDueAt
})

describe("gaps", () => {
  it("Activating + Local/Remote ActivationDeferred gives Deferred, report first then transition", () => {
    for (
      const [name, report] of [["LocalActivationDeferred", "LocalEmitEvent"], [
        "RemoteActivationDeferred",
        "RemoteAppendEventLog"
      ]] as const
    ) {
      const out = right(step(stateIn("Activating"), eventWithSeq(name, 1), secs(10), policyHalt))
      expect(out.state.state).toBe("Deferred")
      expect(tags(out.effects)).toStrictEqual([report, "RecordTransition"])
    }
  })

  it("Deferred + ActivationFailed gives Failed with no policy and no rollback, even under rollback-and-halt", () => {
    const record = stateIn("Deferred", { withDispatchClosure: true })
    for (const name of ["LocalActivationFailed", "RemoteActivationFailed"] as const) {
      const out = right(step(record, eventWithSeq(name, 1), secs(10), policyRollback))
      expect(out.state.state).toBe("Failed")
      expect(out.state.policyApplied).toBeNull()
      expect(out.state.failedAt).toStrictEqual(secs(10))
      expect(out.state.activationFailedAt).toStrictEqual(secs(10))
      expect(tags(out.effects)).not.toContain("LocalFireRollbackTo")
    }
  })

  it("Deferred refuses the 20 other events", () => {
    const accepted = [
      "LocalActivationCompleted",
      "RemoteActivationCompleted",
      "LocalActivationFailed",
      "RemoteActivationFailed"
    ]
    const others = EventNames.filter((name) => !accepted.includes(name))
    expect(others).toHaveLength(20)
    for (const name of others) {
      expect(left(step(stateIn("Deferred"), eventWithSeq(name, 1), secs(10), policyHalt))._tag, name).toBe(
        "IllegalForState"
      )
    }
  })

  it("ProbeTopologyDeclared is legal only in Soaking, emitted durably or logged, with no state change", () => {
    const local = right(step(stateIn("Soaking"), eventWithSeq("LocalProbeTopologyDeclared", 1), secs(10), policyHalt))
    expect(local.state.state).toBe("Soaking")
    expect(local.effects).toMatchObject([{
      _tag: "LocalEmitEvent",
      durable: true,
      payload: { _tag: "ProbeTopologyDeclared" }
    }])
    const remote = right(step(stateIn("Soaking"), eventWithSeq("RemoteProbeTopologyDeclared", 1), secs(10), policyHalt))
    expect(tags(remote.effects)).toStrictEqual(["RemoteAppendEventLog"])
    for (const state of ["Pending", "Activating", "Deferred", "Failed"] as const) {
      for (const name of ["LocalProbeTopologyDeclared", "RemoteProbeTopologyDeclared"] as const) {
        expect(left(step(stateIn(state), eventWithSeq(name, 1), secs(10), policyHalt))._tag).toBe("IllegalForState")
      }
    }
  })

  it("convergence exactly at the soak deadline is accepted, a millisecond before is not", () => {
    const at = (date: Date): Event => ({
      _tag: "LocalConvergedReached",
      convergedAt: date,
      currentClosure: "target-abc",
      seq: 1
    })
    expect(right(step(stateIn("Soaking"), at(mins(5)), mins(5), policyHalt)).state.state).toBe("Converged")
    expect(left(step(stateIn("Soaking"), at(new Date(mins(5).getTime() - 1)), mins(5), policyHalt))).toMatchObject({
      _tag: "Invariant",
      message: "Converged event: converged_at before soak_due_at"
    })
  })

  it("convergence without a soak deadline skips the soak check", () => {
    const out = right(
      step(
        soakingWith(new Map(), null),
        { _tag: "RemoteConverged", convergedAt: secs(1), currentClosure: "target-abc", seq: 1 },
        secs(1),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Converged")
    expect(out.state.convergedAt).toStrictEqual(secs(1))
  })

  it("the gate checks closure, then soak, then probes, with the upstream messages", () => {
    const failing = soakingWith(
      new Map([["p", {
        status: "fail",
        mode: "enforce",
        lastObservedAt: secs(1),
        lastPassAt: null,
        failureReason: null
      }]])
    )
    const converge = (closure: string, date: Date): Event => ({
      _tag: "LocalConvergedReached",
      convergedAt: date,
      currentClosure: closure,
      seq: 1
    })
    expect(left(step(failing, converge("wrong", secs(1)), secs(1), policyHalt)).message).toBe(
      "Converged event: current_closure != target_closure"
    )
    expect(left(step(failing, converge("target-abc", secs(1)), secs(1), policyHalt)).message).toBe(
      "Converged event: converged_at before soak_due_at"
    )
    expect(left(step(failing, converge("target-abc", mins(6)), mins(6), policyHalt)).message).toBe(
      "Converged event: at least one enforce-mode probe is not Pass"
    )
  })

  it("a failed convergence changes nothing, so the same seq can be retried", () => {
    const record = { ...stateIn("Soaking"), lastEventSeq: 4 }
    const early: Event = { _tag: "LocalConvergedReached", convergedAt: mins(1), currentClosure: "target-abc", seq: 5 }
    expect(left(step(record, early, mins(1), policyHalt))._tag).toBe("Invariant")
    expect(record.lastEventSeq).toBe(4)
    const retry = right(step(record, { ...early, convergedAt: mins(6) }, mins(6), policyHalt))
    expect(retry.state.lastEventSeq).toBe(5)
  })

  it("a rollback completion is accepted in Failed under halt", () => {
    const record = { ...stateIn("Failed"), policyApplied: "halt" as const }
    for (const name of ["LocalRollbackCompleted", "RemoteRollbackComplete"] as const) {
      const out = right(step(record, eventWithSeq(name, 1), secs(10), policyHalt))
      expect(out.state.state).toBe("Reverted")
      expect(out.state.revertedTo).toBe("prior")
      expect(out.state.currentClosure).toBe("prior")
      expect(out.state.revertedAt).toStrictEqual(secs(10))
    }
  })

  it("SeqRegression takes priority over IllegalForState", () => {
    const record = { ...stateIn("Converged"), lastEventSeq: 3 }
    expect(left(step(record, eventWithSeq("LocalConvergedReached", 3), secs(10), policyHalt))._tag).toBe(
      "SeqRegression"
    )
    expect(left(step(record, eventWithSeq("LocalConvergedReached", 4), secs(10), policyHalt))._tag).toBe(
      "IllegalForState"
    )
  })

  it("seq gaps are allowed", () => {
    const record = { ...stateIn("Soaking"), lastEventSeq: 1 }
    expect(right(step(record, eventWithSeq("LocalProbeResult", 7), secs(10), policyHalt)).state.lastEventSeq).toBe(7)
  })

  it("repeated ObservedFirst and FailureFirst keep the first timestamp and still emit", () => {
    let record = stateIn("Soaking")
    for (const [seq, at] of [[1, secs(10)], [20, secs(20)]] as const) {
      const observed = right(
        step(record, { ...eventWithSeq("LocalProbeObservedFirst", seq), observedAt: at } as Event, at, policyHalt)
      )
      expect(tags(observed.effects)).toStrictEqual(["LocalEmitEvent"])
      expect(observed.effects[0]).toMatchObject({ durable: false })
      const failure = right(
        step(
          observed.state,
          { ...eventWithSeq("RemoteProbeFailureFirst", seq + 10), firstFailedAt: at } as Event,
          at,
          policyHalt
        )
      )
      expect(tags(failure.effects)).toStrictEqual(["RemoteAppendEventLog"])
      record = failure.state
    }
    expect(record.probeObservedFirstAt).toStrictEqual(secs(10))
    expect(record.probeFailureFirstAt).toStrictEqual(secs(10))
    expect(record.probes.size).toBe(0)
  })

  it("a failing result with no reason clears the old reason and keeps lastPassAt", () => {
    const record = soakingWith(
      new Map([["p", {
        status: "fail",
        mode: "enforce",
        lastObservedAt: secs(5),
        lastPassAt: secs(2),
        failureReason: "old"
      }]])
    )
    const out = right(
      step(
        record,
        {
          _tag: "LocalProbeResult",
          probeName: "p",
          mode: "observe",
          status: "fail",
          observedAt: secs(9),
          failureReason: null,
          subResults: null,
          seq: 1
        },
        secs(9),
        policyHalt
      )
    )
    expect(out.state.probes.get("p")).toStrictEqual({
      status: "fail",
      mode: "observe",
      lastObservedAt: secs(9),
      lastPassAt: secs(2),
      failureReason: null
    })
  })

  it("a passing result stamps lastPassAt and clears the reason; an older observation still overwrites", () => {
    const record = soakingWith(
      new Map([["p", {
        status: "fail",
        mode: "enforce",
        lastObservedAt: secs(50),
        lastPassAt: null,
        failureReason: "down"
      }]])
    )
    const out = right(
      step(
        record,
        {
          _tag: "RemoteProbeResult",
          probeName: "p",
          mode: "enforce",
          status: "pass",
          observedAt: secs(40),
          failureReason: "ignored",
          subResults: null,
          seq: 1
        },
        secs(40),
        policyHalt
      )
    )
    expect(out.state.probes.get("p")).toStrictEqual({
      status: "pass",
      mode: "enforce",
      lastObservedAt: secs(40),
      lastPassAt: secs(40),
      failureReason: null
    })
  })

  it("Remote ActivationFailed from Activating records rollback-and-halt but never fires a rollback", () => {
    const out = right(
      step(
        stateIn("Activating", { withDispatchClosure: true }),
        eventWithSeq("RemoteActivationFailed", 1),
        secs(10),
        policyRollback
      )
    )
    expect(out.state.policyApplied).toBe("rollback-and-halt")
    expect(tags(out.effects)).toStrictEqual(["RemoteAppendEventLog", "RecordTransition"])
  })

  it("no rollback is fired when the rollback target is unknown", () => {
    const activating = right(
      step(stateIn("Activating"), eventWithSeq("LocalActivationFailed", 1), secs(10), policyRollback)
    )
    expect(tags(activating.effects)).toStrictEqual(["LocalEmitEvent", "RecordTransition"])
    const soaking = right(
      step(
        stateIn("Soaking"),
        eventWithSeq("LocalSustainedFailureCrossed", 1, secs(10), { policyApplied: "rollback-and-halt" }),
        secs(10),
        policyHalt
      )
    )
    expect(soaking.state.policyApplied).toBe("rollback-and-halt")
    expect(tags(soaking.effects)).toStrictEqual(["LocalEmitEvent", "RecordTransition"])
  })

  it("sustained failure takes the policy from the event, not from the argument", () => {
    const record = stateIn("Soaking", { withDispatchClosure: true })
    const halt = right(
      step(
        record,
        eventWithSeq("LocalSustainedFailureCrossed", 1, secs(10), { policyApplied: "halt" }),
        secs(10),
        policyRollback
      )
    )
    expect(halt.state.policyApplied).toBe("halt")
    expect(tags(halt.effects)).not.toContain("LocalFireRollbackTo")
    const rollback = right(
      step(
        record,
        eventWithSeq("LocalSustainedFailureCrossed", 1, secs(10), { policyApplied: "rollback-and-halt" }),
        secs(10),
        policyHalt
      )
    )
    expect(rollback.effects).toContainEqual({ _tag: "LocalFireRollbackTo", rolloutId: "r1", closure: "prior-closure" })
  })

  it("activation completion stores a closure that is not the target and clears probes, keeping the first-seen stamps", () => {
    const record: HostRolloutState = {
      ...stateIn("Deferred"),
      probeObservedFirstAt: secs(1),
      probes: new Map([["p", {
        status: "pass",
        mode: "enforce",
        lastObservedAt: secs(1),
        lastPassAt: secs(1),
        failureReason: null
      }]])
    }
    const out = right(
      step(
        record,
        {
          _tag: "LocalActivationCompleted",
          observedCurrentClosure: "something-else",
          exitCode: 3,
          completedAt: secs(9),
          seq: 1
        },
        secs(9),
        policyHalt
      )
    )
    expect(out.state.currentClosure).toBe("something-else")
    expect(out.state.probes.size).toBe(0)
    expect(out.state.probeObservedFirstAt).toStrictEqual(secs(1))
    expect(record.probes.size).toBe(1)
  })

  it("an unknown state or event is refused, not thrown", () => {
    const weird = { ...stateIn("Soaking"), state: "Healthy" } as unknown as HostRolloutState
    expect(left(step(weird, eventWithSeq("LocalProbeResult", 1), secs(10), policyHalt))._tag).toBe("IllegalForState")
    const unknown = { _tag: "LocalReboot", seq: 1 } as unknown as Event
    expect(left(step(stateIn("Soaking"), unknown, secs(10), policyHalt))).toMatchObject({
      _tag: "IllegalForState",
      event: "LocalReboot"
    })
  })
})
