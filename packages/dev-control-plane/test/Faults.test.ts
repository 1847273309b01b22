import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import { type DevControlPlane, GARBAGE_BODY, oversizedBody, start } from "../src/index.js"
import { closure, envelope, happyPath, postJson, request } from "./support.js"

const ready = Effect.gen(function*() {
  const cp = yield* start()
  const { rolloutId } = yield* cp.publishRollout({
    channel: "stable",
    hosts: [{ hostname: "web-01", targetClosure: closure("web-01") }]
  })
  return { cp, rolloutId }
})

const heartbeat = (cp: DevControlPlane) =>
  postJson(`${cp.url}/v1/agent/heartbeat`, { hostname: "web-01", at: new Date().toISOString() })

/** Counts the bytes of a streamed answer without keeping them. */
const countBytes = (url: string) =>
  Effect.async<{ status: number; bytes: number; chunked: boolean }, Error>((resume) => {
    Http.get(url, (response) => {
      let bytes = 0
      response.on("data", (chunk: Buffer) => {
        bytes += chunk.length
      })
      response.on("end", () =>
        resume(Effect.succeed({
          status: response.statusCode ?? 0,
          bytes,
          chunked: response.headers["transfer-encoding"] === "chunked"
        })))
      response.on("error", (error) => resume(Effect.fail(error)))
    }).on("error", (error) => resume(Effect.fail(error)))
  })

describe("fault injection", () => {
  it.scopedLive("Status answers the given status, body and headers until cleared", () =>
    Effect.gen(function*() {
      const { cp } = yield* ready
      yield* cp.setFault("heartbeat", {
        _tag: "Status",
        status: 503,
        body: "{\"error\":\"busy\"}",
        headers: { "Retry-After": "5" }
      })
      const faulted = yield* heartbeat(cp)
      expect(faulted.status).toBe(503)
      expect(faulted.text).toBe("{\"error\":\"busy\"}")
      expect(faulted.headers["retry-after"]).toBe("5")
      expect(faulted.headers["content-type"]).toBe("application/json")
      expect((yield* heartbeat(cp)).status).toBe(503)
      // Other routes are untouched.
      expect((yield* request(`${cp.url}/v1/fleet.resolved`)).status).toBe(200)
      yield* cp.setFault("heartbeat", undefined)
      expect((yield* heartbeat(cp)).status).toBe(200)
    }))

  it.scopedLive("a faulted events route does not ingest the event", () =>
    Effect.gen(function*() {
      const { cp, rolloutId } = yield* ready
      yield* cp.setFault("events", { _tag: "Status", status: 500 })
      const [ack] = happyPath(closure("web-01"), "", new Date())
      const response = yield* postJson(`${cp.url}/v1/agent/events`, envelope("web-01", rolloutId, ack!))
      expect(response.status).toBe(500)
      expect(response.body.length).toBe(0)
      expect(yield* cp.events).toEqual([])
      expect((yield* cp.hostStates).get(`${rolloutId}/web-01`)?.state).toBe("Pending")
    }))

  it.scopedLive("Garbage answers 200 with a body that is not JSON, on the document and its signature", () =>
    Effect.gen(function*() {
      const { cp, rolloutId } = yield* ready
      yield* cp.setFault("rollout", { _tag: "Garbage" })
      for (const path of [`/v1/rollouts/${rolloutId}`, `/v1/rollouts/${rolloutId}/sig`]) {
        const response = yield* request(`${cp.url}${path}`)
        expect(response.status).toBe(200)
        expect(response.text).toBe(GARBAGE_BODY)
        expect(() => JSON.parse(response.text)).toThrow()
      }
      yield* cp.setFault("dispatch", { _tag: "Garbage" })
      expect((yield* request(`${cp.url}/v1/agent/dispatch?wait=0`)).text).toBe(GARBAGE_BODY)
    }))

  it.scopedLive("Oversized streams exactly the requested number of bytes, chunked", () =>
    Effect.gen(function*() {
      const { cp } = yield* ready
      const bytes = 50 * 1024 * 1024
      yield* cp.setFault("fleet", { _tag: "Oversized", bytes })
      const answer = yield* countBytes(`${cp.url}/v1/fleet.resolved`)
      expect(answer).toEqual({ status: 200, bytes, chunked: true })
    }), { timeout: 30_000 })

  it.effect("the oversized body looks like JSON and has the exact size", () =>
    Effect.gen(function*() {
      const text = (size: number) =>
        Effect.map(
          Stream.runCollect(oversizedBody(size)),
          (chunks) => Buffer.concat(Chunk.toReadonlyArray(chunks)).toString("utf8")
        )
      const small = yield* text(100)
      expect(small.length).toBe(100)
      expect(JSON.parse(small).padding).toMatch(/^a+$/)
      expect((yield* text(200_000)).length).toBe(200_000)
      expect(yield* text(5)).toBe("aaaaa")
      expect(yield* text(0)).toBe("")
    }))

  it.scopedLive("setFault dies for a fault that cannot be served", () =>
    Effect.gen(function*() {
      const { cp } = yield* ready
      for (
        const fault of [
          { _tag: "Status", status: 42 },
          { _tag: "Status", status: 200.5 },
          { _tag: "Oversized", bytes: -1 },
          { _tag: "Oversized", bytes: Number.POSITIVE_INFINITY }
        ] as const
      ) {
        expect(Exit.isFailure(yield* Effect.exit(cp.setFault("fleet", fault))), JSON.stringify(fault)).toBe(true)
      }
      expect((yield* request(`${cp.url}/v1/fleet.resolved`)).status).toBe(200)
    }))

  it.scopedLive("Hang never answers; the client gives up, and a cleared fault answers again", () =>
    Effect.gen(function*() {
      const { cp } = yield* ready
      yield* cp.setFault("heartbeat", { _tag: "Hang" })
      const started = Date.now()
      const hung = yield* Effect.either(
        postJson(`${cp.url}/v1/agent/heartbeat`, { hostname: "web-01", at: new Date().toISOString() }, {
          timeoutMs: 500
        })
      )
      expect(hung._tag).toBe("Left")
      expect(Date.now() - started).toBeGreaterThanOrEqual(450)
      yield* cp.setFault("heartbeat", undefined)
      expect((yield* heartbeat(cp)).status).toBe(200)
    }))

  it.scopedLive("closing the scope ends hung requests and parked polls", () =>
    Effect.gen(function*() {
      const outcome = yield* Effect.scoped(Effect.gen(function*() {
        const { cp } = yield* ready
        yield* cp.setFault("heartbeat", { _tag: "Hang" })
        const hung = yield* Effect.fork(Effect.either(heartbeat(cp)))
        const parked = yield* Effect.fork(
          Effect.either(request(`${cp.url}/v1/agent/dispatch?wait=60`, { headers: { "x-nixfleet-machine-id": "x" } }))
        )
        yield* Effect.sleep("200 millis")
        return { hung, parked }
      }))
      const started = Date.now()
      const [hung, parked] = yield* Effect.all([outcome.hung.await, outcome.parked.await])
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(hung._tag).toBe("Success")
      expect(parked._tag).toBe("Success")
    }))
})
