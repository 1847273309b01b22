import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Ref, TestClock } from "effect"
import { StatusError, TransportError } from "../src/controlplane/ControlPlaneClient.js"
import { retryControlPlane } from "../src/controlplane/retry.js"

describe("retryControlPlane", () => {
  it.effect("waits out a 503's Retry-After before trying again", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const call = Effect.flatMap(Ref.updateAndGet(calls, (n) => n + 1), (n) =>
        n === 1
          ? Effect.fail(
            new StatusError({ request: "GET /v1/agent/dispatch", status: 503, retryAfterSecs: 30, body: "" })
          )
          : Effect.succeed("ok"))
      const fiber = yield* Effect.fork(retryControlPlane("dispatch", call))
      yield* TestClock.adjust("29 seconds")
      expect(yield* Ref.get(calls)).toBe(1)
      yield* TestClock.adjust("35 seconds")
      expect(yield* Fiber.join(fiber)).toBe("ok")
      expect(yield* Ref.get(calls)).toBe(2)
    }))

  it.effect("backs off exponentially, capped at about a minute, and never gives up", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const call = Effect.flatMap(Ref.updateAndGet(calls, (n) => n + 1), (n) =>
        n < 12 ? Effect.fail(new TransportError({ request: "x", detail: "connection refused" })) : Effect.succeed(n))
      const fiber = yield* Effect.fork(retryControlPlane("x", call))
      // 1 + 2 + 4 + 8 + 16 + 32 s (jittered ±20 %): six retries within about 76 s.
      yield* TestClock.adjust("76 seconds")
      const early = yield* Ref.get(calls)
      expect(early).toBeGreaterThanOrEqual(6)
      expect(early).toBeLessThanOrEqual(8)
      // Then at most one a minute (72 s with jitter).
      yield* TestClock.adjust("10 minutes")
      expect(yield* Fiber.join(fiber)).toBe(12)
    }))
})
