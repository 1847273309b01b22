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
 * Runs `handle` on every item `next` yields until shutdown, with `pause` (when given) after
 * each. Waiting for the next item and pausing are interrupted by shutdown; an item being
 * handled is finished (the drain deadline of the caller bounds it). A worker whose whole
 * round must end at shutdown makes the round its `next` and handles nothing.
 *
 * @since 0.1.0
 */
export const untilShutdown = <A, B, E1, E2, R, R2, R3 = never>(
  next: Effect.Effect<A, E1, R>,
  handle: (item: A) => Effect.Effect<B, E2, R2>,
  options: {
    /** An item available at once, so that a busy loop does not pay for a race per item. */
    readonly ready?: Effect.Effect<Option.Option<A>, never, R>
    /** A wait after each handled item, from what `handle` returned (a poll interval, a wake-up). */
    readonly pause?: (handled: B) => Effect.Effect<void, never, R3>
  } = {}
): Effect.Effect<void, E1 | E2, R | R2 | R3 | Shutdown> =>
  Effect.gen(function*() {
    const shutdown = yield* Shutdown
    const orStop = <X, E, RX>(effect: Effect.Effect<X, E, RX>) =>
      Effect.raceFirst(Effect.asSome(effect), Effect.as(Deferred.await(shutdown), Option.none<X>()))
    const ready = options.ready ?? Effect.succeedNone
    while (!(yield* Deferred.isDone(shutdown))) {
      const available = yield* ready
      const item = Option.isSome(available) ? available : yield* orStop(next)
      if (Option.isNone(item)) return
      const handled = yield* handle(item.value)
      if (options.pause !== undefined && Option.isNone(yield* orStop(options.pause(handled)))) return
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
): Effect.Effect<void, E, R | Shutdown> => untilShutdown(Queue.take(queue), handle, { ready: Queue.poll(queue) })

/**
 * A shutdown not yet asked for: `Shutdown.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = Shutdown.layer
