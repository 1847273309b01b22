/**
 * Outbound payloads to and from the wire `AgentEvent` (spec/state-machine.md §5), and the
 * upstream `agent_event.rs` tests of §7.5.
 */
import { describe, expect, it } from "@effect/vitest"
import { AgentEventEnvelope } from "@nixfleet/proto"
import {
  type EventName,
  EventNames,
  outboundPayload,
  payloadFromWire,
  payloadToWire,
  remoteEventFromWire,
  remoteMirror
} from "@nixfleet/state-machine"
import * as Arbitraries from "@nixfleet/state-machine/testing"
import { Either, Schema } from "effect"
import { eventWithSeq, secs } from "./fixtures.js"

const wire = (name: EventName) => Either.getOrThrow(payloadToWire(outboundPayload(eventWithSeq(name, 42, secs(10)))))

describe("wire conversions", () => {
  it("each Local event's payload is the upstream kind with camelCase keys", () => {
    expect(wire("LocalActivate")).toStrictEqual({
      kind: "DispatchAck",
      currentClosureAtDispatch: "prior",
      receivedAt: "2026-05-16T01:00:10Z",
      seq: 42
    })
    expect(wire("LocalProbeResult")).toStrictEqual({
      kind: "ProbeResult",
      probeName: "p",
      mode: "enforce",
      status: "pass",
      observedAt: "2026-05-16T01:00:10Z",
      seq: 42
    })
    expect(wire("LocalSustainedFailureCrossed")).toStrictEqual({
      kind: "Failed",
      failedAt: "2026-05-16T01:00:10Z",
      sustainedDurationSecs: 60,
      failingProbes: ["p"],
      policyApplied: "halt",
      seq: 42
    })
    expect(wire("LocalRollbackCompleted")).toMatchObject({ kind: "RollbackComplete", revertedToClosure: "prior" })
    expect(wire("LocalConvergedReached")).toMatchObject({ kind: "Converged", currentClosure: "target-abc" })
  })

  it("every Local event maps to a distinct kind, and its Remote mirror to the same kind", () => {
    const locals = EventNames.filter((name) => name.startsWith("Local"))
    const kinds = locals.map((name) => outboundPayload(eventWithSeq(name, 1))._tag)
    expect(new Set(kinds).size).toBe(12)
    const remoteNames = locals.map((name) => remoteMirror(eventWithSeq(name, 1))._tag)
    expect(new Set(remoteNames)).toStrictEqual(new Set(EventNames.filter((name) => name.startsWith("Remote"))))
  })

  it("an inbound wire event becomes its Remote event with the same fields (§5.1)", () => {
    const payload = Either.getOrThrow(
      payloadFromWire({
        kind: "ProbeResult",
        probeName: "evidence",
        mode: "observe",
        status: "fail",
        observedAt: "2026-05-17T11:51:40Z",
        subResults: [{ controlId: "c", status: "fail", framework: "nis2", article: "21(b)" }],
        seq: 7
      })
    )
    expect(remoteEventFromWire(payload)).toStrictEqual({
      _tag: "RemoteProbeResult",
      probeName: "evidence",
      mode: "observe",
      status: "fail",
      observedAt: new Date("2026-05-17T11:51:40Z"),
      failureReason: null,
      subResults: [{
        controlId: "c",
        status: "fail",
        framework: "nis2",
        article: "21(b)",
        effectiveMode: "enforce",
        overrideReason: null
      }],
      seq: 7
    })
  })

  it.prop("a Local event's payload survives the wire unchanged", [Arbitraries.localEvent()], ([event]) => {
    const payload = outboundPayload(event)
    const json = JSON.parse(JSON.stringify(Either.getOrThrow(payloadToWire(payload))))
    expect(Either.getOrThrow(payloadFromWire(json))).toStrictEqual(payload)
    expect(remoteEventFromWire(payload)).toStrictEqual(remoteMirror(event))
  })

  it("malformed wire input is a ParseError on the left, never a throw", () => {
    for (
      const input of [null, 42, "x", {}, { kind: "DispatchAck" }, { kind: "Nope", seq: 1 }, {
        kind: "Converged",
        seq: -1
      }]
    ) {
      const result = payloadFromWire(input)
      expect(Either.isLeft(result) && result.left._tag).toBe("ParseError")
    }
  })
})

describe("agent_event.rs", () => {
  it("the envelope writes rolloutId, never rollout_id", () => {
    const json = JSON.stringify(
      Schema.encodeSync(AgentEventEnvelope)({
        hostname: "web-01",
        rolloutId: "stable@abc",
        event: outboundPayload(eventWithSeq("LocalActivate", 1)),
        signature: null
      })
    )
    expect(json).toContain("\"rolloutId\"")
    expect(json).not.toContain("rollout_id")
    expect(json).not.toContain("signature")
  })

  it("all 12 variants survive a serialise/parse round trip, including sub-results", () => {
    for (const name of EventNames.filter((n) => n.startsWith("Local"))) {
      const base = outboundPayload(eventWithSeq(name, 3))
      const payload = base._tag === "ProbeResult"
        ? {
          ...base,
          failureReason: "down",
          subResults: [{
            controlId: "c",
            status: "pass" as const,
            framework: "f",
            article: null,
            effectiveMode: "observe" as const,
            overrideReason: ""
          }]
        }
        : base
      const text = JSON.stringify(Either.getOrThrow(payloadToWire(payload)))
      expect(Either.getOrThrow(payloadFromWire(JSON.parse(text))), name).toStrictEqual(payload)
    }
  })

  it("statuses and policies use their wire spellings", () => {
    const fail = outboundPayload({ ...eventWithSeq("LocalProbeResult", 1), status: "fail" } as never)
    expect(JSON.stringify(Either.getOrThrow(payloadToWire(fail)))).toContain("\"status\":\"fail\"")
    expect(JSON.stringify(wire("LocalProbeResult"))).toContain("\"status\":\"pass\"")
    expect(JSON.stringify(wire("LocalSustainedFailureCrossed"))).toContain("\"policyApplied\":\"halt\"")
    const rollback = outboundPayload(
      eventWithSeq("LocalSustainedFailureCrossed", 1, secs(1), { policyApplied: "rollback-and-halt" })
    )
    expect(JSON.stringify(Either.getOrThrow(payloadToWire(rollback)))).toContain(
      "\"policyApplied\":\"rollback-and-halt\""
    )
  })

  it("the seq of every variant is readable", () => {
    expect(outboundPayload(eventWithSeq("LocalActivate", 42)).seq).toBe(42)
    for (const name of EventNames) expect(wire(name.startsWith("Local") ? name : "LocalActivate").seq).toBe(42)
  })
})
