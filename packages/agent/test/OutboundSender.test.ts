import { describe, expect, it } from "@effect/vitest"
import { AgentEvent } from "@nixfleet/proto"
import { Effect, FiberRef, HashSet, Layer, Logger, Metric, Ref, Schema } from "effect"
import { AgentConfig } from "../src/config/AgentConfig.js"
import { ControlPlaneClient, ControlPlaneTransport } from "../src/controlplane/ControlPlaneClient.js"
import { deliveryBlocked } from "../src/controlplane/OutboundSender.js"
import { classify } from "../src/controlplane/OutboundSender.js"
import * as OutboundSender from "../src/controlplane/OutboundSender.js"
import { Outbox } from "../src/outbox/Outbox.js"
import { Shutdown } from "../src/runtime/Shutdown.js"
import { StatusBoard } from "../src/runtime/StatusBoard.js"
import { type Answer, fakeControlPlane, type RecordedRequest } from "./support/fakeControlPlane.js"
import { testConfig } from "./support/fixtures.js"
import { MemoryOutboxHandle, memoryOutboxLayer } from "./support/memoryOutbox.js"

const event = (seq: number): AgentEvent => ({
  _tag: "ProbeResult",
  probeName: "nginx",
  mode: "enforce",
  status: "pass",
  observedAt: new Date("2026-05-17T12:00:00Z"),
  failureReason: null,
  subResults: null,
  seq
})

const enqueue = (seq: number, rolloutId = "stable@abc123") =>
  Effect.flatMap(
    Outbox,
    (outbox) => outbox.enqueue({ rolloutId, seq, hostname: "web-01", durable: true, event: event(seq) })
  )

/** The sender against a scripted control plane; runs `body` with the fake's handle. */
const withSender = <A, E>(
  script: (request: RecordedRequest, index: number) => Answer,
  body: (
    fake: Effect.Effect.Success<ReturnType<typeof fakeControlPlane>>
  ) => Effect.Effect<A, E, Outbox | MemoryOutboxHandle | StatusBoard>
) =>
  Effect.gen(function*() {
    const fake = yield* fakeControlPlane(script)
    const layer = OutboundSender.layer.pipe(
      Layer.provide(ControlPlaneClient.layer),
      Layer.provide(ControlPlaneTransport.layer),
      Layer.provideMerge(memoryOutboxLayer),
      Layer.provide(Shutdown.layer),
      Layer.provideMerge(StatusBoard.layer),
      Layer.provideMerge(AgentConfig.make(testConfig({ controlPlaneUrl: `${fake.url}/` })))
    )
    return yield* Effect.provide(body(fake), layer)
  })

/** Every log line of the test (`LEVEL message`), through a logger added beside the default one. */
const captured = Effect.gen(function*() {
  const lines: Array<string> = []
  yield* Effect.locallyScopedWith(
    FiberRef.currentLoggers,
    HashSet.add(Logger.make(({ logLevel, message }) => {
      lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
    }))
  )
  return () => [...lines]
})

const until = <R>(condition: Effect.Effect<boolean, never, R>) =>
  Effect.gen(function*() {
    while (!(yield* condition)) yield* Effect.sleep("10 millis")
  })

const pending = Effect.flatMap(Outbox, (outbox) => Effect.orDie(outbox.pendingCount()))
const seqs = (requests: ReadonlyArray<RecordedRequest>) => requests.map((r) => JSON.parse(r.body).event.seq as number)

const gauge = (status: number) =>
  Effect.map(Metric.value(Metric.tagged(deliveryBlocked, "status", String(status))), (state) => state.value)
const blockedOnBoard = Effect.flatMap(StatusBoard, (board) => Ref.get(board.deliveryBlocked))

describe("classify", () => {
  it("sorts answers into delivered, retry, blocked and dead-letter", () => {
    expect([200, 202, 204].map(classify)).toStrictEqual(["delivered", "delivered", "delivered"])
    expect([404, 405, 408, 409, 429, 500, 502, 503].map(classify)).toStrictEqual(
      Array.from({ length: 8 }, () => "retry")
    )
    // The agent's identity or protocol, not the event: hold and retry.
    expect([401, 403, 426].map(classify)).toStrictEqual(["blocked", "blocked", "blocked"])
    // Only answers that condemn the body itself dead-letter it.
    expect([400, 413, 415, 422].map(classify)).toStrictEqual(Array.from({ length: 4 }, () => "dead-letter"))
  })
})

