import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { start } from "../src/index.js"
import { isLoopback } from "../src/OperatorApi.js"
import { closure, envelope, happyPath, postJson, request } from "./support.js"

describe("operator API", () => {
  it.scopedLive("publishes from JSON (dates as RFC 3339) before the gate opens, without protocol header", () =>
    Effect.gen(function*() {
      const cp = yield* start({ strictProtocol: true })
      const signedAt = "2026-05-01T00:00:00Z"
      const response = yield* request(`${cp.url}/v1/operator/rollouts`, {
        method: "POST",
        body: JSON.stringify({
          channel: "stable",
          hosts: [{ hostname: "web-01", targetClosure: closure("web-01") }],
          onHealthFailure: "halt",
          soakMinutes: 0.05,
          signedAt,
          dispatch: false
        })
      })
      expect(response.status, response.text).toBe(200)
      const body = JSON.parse(response.text)
      expect(body.rolloutId).toMatch(/^stable@[0-9a-f]{40}$/)
      const soakMs = new Date(body.soakDueAt).getTime() - Date.now()
      expect(soakMs).toBeGreaterThan(0)
      expect(soakMs).toBeLessThanOrEqual(3_000)

      const hosts = JSON.parse((yield* request(`${cp.url}/v1/operator/hosts`)).text)
      expect(Object.keys(hosts)).toEqual([`${body.rolloutId}/web-01`])
      expect(hosts[`${body.rolloutId}/web-01`]).toMatchObject({
        state: "Pending",
        targetClosure: closure("web-01"),
        soakDueAt: body.soakDueAt,
        lastEventSeq: 0,
        probes: {}
      })
      const manifest = JSON.parse(
        (yield* request(`${cp.url}/v1/rollouts/${body.rolloutId}`, { headers: { "x-nixfleet-protocol": "1" } })).text
      )
      expect(manifest.meta.signedAt).toBe(signedAt)
    }))

  it.scopedLive("shows accepted events and quarantined closures", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const target = closure("web-01")
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: "web-01", targetClosure: target }]
      })
      const [ack] = happyPath(target, closure("old"), new Date())
      for (let i = 0; i < 2; i++) {
        expect((yield* postJson(`${cp.url}/v1/agent/events`, envelope("web-01", rolloutId, ack!))).status).toBe(204)
      }
      const events = JSON.parse((yield* request(`${cp.url}/v1/operator/events`)).text)
      expect(events.map((e: { duplicate: boolean }) => e.duplicate)).toEqual([false, true])
      expect(events[0].envelope).toEqual(envelope("web-01", rolloutId, ack!))
      expect(typeof events[0].receivedAt).toBe("string")
      expect(JSON.parse((yield* request(`${cp.url}/v1/operator/quarantine`)).text)).toEqual([])
    }))

  it.scopedLive("refuses bad JSON (400), invalid rollouts (422), wrong methods (405), unknown paths (404)", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const publish = (body: string) =>
        Effect.map(request(`${cp.url}/v1/operator/rollouts`, { method: "POST", body }), (r) => r.status)
      expect(yield* publish("{")).toBe(400)
      expect(yield* publish(JSON.stringify({ channel: "Bad Channel", hosts: [] }))).toBe(422)
      expect(
        yield* publish(
          JSON.stringify({
            channel: "ok",
            hosts: [{ hostname: "a", targetClosure: "x" }, { hostname: "a", targetClosure: "y" }]
          })
        )
      ).toBe(422)
      expect(yield* publish(JSON.stringify({ channel: "ok", hosts: [], soakMinutes: -1 }))).toBe(422)
      expect(yield* publish(JSON.stringify({ channel: "ok", hosts: [], signedAt: "yesterday" }))).toBe(422)
      expect((yield* request(`${cp.url}/v1/operator/rollouts`)).status).toBe(405)
      expect((yield* request(`${cp.url}/v1/operator/hosts`, { method: "DELETE" })).status).toBe(405)
      expect((yield* request(`${cp.url}/v1/operator/nothing`)).status).toBe(404)
      // Nothing was published.
      expect((yield* request(`${cp.url}/v1/fleet.resolved`)).status).toBe(503)
    }))

  it("answers loopback clients only", () => {
    for (const address of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) expect(isLoopback(address)).toBe(true)
    for (const address of ["10.0.0.1", "::ffff:10.0.0.1", "", "fe80::1", "1127.0.0.1"]) {
      expect(isLoopback(address), address).toBe(false)
    }
  })

  it.scopedLive("publishRollout dies for an invalid rollout", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const exit = yield* Effect.exit(cp.publishRollout({ channel: "UPPER", hosts: [] }))
      expect(exit._tag).toBe("Failure")
      const endless = yield* Effect.exit(cp.publishRollout({ channel: "ok", hosts: [], soakMinutes: 1e12 }))
      expect(endless._tag).toBe("Failure")
      const undated = yield* Effect.exit(
        cp.publishRollout({ channel: "ok", hosts: [], signedAt: new Date(Number.NaN) })
      )
      expect(undated._tag).toBe("Failure")
      expect((yield* cp.hostStates).size).toBe(0)
    }))
})
