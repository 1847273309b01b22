/**
 * Port of upstream `tests/scenarios.rs` (spec/state-machine.md §7.1).
 */
import { describe, expect, it } from "@effect/vitest"
import { type Event, type HostRolloutState, type RolloutPolicy, step } from "@nixfleet/state-machine"
import { mins, policyHalt, policyRollback, scenarioPending, secs } from "./fixtures.js"
import { right, tags } from "./helpers.js"

const activate = (ccad: string): Event => ({
  _tag: "LocalActivate",
  currentClosureAtDispatch: ccad,
  targetClosure: "target",
  receivedAt: secs(1),
  soakDueAt: mins(5),
  seq: 1
})

const completed: Event = {
  _tag: "LocalActivationCompleted",
  observedCurrentClosure: "target-closure-abc",
  exitCode: 0,
  completedAt: secs(5),
  seq: 2
}

/** LocalActivate then LocalActivationCompleted: the host is Soaking. */
const prefix = (policy: RolloutPolicy, ccad = "prior"): HostRolloutState => {
  const activating = right(step(scenarioPending(), activate(ccad), secs(1), policy)).state
  return right(step(activating, completed, secs(5), policy)).state
}

describe("scenarios", () => {
  it("happy_path_pending_to_converged", () => {
    const activating = right(step(scenarioPending(), activate("prior"), secs(1), policyHalt)).state
    expect(activating.state).toBe("Activating")
    const soaking = right(step(activating, completed, secs(5), policyHalt)).state
    expect(soaking.state).toBe("Soaking")
    expect(soaking.currentClosure).toBe("target-closure-abc")
    const out = right(
      step(
        soaking,
        { _tag: "LocalConvergedReached", convergedAt: mins(6), currentClosure: "target-closure-abc", seq: 3 },
        mins(6),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Converged")
    expect(out.effects).toContainEqual(expect.objectContaining({ _tag: "RecordTransition", to: "Converged" }))
  })

  it("sustained_failure_rollback_path", () => {
    const soaking = prefix(policyRollback, "prior-closure")
    expect(soaking.state).toBe("Soaking")
    const failed = right(
      step(
        soaking,
        {
          _tag: "LocalSustainedFailureCrossed",
          failedAt: secs(125),
          sustainedDurationSecs: 60,
          failingProbes: ["nginx-version"],
          policyApplied: "rollback-and-halt",
          seq: 3
        },
        secs(125),
        policyRollback
      )
    )
    expect(failed.state.state).toBe("Failed")
    expect(failed.state.policyApplied).toBe("rollback-and-halt")
    expect(failed.effects).toContainEqual({ _tag: "LocalFireRollbackTo", rolloutId: "r1", closure: "prior-closure" })
    const reverted = right(
      step(
        failed.state,
        {
          _tag: "LocalRollbackCompleted",
          revertedToClosure: "prior-closure",
          exitCode: 0,
          completedAt: secs(135),
          seq: 4
        },
        secs(135),
        policyRollback
      )
    )
    expect(reverted.state.state).toBe("Reverted")
    expect(reverted.state.revertedTo).toBe("prior-closure")
  })

  it("sustained_failure_halt_only_does_not_fire_rollback", () => {
    const out = right(
      step(
        prefix(policyHalt),
        {
          _tag: "LocalSustainedFailureCrossed",
          failedAt: secs(125),
          sustainedDurationSecs: 60,
          failingProbes: ["nginx-version"],
          policyApplied: "halt",
          seq: 3
        },
        secs(125),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Failed")
    expect(tags(out.effects)).not.toContain("LocalFireRollbackTo")
  })

  it("converged_invariant_violation_rejected", () => {
    const result = step(
      prefix(policyHalt),
      { _tag: "LocalConvergedReached", convergedAt: mins(6), currentClosure: "wrong-closure", seq: 3 },
      mins(6),
      policyHalt
    )
    expect(result).toStrictEqual(
      expect.objectContaining({ _tag: "Left", left: expect.objectContaining({ _tag: "Invariant" }) })
    )
  })

  it("activation_failure_rollback_and_halt_fires_rollback_immediately", () => {
    const activating = right(step(scenarioPending(), activate("prior-closure"), secs(1), policyRollback)).state
    const out = right(
      step(
        activating,
        { _tag: "LocalActivationFailed", exitCode: 1, stderrTail: "switch failed", failedAt: secs(5), seq: 2 },
        secs(5),
        policyRollback
      )
    )
    expect(out.state.state).toBe("Failed")
    expect(out.effects).toContainEqual({ _tag: "LocalFireRollbackTo", rolloutId: "r1", closure: "prior-closure" })
  })

  it("probe_result_updates_map_without_state_change", () => {
    const soaking = prefix(policyHalt)
    expect(soaking.probes.size).toBe(0)
    const out = right(
      step(
        soaking,
        {
          _tag: "LocalProbeResult",
          probeName: "nginx",
          mode: "enforce",
          status: "pass",
          observedAt: secs(10),
          failureReason: null,
          subResults: null,
          seq: 3
        },
        secs(10),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Soaking")
    expect(out.state.probes.size).toBe(1)
    expect(out.effects).toContainEqual(
      expect.objectContaining({ _tag: "LocalEmitEvent", payload: expect.objectContaining({ _tag: "ProbeResult" }) })
    )
  })

  it("local_activation_deferred_transitions_to_deferred_and_emits_outbound", () => {
    const activating = right(step(scenarioPending(), activate("prior"), secs(1), policyHalt)).state
    expect(activating.state).toBe("Activating")
    const out = right(
      step(
        activating,
        { _tag: "LocalActivationDeferred", component: "systemd", deferredAt: secs(2), seq: 2 },
        secs(2),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Deferred")
    expect(out.state.lastEventSeq).toBe(2)
    expect(out.state.currentClosure).toBeNull()
    expect(out.state.activationCompletedAt).toBeNull()
    expect(out.effects).toContainEqual({
      _tag: "LocalEmitEvent",
      rolloutId: "r1",
      payload: { _tag: "ActivationDeferred", component: "systemd", deferredAt: secs(2), seq: 2 },
      durable: true
    })
    expect(out.effects).toContainEqual(expect.objectContaining({ _tag: "RecordTransition", to: "Deferred" }))
  })

  it("remote_activation_deferred_transitions_to_deferred_and_appends_event_log", () => {
    const activating = right(
      step(
        scenarioPending(),
        { _tag: "RemoteDispatchAck", currentClosureAtDispatch: "prior", receivedAt: secs(1), seq: 1 },
        secs(1),
        policyHalt
      )
    ).state
    expect(activating.state).toBe("Activating")
    const out = right(
      step(
        activating,
        { _tag: "RemoteActivationDeferred", component: "dbus", deferredAt: secs(2), seq: 2 },
        secs(2),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Deferred")
    expect(out.state.lastEventSeq).toBe(2)
    expect(out.state.currentClosure).toBeNull()
    expect(out.state.activationCompletedAt).toBeNull()
    expect(out.effects).toContainEqual({
      _tag: "RemoteAppendEventLog",
      host: "web-01",
      rolloutId: "r1",
      payload: { _tag: "ActivationDeferred", component: "dbus", deferredAt: secs(2), seq: 2 }
    })
  })

  it("deferred_then_synthesized_completion_advances_to_soaking", () => {
    const activating = right(
      step(
        scenarioPending(),
        { _tag: "RemoteDispatchAck", currentClosureAtDispatch: "prior", receivedAt: secs(1), seq: 1 },
        secs(1),
        policyHalt
      )
    ).state
    const deferred = right(
      step(
        activating,
        { _tag: "RemoteActivationDeferred", component: "kernel", deferredAt: secs(2), seq: 2 },
        secs(2),
        policyHalt
      )
    ).state
    expect(deferred.state).toBe("Deferred")
    const out = right(
      step(
        deferred,
        {
          _tag: "RemoteActivationCompleted",
          observedCurrentClosure: "target-closure-abc",
          exitCode: 0,
          completedAt: mins(2),
          seq: 3
        },
        mins(2),
        policyHalt
      )
    )
    expect(out.state.state).toBe("Soaking")
    expect(out.state.currentClosure).toBe("target-closure-abc")
    expect(out.state.activationCompletedAt).toStrictEqual(mins(2))
  })

  it("local_probe_result_threads_sub_results_to_outbound_event", () => {
    const subResults = [
      {
        controlId: "encryption-at-rest",
        status: "fail",
        framework: "nis2-essential",
        article: "21(h)",
        effectiveMode: "observe",
        overrideReason: "Q2 audit window: observe-mode default"
      },
      {
        controlId: "access-control",
        status: "pass",
        framework: "nis2-essential",
        article: "21(i)",
        effectiveMode: "enforce",
        overrideReason: null
      }
    ] as const
    const out = right(
      step(
        prefix(policyHalt),
        {
          _tag: "LocalProbeResult",
          probeName: "evidence-nis2-essential",
          mode: "enforce",
          status: "fail",
          observedAt: secs(10),
          failureReason: "encryption-at-rest failed",
          subResults,
          seq: 3
        },
        secs(10),
        policyHalt
      )
    )
    const emitted = out.effects.find((effect) => effect._tag === "LocalEmitEvent")
    expect(emitted?._tag === "LocalEmitEvent" && emitted.payload._tag === "ProbeResult" && emitted.payload.subResults)
      .toStrictEqual(subResults)
  })
})
