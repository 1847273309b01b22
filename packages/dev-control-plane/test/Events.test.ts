import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type DevControlPlane, start } from "../src/index.js"
import { closure, envelope, happyPath, iso, postJson, request } from "./support.js"

const TARGET = closure("web-01-new")
const PREVIOUS = closure("web-01-old")

const setup = (
  options: { readonly soakMinutes?: number; readonly onHealthFailure?: "halt" | "rollback-and-halt" } = {}
) =>
  Effect.gen(function*() {
    const cp = yield* start()
    const { rolloutId, soakDueAt } = yield* cp.publishRollout({
      channel: "stable",
      hosts: [{ hostname: "web-01", targetClosure: TARGET }],
      ...options
    })
    const record = Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/web-01`))
    const post = (event: Record<string, unknown>, hostname = "web-01", id = rolloutId) =>
      Effect.flatMap(postJson(`${cp.url}/v1/agent/events`, envelope(hostname, id, event)), (response) => {
        expect(response.status, response.text).toBe(204)
        return Effect.void
      })
    return { cp, rolloutId, soakDueAt, record, post }
  })

const eventsUrl = (cp: DevControlPlane) => `${cp.url}/v1/agent/events`

describe("events", () => {
  it.scopedLive("the Local-equivalent sequence drives the record to Converged through step()", () =>
    Effect.gen(function*() {
      const { cp, post, record, rolloutId } = yield* setup()
      const at = new Date()
      const [ack, started, completed, converged] = happyPath(TARGET, PREVIOUS, at)
      yield* post(ack!)
      expect(yield* record).toMatchObject({ state: "Activating", currentClosureAtDispatch: PREVIOUS, lastEventSeq: 1 })
      yield* post(started!)
      expect((yield* record)?.activationStartedAt?.getTime()).toBe(at.getTime())
      yield* post(completed!)
      expect(yield* record).toMatchObject({ state: "Soaking", currentClosure: TARGET, lastEventSeq: 3 })
      yield* post(converged!)
      expect(yield* record).toMatchObject({ state: "Converged", lastEventSeq: 4 })

      const accepted = yield* cp.events
      expect(accepted.map((e) => e.duplicate)).toEqual([false, false, false, false])
      expect(accepted[0]?.envelope).toEqual(envelope("web-01", rolloutId, ack!))
      expect(accepted.every((e) => e.receivedAt instanceof Date)).toBe(true)
      const log = JSON.parse((yield* request(`${cp.url}/v1/operator/log`)).text)
      expect(log.transitions.map((t: { to: string }) => t.to)).toEqual(["Activating", "Soaking", "Converged"])
      expect(log.events.map((e: { event: { kind: string } }) => e.event.kind)).toEqual([
        "DispatchAck",
        "ActivationStarted",
        "ActivationCompleted",
        "Converged"
      ])
    }))

  it.scopedLive("deduplicates on seq ≤ lastEventSeq: 204, recorded as duplicate, not applied", () =>
    Effect.gen(function*() {
      const { cp, post, record } = yield* setup()
      const [ack, started] = happyPath(TARGET, PREVIOUS, new Date())
      yield* post(ack!)
      yield* post(ack!)
      yield* post(started!)
      // A different event reusing an old seq is a duplicate too.
      yield* post({ ...started!, seq: 2, startedAt: iso(new Date(0)) })
      yield* post({ ...ack!, seq: 1 })
      expect((yield* cp.events).map((e) => e.duplicate)).toEqual([false, true, false, true, true])
      expect(yield* record).toMatchObject({ state: "Activating", lastEventSeq: 2 })
      expect((yield* record)?.activationStartedAt?.getTime()).not.toBe(0)
    }))

  it.scopedLive("RollbackComplete after Failed reverts the record and quarantines the bad target", () =>
    Effect.gen(function*() {
      const { cp, post, record } = yield* setup()
      const at = new Date()
      const [ack, started, completed] = happyPath(TARGET, PREVIOUS, at)
      yield* post(ack!)
      yield* post(started!)
      yield* post(completed!)
      yield* post({
        kind: "Failed",
        failedAt: iso(at),
        sustainedDurationSecs: 120,
        failingProbes: ["nginx"],
        policyApplied: "rollback-and-halt",
        seq: 6
      })
      expect(yield* record).toMatchObject({ state: "Failed", policyApplied: "rollback-and-halt", lastEventSeq: 6 })
      expect(yield* cp.quarantined).toEqual([])
      yield* post({ kind: "RollbackComplete", revertedToClosure: PREVIOUS, exitCode: 0, completedAt: iso(at), seq: 7 })
      expect(yield* record).toMatchObject({ state: "Reverted", revertedTo: PREVIOUS, currentClosure: PREVIOUS })
      expect(yield* cp.quarantined).toEqual([{ channel: "stable", closure: TARGET }])
      const operator = JSON.parse((yield* request(`${cp.url}/v1/operator/quarantine`)).text)
      expect(operator).toEqual([{ channel: "stable", closure: TARGET }])
    }))

  it.scopedLive("ActivationFailed takes the rollout policy's onHealthFailure", () =>
    Effect.gen(function*() {
      const { post, record } = yield* setup({ onHealthFailure: "halt" })
      const [ack] = happyPath(TARGET, PREVIOUS, new Date())
      yield* post(ack!)
      yield* post({
        kind: "ActivationFailed",
        exitCode: -3,
        stderrTail: "verify mismatch",
        failedAt: iso(new Date()),
        seq: 2
      })
      expect(yield* record).toMatchObject({ state: "Failed", policyApplied: "halt" })
    }))

  it.scopedLive("illegal transitions, failed invariants and unknown records are dropped silently (204)", () =>
    Effect.gen(function*() {
      const { cp, post, record, rolloutId } = yield* setup({ soakMinutes: 60 })
      const at = new Date()
      const [ack, started, completed, converged] = happyPath(TARGET, PREVIOUS, at)
      // Illegal in Pending.
      yield* post(completed!)
      expect(yield* record).toMatchObject({ state: "Pending", lastEventSeq: 0 })
      yield* post(ack!)
      yield* post(started!)
      yield* post(completed!)
      // Converged before soak_due_at (60 minutes away) violates an invariant.
      yield* post(converged!)
      expect(yield* record).toMatchObject({ state: "Soaking", lastEventSeq: 3 })
      // Converged on the wrong closure.
      yield* post({
        kind: "Converged",
        convergedAt: iso(new Date(at.getTime() + 7200_000)),
        currentClosure: PREVIOUS,
        seq: 5
      })
      expect(yield* record).toMatchObject({ state: "Soaking", lastEventSeq: 3 })
      // Unknown host and unknown rollout.
      yield* post(ack!, "web-99")
      yield* post(ack!, "web-01", "stable@0123")
      const accepted = yield* cp.events
      expect(accepted.length).toBe(8)
      expect(accepted.every((e) => !e.duplicate)).toBe(true)
      expect((yield* cp.hostStates).size).toBe(1)
      expect(rolloutId).toMatch(/^stable@/)
    }))

  it.scopedLive("refuses a body without a JSON content type (415), bad JSON (400), a wrong shape (422)", () =>
    Effect.gen(function*() {
      const { cp, rolloutId } = yield* setup()
      const [ack] = happyPath(TARGET, PREVIOUS, new Date())
      const good = JSON.stringify(envelope("web-01", rolloutId, ack!))
      const send = (body: string, contentType?: string) =>
        Effect.map(
          request(eventsUrl(cp), {
            method: "POST",
            headers: contentType === undefined ? {} : { "content-type": contentType },
            body
          }),
          (response) => response.status
        )
      expect(yield* send(good)).toBe(415)
      expect(yield* send(good, "text/plain")).toBe(415)
      expect(yield* send("{\"hostname\":", "application/json")).toBe(400)
      expect(yield* send("", "application/json")).toBe(400)
      expect(yield* send("\uFEFF" + good, "application/json")).toBe(400)
      expect(yield* send(JSON.stringify({ hostname: "web-01", rolloutId }), "application/json")).toBe(422)
      expect(
        yield* send(JSON.stringify(envelope("web-01", rolloutId, { ...ack!, kind: "Dispatched" })), "application/json")
      )
        .toBe(422)
      expect(yield* send(JSON.stringify(envelope("web-01", rolloutId, { ...ack!, seq: -1 })), "application/json"))
        .toBe(422)
      expect(yield* send(JSON.stringify({ pad: "x".repeat(3 * 1024 * 1024) }), "application/json")).toBe(413)
      expect((yield* cp.events).length).toBe(0)
      // Parameters and +json subtypes are JSON, as axum reads them; unknown fields are ignored.
      expect(yield* send(good, "application/json; charset=utf-8")).toBe(204)
      const extra = JSON.stringify({ ...envelope("web-01", rolloutId, { ...ack!, extra: true }), future: 1 })
      expect(yield* send(extra, "application/vnd.nixfleet+json")).toBe(204)
      expect((yield* cp.events).map((e) => e.duplicate)).toEqual([false, true])
    }))

  it.scopedLive("over plain HTTP, a declared machine id must match the body (403)", () =>
    Effect.gen(function*() {
      const { cp, rolloutId } = yield* setup()
      const [ack] = happyPath(TARGET, PREVIOUS, new Date())
      const response = yield* postJson(eventsUrl(cp), envelope("web-01", rolloutId, ack!), {
        headers: { "x-nixfleet-machine-id": "web-02" }
      })
      expect(response.status).toBe(403)
      expect((yield* cp.events).length).toBe(0)
    }))
})
