import { describe, expect, it } from "@effect/vitest"
import { DispatchResponse } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type DevControlPlane, MACHINE_ID_HEADER, start } from "../src/index.js"
import { parseWait } from "../src/Routes.js"
import { closure, postJson, request } from "./support.js"

const poll = (cp: DevControlPlane, host: string, wait?: string) =>
  request(`${cp.url}/v1/agent/dispatch${wait === undefined ? "" : `?wait=${wait}`}`, {
    headers: { "x-nixfleet-protocol": "1", [MACHINE_ID_HEADER]: host }
  })

const raw = (hostname: string, rolloutId: string) => ({
  hostname,
  rollout_id: rolloutId,
  target_closure: closure(hostname),
  soak_due_at: "2026-05-17T12:20:00Z",
  enqueued_at: "2026-05-17T11:50:00Z"
})

describe("dispatch long-poll", () => {
  it.scopedLive("delivers the publish's dispatch once, snake_case, then 204", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const before = Date.now()
      const { rolloutId, soakDueAt } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [
          { hostname: "web-01", targetClosure: closure("web-01") },
          { hostname: "web-02", targetClosure: closure("web-02") }
        ],
        soakMinutes: 2
      })
      const first = yield* poll(cp, "web-01", "0")
      expect(first.status).toBe(200)
      expect(first.headers["content-type"]).toBe("application/json")
      const body = JSON.parse(first.text)
      expect(Object.keys(body).sort()).toEqual([
        "enqueued_at",
        "hostname",
        "rollout_id",
        "soak_due_at",
        "target_closure"
      ])
      const dispatch = Schema.decodeUnknownSync(DispatchResponse)(body)
      expect(dispatch).toMatchObject({ hostname: "web-01", rolloutId, targetClosure: closure("web-01") })
      expect(dispatch.soakDueAt.getTime()).toBe(soakDueAt.getTime())
      expect(dispatch.soakDueAt.getTime() - dispatch.enqueuedAt.getTime()).toBe(120_000)
      expect(dispatch.enqueuedAt.getTime()).toBeGreaterThanOrEqual(before - 1)
      // Popped: not delivered again; the other host's dispatch is still there.
      expect((yield* poll(cp, "web-01", "0")).status).toBe(204)
      expect((yield* poll(cp, "web-02", "0")).status).toBe(200)
      expect((yield* poll(cp, "web-02", "0")).status).toBe(204)
    }))

  it.scopedLive("is a per-host FIFO of raw dispatches, delivered whatever their fields", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      yield* cp.queueDispatch("web-01", raw("someone-else", "stable@01"))
      yield* cp.queueDispatch("web-01", { ...raw("web-01", "stable@02"), target_closure: "../../etc/passwd" })
      yield* cp.queueDispatch("web-02", raw("web-02", "stable@03"))
      const a = JSON.parse((yield* poll(cp, "web-01", "0")).text)
      const b = JSON.parse((yield* poll(cp, "web-01", "0")).text)
      expect([a.rollout_id, a.hostname]).toEqual(["stable@01", "someone-else"])
      expect([b.rollout_id, b.target_closure]).toEqual(["stable@02", "../../etc/passwd"])
      expect(JSON.parse((yield* poll(cp, "web-02", "0")).text).rollout_id).toBe("stable@03")
    }))

  it.scopedLive("parks until an enqueue for the host, and ignores enqueues for others", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      const started = Date.now()
      const parked = yield* Effect.fork(poll(cp, "web-01", "60"))
      yield* Effect.sleep("200 millis")
      yield* cp.queueDispatch("web-02", raw("web-02", "stable@0a"))
      yield* Effect.sleep("200 millis")
      expect(Option.isNone(yield* Fiber.poll(parked))).toBe(true)
      yield* cp.queueDispatch("web-01", raw("web-01", "stable@0b"))
      const answer = yield* Fiber.join(parked)
      expect(answer.status).toBe(200)
      expect(JSON.parse(answer.text).rollout_id).toBe("stable@0b")
      // Woken, well before the 60 s window ends (room for a loaded machine).
      expect(Date.now() - started).toBeLessThan(30_000)
      // The other host's dispatch was not consumed by the wake-up.
      expect((yield* poll(cp, "web-02", "0")).status).toBe(200)
    }))

  it.scopedLive("answers 204 when the window elapses without work", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      const started = Date.now()
      const answer = yield* poll(cp, "web-01", "1")
      const elapsed = Date.now() - started
      expect(answer.status).toBe(204)
      expect(answer.body.length).toBe(0)
      expect(elapsed).toBeGreaterThanOrEqual(950)
      expect(elapsed).toBeLessThan(10_000)
    }))

  it.scopedLive("refuses a wait that is not a u64 with 400", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      for (const bad of ["abc", "-1", "1.5", "", "18446744073709551616"]) {
        expect((yield* poll(cp, "web-01", bad)).status, bad).toBe(400)
      }
      // A huge but valid wait is clamped, not refused: a queued dispatch still comes at once.
      yield* cp.queueDispatch("web-01", raw("web-01", "stable@0c"))
      expect((yield* poll(cp, "web-01", "18446744073709551615")).status).toBe(200)
    }))

  it("clamps wait to 60 seconds and defaults to 60", () => {
    expect(parseWait(null)).toBe(60)
    expect(parseWait("0")).toBe(0)
    expect(parseWait("59")).toBe(59)
    expect(parseWait("60")).toBe(60)
    expect(parseWait("3600")).toBe(60)
    expect(parseWait("+5")).toBe(5)
    expect(parseWait("x")).toBeNull()
  })

  it.scopedLive("dispatch: false opens the records without queueing", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: "web-01", targetClosure: closure("web-01") }],
        dispatch: false
      })
      expect((yield* poll(cp, "web-01", "0")).status).toBe(204)
      expect((yield* cp.hostStates).get(`${rolloutId}/web-01`)?.state).toBe("Pending")
    }))

  it.scopedLive("a parked anonymous poll is served once a heartbeat names its host", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      yield* cp.queueDispatch("web-01", raw("web-01", "stable@0e"))
      const parked = yield* Effect.fork(
        request(`${cp.url}/v1/agent/dispatch?wait=10`, { headers: { "x-nixfleet-protocol": "1" } })
      )
      yield* Effect.sleep("200 millis")
      expect(Option.isNone(yield* Fiber.poll(parked))).toBe(true)
      yield* postJson(`${cp.url}/v1/agent/heartbeat`, { hostname: "web-01", at: new Date().toISOString() })
      const answer = yield* Fiber.join(parked)
      expect(answer.status).toBe(200)
      expect(JSON.parse(answer.text).rollout_id).toBe("stable@0e")
    }))

  it.scopedLive("over plain HTTP without the header, serves the host of the last heartbeat", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      yield* cp.queueDispatch("web-01", raw("web-01", "stable@0d"))
      const anonymous = (wait: string) =>
        request(`${cp.url}/v1/agent/dispatch?wait=${wait}`, { headers: { "x-nixfleet-protocol": "1" } })
      expect((yield* anonymous("0")).status).toBe(204)
      const heartbeat = yield* postJson(`${cp.url}/v1/agent/heartbeat`, {
        hostname: "web-01",
        at: new Date().toISOString()
      })
      expect(heartbeat.status).toBe(200)
      const answer = yield* anonymous("0")
      expect(answer.status).toBe(200)
      expect(JSON.parse(answer.text).rollout_id).toBe("stable@0d")
    }))
})
