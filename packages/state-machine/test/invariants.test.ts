/**
 * Port of upstream `tests/invariants.rs` (spec/state-machine.md §7.2).
 */
import { describe, expect, it } from "@effect/vitest"
import {
  type Event,
  type HostRolloutState,
  type HostState,
  LocalActivate,
  type LocalEvent,
  step
} from "@nixfleet/state-machine"
import { Either, FastCheck as fc } from "effect"
import { eventWithSeq, mins, policyHalt, secs, stateIn, upstreamCatalogue, upstreamLegal } from "./fixtures.js"
import { left, right } from "./helpers.js"

const upstreamStates: ReadonlyArray<HostState> = ["Pending", "Activating", "Soaking", "Converged", "Failed", "Reverted"]
const seqArb = fc.integer({ min: 1, max: 999 })

const converge = (closure: string, at: Date, seq = 1): Event => ({
  _tag: "LocalConvergedReached",
  convergedAt: at,
  currentClosure: closure,
  seq
})

const withProbes = (
  record: HostRolloutState,
  probes: ReadonlyArray<[string, HostRolloutState["probes"] extends ReadonlyMap<string, infer P> ? P : never]>
): HostRolloutState => ({ ...record, probes: new Map(probes) })

describe("invariants", () => {
  it("every_illegal_state_event_pair_returns_transition_error", () => {
    let total = 0
    let legal = 0
    for (const state of upstreamStates) {
      for (const name of upstreamCatalogue) {
        total++
        const result = step(stateIn(state), eventWithSeq(name, 1), secs(10), policyHalt)
        const isLegal = upstreamLegal[state]?.includes(name) ?? false
        if (isLegal) {
          legal++
          expect(Either.isLeft(result) && result.left._tag === "IllegalForState", `${state} + ${name}`).toBe(false)
        } else {
          expect(left(result)._tag, `${state} + ${name}`).toBe("IllegalForState")
        }
      }
    }
    expect(total).toBe(120)
    expect(legal).toBe(20)
  })

  it("seq_regression_rejected_on_any_state", () => {
    for (const state of ["Pending", "Activating", "Soaking", "Failed"] as const) {
      const record = { ...stateIn(state), lastEventSeq: 10 }
      for (const name of upstreamLegal[state] ?? []) {
        for (const seq of [10, 5]) {
          expect(left(step(record, eventWithSeq(name, seq), secs(10), policyHalt))._tag, `${state} ${name} ${seq}`)
            .toBe("SeqRegression")
        }
      }
    }
  })

  it("converged_with_wrong_current_closure_rejected", () => {
    expect(left(step(stateIn("Soaking"), converge("different-from-target", mins(6)), mins(6), policyHalt))._tag).toBe(
      "Invariant"
    )
  })

  it("converged_before_soak_due_at_rejected", () => {
    expect(left(step(stateIn("Soaking"), converge("target-abc", mins(1)), mins(1), policyHalt))._tag).toBe("Invariant")
  })

  it("converged_with_failing_observe_probe_accepted", () => {
    const record = withProbes(stateIn("Soaking"), [
      ["nginx-version", {
        status: "pass",
        mode: "enforce",
        lastObservedAt: secs(10),
        lastPassAt: secs(10),
        failureReason: null
      }],
      [
        "evidence-nis2",
        {
          status: "fail",
          mode: "observe",
          lastObservedAt: secs(10),
          lastPassAt: null,
          failureReason: "evidence verification failed"
        }
      ]
    ])
    expect(right(step(record, converge("target-abc", mins(6)), mins(6), policyHalt)).state.state).toBe("Converged")
  })

  it("converged_with_failing_enforce_probe_rejected", () => {
    const record = withProbes(stateIn("Soaking"), [
      [
        "nginx-version",
        {
          status: "fail",
          mode: "enforce",
          lastObservedAt: secs(10),
          lastPassAt: null,
          failureReason: "502 from upstream"
        }
      ]
    ])
    expect(left(step(record, converge("target-abc", mins(6)), mins(6), policyHalt))._tag).toBe("Invariant")
  })

  it.prop("step_is_deterministic", [seqArb], ([seq]) => {
    const event = LocalActivate.make({
      currentClosureAtDispatch: "prior",
      targetClosure: "target-abc",
      receivedAt: secs(10),
      soakDueAt: mins(5),
      seq
    })
    const a = step(stateIn("Pending"), event, secs(10), policyHalt)
    const b = step(stateIn("Pending"), event, secs(10), policyHalt)
    expect(a).toStrictEqual(b)
    expect(right(a).state.lastEventSeq).toBe(right(b).state.lastEventSeq)
    expect(right(a).effects.length).toBe(right(b).effects.length)
  })

  it.prop(
    "converged_implies_current_eq_target",
    [seqArb, fc.constantFrom("target-abc", "wrong", "also-wrong")],
    ([seq, closure]) => {
      const result = step(stateIn("Soaking"), converge(closure, mins(6), seq), mins(6), policyHalt)
      if (Either.isRight(result) && result.right.state.state === "Converged") {
        expect(result.right.state.currentClosure).toBe(result.right.state.targetClosure)
      } else {
        expect(closure).not.toBe("target-abc")
      }
    }
  )

  it.prop(
    "terminal_states_reject_all_events",
    [fc.constantFrom(...upstreamCatalogue), seqArb],
    ([name, seq]) => {
      for (const state of ["Converged", "Reverted"] as const) {
        expect(left(step(stateIn(state), eventWithSeq(name, seq), secs(10), policyHalt))._tag).toBe("IllegalForState")
      }
    }
  )

  it.prop("last_event_seq_advances_on_success", [seqArb], ([seq]) => {
    const event: LocalEvent = { ...(eventWithSeq("LocalActivate", seq) as LocalEvent) }
    expect(right(step(stateIn("Pending"), event, secs(10), policyHalt)).state.lastEventSeq).toBe(seq)
  })

  it("activation_completed_emits_reset_probe_cache_effect", () => {
    const out = right(
      step(stateIn("Activating"), eventWithSeq("LocalActivationCompleted", 1, secs(5)), secs(5), policyHalt)
    )
    expect(out.effects).toContainEqual({ _tag: "LocalResetProbeCache", rolloutId: "r1" })
  })

  it("rollback_complete_emits_quarantine_on_remote_side", () => {
    const out = right(
      step(stateIn("Failed"), eventWithSeq("RemoteRollbackComplete", 1, secs(135)), secs(135), policyHalt)
    )
    expect(out.effects).toContainEqual({ _tag: "RemoteInsertQuarantine", channel: "stable", closure: "target-abc" })
  })
})
