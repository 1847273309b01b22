import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { NOT_READY_BODY, start } from "../src/index.js"
import { closure, JSON_HEADERS, postJson, request } from "./support.js"

const publishOne = { channel: "stable", hosts: [{ hostname: "web-01", targetClosure: closure("web-01") }] }

describe("readiness gate", () => {
  it.scopedLive("answers every /v1 route 503 with Retry-After and the exact body until the first publish", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      for (
        const [method, path] of [
          ["POST", "/v1/agent/heartbeat"],
          ["GET", "/v1/agent/dispatch?wait=0"],
          ["POST", "/v1/agent/events"],
          ["GET", "/v1/fleet.resolved"],
          ["GET", "/v1/rollouts/stable@abc"],
          ["GET", "/v1/no-such-route"]
        ] as const
      ) {
        const response = yield* request(`${cp.url}${path}`, { method, headers: JSON_HEADERS })
        expect(response.status, path).toBe(503)
        expect(response.headers["retry-after"]).toBe("30")
        expect(response.headers["content-type"]).toBe("application/json")
        expect(response.text).toBe(NOT_READY_BODY)
      }
      expect(NOT_READY_BODY).toBe(
        "{\"error\":\"control plane not ready\",\"reason\":\"awaiting first signed artifact\"}"
      )
      const health = yield* request(`${cp.url}/healthz`)
      expect(health.status).toBe(200)
    }))

  it.scopedLive("is checked before the protocol header", () =>
    Effect.gen(function*() {
      const cp = yield* start({ strictProtocol: true })
      const response = yield* request(`${cp.url}/v1/agent/dispatch?wait=0`, {
        headers: { "x-nixfleet-protocol": "banana" }
      })
      expect(response.status).toBe(503)
    }))

  it.scopedLive("opens with the first publish; setReady forces it either way", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.publishRollout(publishOne)
      const open = yield* request(`${cp.url}/v1/fleet.resolved`)
      expect(open.status).toBe(200)

      yield* cp.setReady(false)
      expect((yield* request(`${cp.url}/v1/fleet.resolved`)).status).toBe(503)
      // A forced gate stays shut across publishes.
      yield* cp.publishRollout(publishOne)
      expect((yield* request(`${cp.url}/v1/fleet.resolved`)).status).toBe(503)
      expect((yield* request(`${cp.url}/healthz`)).status).toBe(200)

      yield* cp.setReady(true)
      expect((yield* request(`${cp.url}/v1/fleet.resolved`)).status).toBe(200)
    }))

  it.scopedLive("forced open before any publish, fleet.resolved and its signature are still 503", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      const fleet = yield* request(`${cp.url}/v1/fleet.resolved`)
      expect(fleet.status).toBe(503)
      expect(fleet.text).not.toBe(NOT_READY_BODY)
      expect((yield* request(`${cp.url}/v1/fleet.resolved/sig`)).status).toBe(503)
      // The gate itself is open: dispatch answers.
      expect((yield* request(`${cp.url}/v1/agent/dispatch?wait=0`)).status).toBe(204)
    }))
})

describe("protocol header", () => {
  const statusFor = (strict: boolean, header: string | undefined) =>
    Effect.gen(function*() {
      const cp = yield* start({ strictProtocol: strict })
      yield* cp.setReady(true)
      const response = yield* request(`${cp.url}/v1/agent/dispatch?wait=0`, {
        headers: header === undefined ? {} : { "x-nixfleet-protocol": header }
      })
      return response.status
    })

  it.scopedLive("accepts an absent header unless strict", () =>
    Effect.gen(function*() {
      expect(yield* statusFor(false, undefined)).toBe(204)
      expect(yield* statusFor(true, undefined)).toBe(400)
      expect(yield* statusFor(true, "1")).toBe(204)
    }))

  it.scopedLive("answers 400 for a value that is not a base-10 u32 and 426 for another major", () =>
    Effect.gen(function*() {
      for (const bad of ["banana", "", "1.0", "-1", "0x1", "4294967296"]) {
        expect(yield* statusFor(false, bad), JSON.stringify(bad)).toBe(400)
      }
      for (const other of ["0", "2", "4294967295", "+2"]) {
        expect(yield* statusFor(false, other), other).toBe(426)
      }
      expect(yield* statusFor(false, "+1")).toBe(204)
    }))

  it.scopedLive("is checked before the route, after readiness", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      const unknown = yield* request(`${cp.url}/v1/nothing-here`, { headers: { "x-nixfleet-protocol": "7" } })
      expect(unknown.status).toBe(426)
      const wrongMethod = yield* request(`${cp.url}/v1/agent/heartbeat`, { headers: { "x-nixfleet-protocol": "1" } })
      expect(wrongMethod.status).toBe(405)
      const events = yield* postJson(`${cp.url}/v1/agent/events`, {}, { headers: { "x-nixfleet-protocol": "x" } })
      expect(events.status).toBe(400)
    }))
})
