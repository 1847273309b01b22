import { describe, expect, it } from "@effect/vitest"
import { AgentEvent, AgentEventEnvelope, AgentEventKinds, ProbeSubResult } from "@nixfleet/proto"
import * as Arbitrary from "effect/Arbitrary"
import { decodeOk, encodeOk, expectRejected, expectRoundTrip, expectTypeRoundTrip, nonObjects } from "./support.js"

const ROLLOUT = "stable@5f2c0e1a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e"
const TARGET = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-web-01-26.05"
const PREVIOUS = "9z8y7x6w5v4s3r2q1p0n9m8l7k6j5i4h-nixos-system-web-01-26.05"

/** One event of every kind, as the reference agent writes them (spec §3.6). */
const events = {
  DispatchAck: {
    kind: "DispatchAck",
    currentClosureAtDispatch: PREVIOUS,
    receivedAt: "2026-05-17T11:50:00Z",
    seq: 1
  },
  ActivationStarted: {
    kind: "ActivationStarted",
    startedAt: "2026-05-17T11:50:03Z",
    switchMethod: "switch-to-configuration",
    seq: 2
  },
  ActivationCompleted: {
    kind: "ActivationCompleted",
    observedCurrentClosure: TARGET,
    exitCode: 0,
    completedAt: "2026-05-17T11:51:10Z",
    seq: 3
  },
  ActivationFailed: {
    kind: "ActivationFailed",
    exitCode: -3,
    stderrTail: `verify mismatch: expected=${TARGET} actual=${PREVIOUS}`,
    failedAt: "2026-05-17T11:51:10.250Z",
    seq: 3
  },
  ActivationDeferred: {
    kind: "ActivationDeferred",
    component: "systemd",
    deferredAt: "2026-05-17T11:51:10Z",
    seq: 3
  },
  ProbeTopologyDeclared: {
    kind: "ProbeTopologyDeclared",
    probes: [
      { probeName: "nginx", kind: "http", mode: "enforce" },
      { probeName: "ssh", kind: "tcp", mode: "observe" },
      { probeName: "legacy", kind: "exec", mode: "disabled" },
      { probeName: "evidence-nis2-essential", kind: "evidence", mode: "enforce" }
    ],
    declaredAt: "2026-05-17T11:51:12Z",
    seq: 4
  },
  ProbeObservedFirst: {
    kind: "ProbeObservedFirst",
    probeName: "nginx",
    mode: "enforce",
    observedAt: "2026-05-17T11:51:15Z",
    seq: 5
  },
  ProbeResult: {
    kind: "ProbeResult",
    probeName: "evidence-nis2-essential",
    mode: "enforce",
    status: "fail",
    observedAt: "2026-05-17T11:51:40Z",
    failureReason: "1 control failing",
    subResults: [
      {
        controlId: "secure-boot",
        status: "fail",
        framework: "nis2-essential",
        article: "art21.i",
        effectiveMode: "enforce"
      }
    ],
    seq: 7
  },
  ProbeFailureFirst: {
    kind: "ProbeFailureFirst",
    probeName: "nginx",
    mode: "enforce",
    firstFailedAt: "2026-05-17T11:52:00Z",
    seq: 9
  },
  Failed: {
    kind: "Failed",
    failedAt: "2026-05-17T11:54:00Z",
    sustainedDurationSecs: 120,
    failingProbes: ["nginx"],
    policyApplied: "rollback-and-halt",
    seq: 12
  },
  RollbackComplete: {
    kind: "RollbackComplete",
    revertedToClosure: PREVIOUS,
    exitCode: 0,
    completedAt: "2026-05-17T11:55:00Z",
    seq: 14
  },
  Converged: {
    kind: "Converged",
    convergedAt: "2026-05-17T12:20:05Z",
    currentClosure: TARGET,
    seq: 30
  }
} as const

const envelope = (event: unknown) => ({ hostname: "web-01", rolloutId: ROLLOUT, event })