describe("OutboundSender", () => {
  it.scopedLive("delivers rows in insertion order as the upstream envelope, with the protocol header", () =>
    withSender(() => ({ status: 204 }), (fake) =>
      Effect.gen(function*() {
        yield* enqueue(2, "stable@bbb")
        yield* enqueue(1, "stable@aaa")
        yield* enqueue(3, "stable@bbb")
        yield* until(Effect.map(pending, (n) => n === 0))
        const requests = fake.requests()
        expect(seqs(requests)).toStrictEqual([2, 1, 3])
        const first = requests[0]!
        expect(first.method).toBe("POST")
        expect(first.url).toBe("/v1/agent/events")
        expect(first.headers["x-nixfleet-protocol"]).toBe("1")
        expect(first.headers["content-type"]).toContain("application/json")
        const envelope = JSON.parse(first.body)
        expect(Object.keys(envelope)).toStrictEqual(["hostname", "rolloutId", "event"])
        expect(envelope).toMatchObject({ hostname: "web-01", rolloutId: "stable@bbb" })
        expect(envelope.event).toStrictEqual(Schema.encodeSync(AgentEvent)(event(2)))
      })))

  it.scopedLive("a row refused with 400 is dead-lettered and the rows after it still go out", () =>
    withSender(
      (request) =>
        JSON.parse(request.body).event.seq === 2 ? { status: 400, body: "{\"error\":\"bad kind\"}" } : { status: 204 },
      (fake) =>
        Effect.gen(function*() {
          for (const seq of [1, 2, 3]) yield* enqueue(seq)
          yield* until(Effect.map(pending, (n) => n === 0))
          expect(seqs(fake.requests())).toStrictEqual([1, 2, 3])
          const dead = yield* Effect.flatMap(MemoryOutboxHandle, (h) => Ref.get(h.dead))
          expect(dead).toHaveLength(1)
          expect(dead[0]).toMatchObject({ seq: 2, status: 400, reason: "HTTP 400: {\"error\":\"bad kind\"}" })
        })
    ))

  it.scopedLive(
    "a 503 is retried with backoff and the row is delivered once",
    () =>
      withSender((_, index) => index === 0 ? { status: 503 } : { status: 204 }, (fake) =>
        Effect.gen(function*() {
          yield* enqueue(1)
          yield* enqueue(2)
          yield* until(Effect.map(pending, (n) => n === 0))
          expect(seqs(fake.requests())).toStrictEqual([1, 1, 2])
        })),
    10_000
  )

  it.scopedLive(
    "401 and 403 hold the queue in order, never dead-letter; one line per change of the block, board and gauge agree",
    () =>
      Effect.gen(function*() {
        const logs = yield* captured
        yield* withSender(
          (_, index) =>
            index < 2
              ? { status: 401, body: "{\"error\":\"certificate revoked\"}" }
              : index === 2
              ? { status: 403 }
              : { status: 204 },
          (fake) =>
            Effect.gen(function*() {
              yield* enqueue(1)
              yield* enqueue(2)
              yield* until(Effect.sync(() => fake.requests().length >= 1))
              yield* until(Effect.map(blockedOnBoard, (blocked) => blocked !== null))
              expect(yield* blockedOnBoard).toMatchObject({
                status: 401,
                url: `${fake.url}/v1/agent/events`,
                reason: "{\"error\":\"certificate revoked\"}"
              })
              expect(yield* gauge(401)).toBe(1)
              expect(yield* gauge(403)).toBe(0)
              yield* until(Effect.map(pending, (n) => n === 0))
              // The head row is retried until accepted; the row behind it waits its turn.
              expect(seqs(fake.requests())).toStrictEqual([1, 1, 1, 1, 2])
              expect(yield* Effect.flatMap(MemoryOutboxHandle, (h) => Ref.get(h.dead))).toStrictEqual([])
              expect(yield* blockedOnBoard).toBeNull()
              expect([yield* gauge(401), yield* gauge(403), yield* gauge(426)]).toStrictEqual([0, 0, 0])
              const changes = logs().filter((line) => line.includes("delivery "))
              expect(changes).toStrictEqual([
                `ERROR delivery blocked: 401 from ${fake.url}/v1/agent/events`,
                `ERROR delivery blocked: 403 from ${fake.url}/v1/agent/events`,
                `INFO delivery unblocked: ${fake.url}/v1/agent/events accepts this agent's events again`
              ])
              // Tries while blocked are not warnings: the block has its own line.
              expect(logs().filter((line) => line.startsWith("WARN event delivery failed"))).toStrictEqual([])
            })
        )
      }),
    20_000
  )

  it.scopedLive("an enqueue wakes the sender at once", () =>
    withSender(() => ({ status: 204 }), (fake) =>
      Effect.gen(function*() {
        yield* Effect.sleep("100 millis")
        const start = Date.now()
        yield* enqueue(1)
        yield* until(Effect.map(pending, (n) => n === 0))
        expect(fake.requests()).toHaveLength(1)
        // Not at the 15 s safety tick (room for a loaded machine).
        expect(Date.now() - start).toBeLessThan(10_000)
      })))

  it.scopedLive(
    "a control plane that is down keeps the events; they go out once it answers",
    () =>
      withSender((_, index) => index < 2 ? { status: 502 } : { status: 204 }, (fake) =>
        Effect.gen(function*() {
          yield* enqueue(1)
          yield* enqueue(2)
          yield* until(Effect.sync(() => fake.requests().length >= 2))
          expect(yield* pending).toBe(2)
          yield* until(Effect.map(pending, (n) => n === 0))
          expect(seqs(fake.requests())).toStrictEqual([1, 1, 1, 2])
        })),
    15_000
  )
})
