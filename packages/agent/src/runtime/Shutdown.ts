/**
 * The agent's stop signal: a `Deferred<void>` that the CLI completes on SIGTERM or SIGINT
 * (the library never installs signal handlers). Every loop stops taking new work once it
 * is done; the runtime's scope then closes and interrupts what is left.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"

/**
 * @since 0.1.0
 */
export class Shutdown extends Context.Tag("@nixfleet/agent/Shutdown")<Shutdown, Deferred.Deferred<void>>() {
  static readonly layer = Layer.effect(Shutdown, Deferred.make<void>())
}

/**
 * Asks the agent to stop.
 *
 * @since 0.1.0
 */
export const requestShutdown = Effect.flatMap(Shutdown, (deferred) => Deferred.succeed(deferred, undefined))

/**
 * Runs `handle` on every item `next` yields until shutdown. Waiting for the next item is
 * interrupted by shutdown; an item being handled is finished (the drain deadline of the
 * caller bounds it). `ready`, when given, returns an item that is available at once, so a
 * busy loop does not pay for a race per item.
 *
 * @since 0.1.0
 */
export const untilShutdown = <A, E, R, R2>(
  next: Effect.Effect<A, never, R>,
  handle: (item: A) => Effect.Effect<void, E, R2>,
  ready: Effect.Effect<Option.Option<A>, never, R> = Effect.succeedNone
): Effect.Effect<void, E, R | R2 | Shutdown> =>
  Effect.gen(function*() {
    const shutdown = yield* Shutdown
    while (!(yield* Deferred.isDone(shutdown))) {
      const available = yield* ready
      const item = Option.isSome(available) ? available : yield* Effect.raceFirst(
        Effect.map(next, Option.some),
        Effect.as(Deferred.await(shutdown), Option.none<A>())
      )
      if (Option.isNone(item)) return
      yield* handle(item.value)
    }
  })

/**
 * `untilShutdown` over a queue.
 *
 * @since 0.1.0
 */
export const drainUntilShutdown = <A, E, R>(
  queue: Queue.Dequeue<A>,
  handle: (item: A) => Effect.Effect<void, E, R>
): Effect.Effect<void, E, R | Shutdown> => untilShutdown(Queue.take(queue), handle, Queue.poll(queue))