describe("AgentEvent", () => {
  it("has exactly the twelve upstream kinds", () => {
    expect([...AgentEventKinds].sort()).toStrictEqual(Object.keys(events).sort())
    expect(AgentEventKinds).toHaveLength(12)
  })

  describe("round-trips every kind, tagged by _tag in memory", () => {
    for (const [kind, json] of Object.entries(events)) {
      it(kind, () => {
        const decoded = expectRoundTrip(AgentEvent, json)
        expect(decoded._tag).toBe(kind)
        expect(decoded).not.toHaveProperty("kind")
        expect(decoded.seq).toBe(json.seq)
      })
    }
  })

  it("decodes timestamps to dates and keeps negative exit codes", () => {
    const failed = decodeOk(AgentEvent, events.ActivationFailed)
    expect(failed).toStrictEqual({
      _tag: "ActivationFailed",
      exitCode: -3,
      stderrTail: events.ActivationFailed.stderrTail,
      failedAt: new Date(Date.UTC(2026, 4, 17, 11, 51, 10, 250)),
      seq: 3
    })
  })

  describe("ProbeResult", () => {
    const base = {
      kind: "ProbeResult",
      probeName: "nginx",
      mode: "enforce",
      status: "pass",
      observedAt: "2026-05-17T11:51:40Z",
      seq: 6
    }

    it("omits failureReason and subResults when absent", () => {
      const decoded = expectRoundTrip(AgentEvent, base)
      expect(decoded).toMatchObject({ failureReason: null, subResults: null })
    })

    it("reads null like absent and then omits the key", () => {
      const decoded = decodeOk(AgentEvent, { ...base, failureReason: null, subResults: null })
      expect(decoded).toMatchObject({ failureReason: null, subResults: null })
      expect(encodeOk(AgentEvent, decoded)).toStrictEqual(base)
    })

    it("keeps a failure reason without sub-results and an empty sub-result list", () => {
      expectRoundTrip(AgentEvent, { ...base, status: "fail", failureReason: "status 502 != expected 200" })
      expectRoundTrip(AgentEvent, { ...base, subResults: [] })
    })

    it("keeps sub-results with and without article and overrideReason", () => {
      const decoded = expectRoundTrip(AgentEvent, {
        ...base,
        mode: "observe",
        status: "fail",
        failureReason: "evidence probe: nis2-essential: at least one enforce-mode control failed",
        subResults: [
          {
            controlId: "access-control",
            status: "pass",
            framework: "nis2-essential",
            article: "art21.i",
            effectiveMode: "enforce"
          },
          {
            controlId: "synthetic",
            status: "fail",
            framework: "custom",
            effectiveMode: "observe",
            overrideReason: "known issue"
          },
          {
            controlId: "secure-boot",
            status: "fail",
            framework: "anssi-bp028",
            effectiveMode: "observe",
            overrideReason: ""
          }
        ]
      })
      expect(decoded._tag === "ProbeResult" && decoded.subResults).toStrictEqual([
        {
          controlId: "access-control",
          status: "pass",
          framework: "nis2-essential",
          article: "art21.i",
          effectiveMode: "enforce",
          overrideReason: null
        },
        {
          controlId: "synthetic",
          status: "fail",
          framework: "custom",
          article: null,
          effectiveMode: "observe",
          overrideReason: "known issue"
        },
        {
          controlId: "secure-boot",
          status: "fail",
          framework: "anssi-bp028",
          article: null,
          effectiveMode: "observe",
          overrideReason: ""
        }
      ])
    })

    it("defaults a missing effectiveMode to enforce and writes it", () => {
      const decoded = decodeOk(ProbeSubResult, { controlId: "c", status: "pass", framework: "f" })
      expect(decoded.effectiveMode).toBe("enforce")
      expect(encodeOk(ProbeSubResult, decoded)).toStrictEqual({
        controlId: "c",
        status: "pass",
        framework: "f",
        effectiveMode: "enforce"
      })
      expectRejected(ProbeSubResult, { controlId: "c", status: "pass", framework: "f", effectiveMode: "permissive" })
    })

    it("refuses statuses and modes outside the lowercase vocabulary", () => {
      expectRejected(AgentEvent, { ...base, status: "unknown" })
      expectRejected(AgentEvent, { ...base, status: "Pass" })
      expectRejected(AgentEvent, { ...base, mode: "Enforce" })
    })
  })

  it("refuses an unknown or mis-cased kind", () => {
    expectRejected(AgentEvent, { ...events.Converged, kind: "DispatchReject" })
    expectRejected(AgentEvent, { ...events.Converged, kind: "converged" })
    expectRejected(AgentEvent, { ...events.ActivationCompleted, kind: "ActivationComplete" })
    const { kind: _kind, ...untagged } = events.Converged
    expectRejected(AgentEvent, untagged)
    expectRejected(AgentEvent, { ...untagged, _tag: "Converged" })
  })

  it("refuses snake_case fields", () => {
    expectRejected(AgentEvent, {
      kind: "DispatchAck",
      current_closure_at_dispatch: PREVIOUS,
      received_at: "2026-05-17T11:50:00Z",
      seq: 1
    })
    expectRejected(AgentEvent, {
      kind: "ActivationFailed",
      exit_code: 1,
      stderr_tail: "",
      failed_at: "2026-05-17T11:51:10Z",
      seq: 3
    })
  })

  it("refuses a policy outside halt / rollback-and-halt", () => {
    expectRejected(AgentEvent, { ...events.Failed, policyApplied: "halt-only" })
    expectRejected(AgentEvent, { ...events.Failed, policyApplied: "RollbackAndHalt" })
    expectRoundTrip(AgentEvent, { ...events.Failed, policyApplied: "halt", failingProbes: [] })
  })

  it("takes seq as a u64 that a JavaScript number holds exactly", () => {
    expectRoundTrip(AgentEvent, { ...events.Converged, seq: 0 })
    expectRoundTrip(AgentEvent, { ...events.Converged, seq: Number.MAX_SAFE_INTEGER })
    expectRejected(AgentEvent, { ...events.Converged, seq: 2 ** 53 })
    expectRejected(AgentEvent, { ...events.Converged, seq: -1 })
    expectRejected(AgentEvent, { ...events.Converged, seq: 1.5 })
    expectRejected(AgentEvent, { ...events.Converged, seq: "1" })
    expectRejected(AgentEvent, { ...events.Converged, seq: Number.NaN })
    expectRejected(AgentEvent, { ...events.Failed, sustainedDurationSecs: -120 })
    expectRejected(AgentEvent, { ...events.Failed, sustainedDurationSecs: 2 ** 53 })
  })

  it("takes exit codes as i32", () => {
    expectRoundTrip(AgentEvent, { ...events.ActivationFailed, exitCode: -(2 ** 31) })
    expectRoundTrip(AgentEvent, { ...events.ActivationFailed, exitCode: 2 ** 31 - 1 })
    expectRejected(AgentEvent, { ...events.ActivationFailed, exitCode: 2 ** 31 })
    expectRejected(AgentEvent, { ...events.ActivationCompleted, exitCode: -(2 ** 31) - 1 })
    expectRejected(AgentEvent, { ...events.RollbackComplete, exitCode: 0.5 })
  })

  it("refuses bad timestamps", () => {
    expectRejected(AgentEvent, { ...events.DispatchAck, receivedAt: "2026-05-17T11:50:00" })
    expectRejected(AgentEvent, { ...events.DispatchAck, receivedAt: "2026-02-30T00:00:00Z" })
    expectRejected(AgentEvent, { ...events.DispatchAck, receivedAt: "2026-05-17T24:00:00Z" })
    expectRejected(AgentEvent, { ...events.DispatchAck, receivedAt: 1747482600 })
  })

  it("refuses non-objects", () => {
    for (const bad of nonObjects) expectRejected(AgentEvent, bad)
  })

  it.prop("round-trips any event from the type side", [Arbitrary.make(AgentEvent)], ([event]) => {
    expectTypeRoundTrip(AgentEvent, event)
    expect(encodeOk(AgentEvent, event).kind).toBe(event._tag)
  })
})

