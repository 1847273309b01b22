/**
 * `untilShutdown`, the one stop loop of every worker: a stop request ends the wait for the
 * next item and the pause between rounds at once, never the item in hand.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Option, TestClock } from "effect"
import { requestShutdown, Shutdown, untilShutdown } from "../src/runtime/Shutdown.js"

/** Lets the forked loop run until it waits (on the test clock or a latch). */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

describe("untilShutdown", () => {
  it.effect("pauses after each item for what the handler returned", () =>
    Effect.gen(function*() {
      const rounds: Array<number> = []
      const loop = yield* Effect.fork(
        untilShutdown(
          Effect.void,
          () => Effect.sync(() => rounds.push(rounds.length)).pipe(Effect.as(Duration.minutes(rounds.length + 1))),
          { pause: Effect.sleep }
        )
      )
      yield* settle
      expect(rounds).toStrictEqual([0])
      // The first pause is 1 minute, the second 2.
      yield* TestClock.adjust("59 seconds")
      expect(rounds).toStrictEqual([0])
      yield* TestClock.adjust("1 second")
      expect(rounds).toStrictEqual([0, 1])
      yield* TestClock.adjust("1 minute")
      expect(rounds).toStrictEqual([0, 1])
      yield* TestClock.adjust("1 minute")
      expect(rounds).toStrictEqual([0, 1, 2])
      yield* requestShutdown
      yield* Fiber.join(loop)
    }).pipe(Effect.provide(Shutdown.layer)))

  it.effect("a stop request ends a pause at once", () =>
    Effect.gen(function*() {
      let rounds = 0
      const loop = yield* Effect.fork(
        untilShutdown(Effect.void, () => Effect.sync(() => rounds++), { pause: () => Effect.sleep("1 hour") })
      )
      yield* settle
      yield* requestShutdown
      // The test clock never moves: the loop ends only because the pause did.
      yield* Fiber.join(loop)
      expect(rounds).toBe(1)
    }).pipe(Effect.provide(Shutdown.layer)))

  it.effect("a stop request ends the wait for the next item, and no item is taken after it", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      const loop = yield* Effect.fork(
        untilShutdown(Effect.as(Effect.sleep("1 hour"), "late"), (item) => Effect.sync(() => handled.push(item)))
      )
      yield* settle
      yield* requestShutdown
      yield* Fiber.join(loop)
      yield* TestClock.adjust("2 hours")
      expect(handled).toStrictEqual([])
    }).pipe(Effect.provide(Shutdown.layer)))

  it.effect("the item in hand is finished, then the loop ends", () =>
    Effect.gen(function*() {
      const inHand = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const done: Array<string> = []
      const loop = yield* Effect.fork(
        untilShutdown(
          Effect.succeed("row"),
          (item) =>
            Deferred.succeed(inHand, undefined).pipe(
              Effect.zipRight(Deferred.await(release)),
              Effect.zipRight(Effect.sync(() => done.push(item)))
            ),
          // A pause that never ends on its own: only the stop request ends it.
          { pause: () => Effect.never }
        )
      )
      yield* Deferred.await(inHand)
      yield* requestShutdown
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(loop)
      expect(done).toStrictEqual(["row"])
    }).pipe(Effect.provide(Shutdown.layer)))

  it.effect("a ready item is handled without waiting for next", () =>
    Effect.gen(function*() {
      const items = ["a", "b"]
      const handled: Array<string> = []
      const loop = yield* Effect.fork(
        untilShutdown(
          Effect.never,
          (item: string) => Effect.sync(() => handled.push(item)),
          { ready: Effect.sync(() => Option.fromNullable(items.shift())) }
        )
      )
      yield* settle
      expect(handled).toStrictEqual(["a", "b"])
      yield* requestShutdown
      yield* Fiber.join(loop)
    }).pipe(Effect.provide(Shutdown.layer)))
})
