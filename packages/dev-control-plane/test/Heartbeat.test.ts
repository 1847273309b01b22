import { describe, expect, it } from "@effect/vitest"
import { HeartbeatResponse } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { type DevControlPlane, start } from "../src/index.js"
import { closure, envelope, happyPath, iso, postJson, request } from "./support.js"

const TARGET = closure("web-01-new")
const PREVIOUS = closure("web-01-old")

const heartbeat = (cp: DevControlPlane, body: Record<string, unknown>) =>
  Effect.map(postJson(`${cp.url}/v1/agent/heartbeat`, body), (response) => {
    expect(response.status, response.text).toBe(200)
    return { raw: JSON.parse(response.text), headers: response.headers }
  })

const post = (cp: DevControlPlane, rolloutId: string, event: Record<string, unknown>) =>
  Effect.map(postJson(`${cp.url}/v1/agent/events`, envelope("web-01", rolloutId, event)), (response) => {
    expect(response.status).toBe(204)
  })

const publish = (cp: DevControlPlane, soakMinutes = 0) =>
  cp.publishRollout({ channel: "stable", hosts: [{ hostname: "web-01", targetClosure: TARGET }], soakMinutes })

const recordOf = (cp: DevControlPlane, rolloutId: string) =>
  Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/web-01`))

describe("heartbeat", () => {
  it.scopedLive("echoes at as received_at and omits bootstrap_rollouts when the host has no active record", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* publish(cp)
      const { raw } = yield* heartbeat(cp, { hostname: "db-07", at: "2026-05-17T12:00:00.250+02:00" })
      expect(raw).toEqual({ received_at: "2026-05-17T10:00:00.250Z" })
    }))

  it.scopedLive("lists the host's non-terminal records as camelCase snapshots, ordered by rollout id", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const ids = [
        (yield* publish(cp)).rolloutId,
        (yield* publish(cp)).rolloutId,
        (yield* publish(cp)).rolloutId,
        (yield* publish(cp)).rolloutId
      ]
      const [converging, failing, pending, reverting] = ids as [string, string, string, string]
      const at = new Date()
      for (const event of happyPath(TARGET, PREVIOUS, at)) yield* post(cp, converging, event)
      for (const id of [failing, reverting]) {
        yield* post(cp, id, happyPath(TARGET, PREVIOUS, at)[0]!)
        yield* post(cp, id, { kind: "ActivationFailed", exitCode: 1, stderrTail: "x", failedAt: iso(at), seq: 2 })
      }
      yield* post(cp, reverting, {
        kind: "RollbackComplete",
        revertedToClosure: PREVIOUS,
        exitCode: 0,
        completedAt: iso(at),
        seq: 3
      })

      const { raw } = yield* heartbeat(cp, { hostname: "web-01", current_closure: PREVIOUS, at: iso(at) })
      const snapshots = raw.bootstrap_rollouts as Array<Record<string, unknown>>
      expect(snapshots.map((s) => s.rolloutId)).toEqual([failing, pending].sort())
      const pendingSnapshot = snapshots.find((s) => s.rolloutId === pending)
      expect(Object.keys(pendingSnapshot ?? {}).sort()).toEqual([
        "channel",
        "dispatchedAt",
        "hostname",
        "lastEventSeq",
        "rolloutId",
        "soakDueAt",
        "state",
        "targetClosure"
      ])
      expect(pendingSnapshot).toMatchObject({ state: "Pending", lastEventSeq: 0, targetClosure: TARGET })
      expect(snapshots.find((s) => s.rolloutId === failing)).toMatchObject({
        state: "Failed",
        currentClosureAtDispatch: PREVIOUS,
        lastEventSeq: 2
      })
      // The response decodes with the proto schema.
      expect(Schema.decodeUnknownSync(HeartbeatResponse)(raw).bootstrapRollouts.length).toBe(2)
      // Nothing was synthesised: the host does not run any target.
      expect((yield* recordOf(cp, pending))?.state).toBe("Pending")
    }))

  it.scopedLive("Activating with current == target: synthesised ActivationCompleted (seq + 1) → Soaking", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const { rolloutId } = yield* publish(cp)
      const [ack, started] = happyPath(TARGET, PREVIOUS, new Date())
      yield* post(cp, rolloutId, ack!)
      yield* post(cp, rolloutId, started!)
      const at = new Date(Date.now() + 5_000)
      const { raw } = yield* heartbeat(cp, { hostname: "web-01", current_closure: TARGET, at: iso(at) })
      expect(raw.bootstrap_rollouts).toEqual([
        expect.objectContaining({
          rolloutId,
          state: "Soaking",
          currentClosure: TARGET,
          activationCompletedAt: iso(at),
          lastEventSeq: 3
        })
      ])
      expect(yield* recordOf(cp, rolloutId)).toMatchObject({ state: "Soaking", lastEventSeq: 3 })
      const log = JSON.parse((yield* request(`${cp.url}/v1/operator/log`)).text)
      expect(log.events.at(-1)).toMatchObject({ source: "heartbeat", event: { kind: "ActivationCompleted", seq: 3 } })
    }))

  it.scopedLive("Deferred with current == target: → Soaking after the reboot", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const { rolloutId } = yield* publish(cp)
      const [ack] = happyPath(TARGET, PREVIOUS, new Date())
      yield* post(cp, rolloutId, ack!)
      yield* post(cp, rolloutId, {
        kind: "ActivationDeferred",
        component: "kernel",
        deferredAt: iso(new Date()),
        seq: 4
      })
      expect((yield* recordOf(cp, rolloutId))?.state).toBe("Deferred")
      // Not running the target yet: nothing happens.
      yield* heartbeat(cp, { hostname: "web-01", current_closure: PREVIOUS, at: iso(new Date()) })
      expect((yield* recordOf(cp, rolloutId))?.state).toBe("Deferred")
      yield* heartbeat(cp, { hostname: "web-01", current_closure: TARGET, at: iso(new Date()) })
      expect(yield* recordOf(cp, rolloutId)).toMatchObject({ state: "Soaking", lastEventSeq: 5 })
    }))

  it.scopedLive("Pending with current == target: DispatchAck(\"\"), ActivationCompleted, Converged at max(at, soakDueAt)", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const soaking = yield* publish(cp, 10)
      const at = new Date()
      const { raw } = yield* heartbeat(cp, { hostname: "web-01", current_closure: TARGET, at: iso(at) })
      expect(raw.bootstrap_rollouts).toBeUndefined()
      const record = yield* recordOf(cp, soaking.rolloutId)
      expect(record).toMatchObject({
        state: "Converged",
        currentClosureAtDispatch: "",
        currentClosure: TARGET,
        lastEventSeq: 3
      })
      expect(record?.dispatchAckedAt?.getTime()).toBe(at.getTime())
      expect(record?.convergedAt?.getTime()).toBe(soaking.soakDueAt.getTime())

      const due = yield* publish(cp, 0)
      const later = new Date(Date.now() + 60_000)
      yield* heartbeat(cp, { hostname: "web-01", current_closure: TARGET, at: iso(later) })
      expect((yield* recordOf(cp, due.rolloutId))?.convergedAt?.getTime()).toBe(later.getTime())
      const log = JSON.parse((yield* request(`${cp.url}/v1/operator/log`)).text)
      expect(log.transitions.map((t: { to: string }) => t.to)).toEqual([
        "Activating",
        "Soaking",
        "Converged",
        "Activating",
        "Soaking",
        "Converged"
      ])
      expect(log.lastHeartbeatAt).toEqual({ "web-01": iso(later) })
    }))

  it.scopedLive("with rollout_id: no snapshots, and X-Nixfleet-Replay-From when the record's closure differs", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const { rolloutId } = yield* publish(cp)
      const [ack] = happyPath(TARGET, PREVIOUS, new Date())
      yield* post(cp, rolloutId, { ...ack!, seq: 4 })
      const at = iso(new Date())
      const differs = yield* heartbeat(cp, { hostname: "web-01", rollout_id: rolloutId, current_closure: PREVIOUS, at })
      expect(differs.raw).toEqual({ received_at: at })
      expect(differs.headers["x-nixfleet-replay-from"]).toBe("4")
      const noClosure = yield* heartbeat(cp, { hostname: "web-01", rollout_id: rolloutId, at })
      expect(noClosure.headers["x-nixfleet-replay-from"]).toBeUndefined()
      const unknown = yield* heartbeat(cp, {
        hostname: "web-01",
        rollout_id: "stable@00",
        current_closure: PREVIOUS,
        at
      })
      expect(unknown.headers["x-nixfleet-replay-from"]).toBeUndefined()
    }))

  it.scopedLive("refuses bad bodies like axum: 415, 400, 422", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* publish(cp)
      const url = `${cp.url}/v1/agent/heartbeat`
      const body = JSON.stringify({ hostname: "web-01", at: "2026-05-17T12:00:00Z" })
      expect((yield* request(url, { method: "POST", body })).status).toBe(415)
      expect(
        (yield* request(url, { method: "POST", body: "{", headers: { "content-type": "application/json" } })).status
      )
        .toBe(400)
      expect((yield* postJson(url, { hostname: "web-01" })).status).toBe(422)
      expect((yield* postJson(url, { hostname: "web-01", at: "yesterday" })).status).toBe(422)
      expect((yield* postJson(url, [1, 2])).status).toBe(422)
    }))
})