describe("AgentEventEnvelope", () => {
  describe("round-trips an envelope of every kind", () => {
    for (const [kind, event] of Object.entries(events)) {
      it(kind, () => {
        const decoded = expectRoundTrip(AgentEventEnvelope, envelope(event))
        expect(decoded.rolloutId).toBe(ROLLOUT)
        expect(decoded.signature).toBeNull()
      })
    }
  })

  it("keeps a signature when one is sent and reads null as absent", () => {
    expectRoundTrip(AgentEventEnvelope, { ...envelope(events.Converged), signature: "ab".repeat(64) })
    const decoded = decodeOk(AgentEventEnvelope, { ...envelope(events.Converged), signature: null })
    expect(encodeOk(AgentEventEnvelope, decoded)).toStrictEqual(envelope(events.Converged))
  })

  it("refuses the snake_case rollout_id", () => {
    expectRejected(
      AgentEventEnvelope,
      { hostname: "web-01", rollout_id: ROLLOUT, event: events.Converged },
      "rolloutId"
    )
  })

  it("refuses an envelope without event or with a bad event", () => {
    expectRejected(AgentEventEnvelope, { hostname: "web-01", rolloutId: ROLLOUT })
    expectRejected(AgentEventEnvelope, envelope({ ...events.Converged, kind: "Unknown" }))
    expectRejected(AgentEventEnvelope, envelope({ ...events.Converged, seq: -1 }))
  })

  it("ignores unknown fields", () => {
    const decoded = decodeOk(AgentEventEnvelope, {
      ...envelope({ ...events.Converged, extra: 1 }),
      agentVersion: "0.2.0"
    })
    expect(encodeOk(AgentEventEnvelope, decoded)).toStrictEqual(envelope(events.Converged))
  })

  it("refuses non-objects", () => {
    for (const bad of nonObjects) expectRejected(AgentEventEnvelope, bad)
  })

  it.prop("round-trips any envelope from the type side", [Arbitrary.make(AgentEventEnvelope)], ([value]) => {
    expectTypeRoundTrip(AgentEventEnvelope, value)
  })
})
