/**
 * A stop request from outside: SIGTERM (systemd, a supervisor) or SIGINT (a terminal).
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"

const STOP_SIGNALS = ["SIGTERM", "SIGINT"] as const

/**
 * A Deferred completed by the first SIGTERM or SIGINT. Every repeat is absorbed while the
 * listeners are in place, instead of Node's default action (an exit at once): a second
 * signal must not cut a drain short.
 *
 * `"process"` keeps the listeners until the process exits, for a command that is the
 * process's only one (the exit after the drain is then protected too); `"scope"` removes
 * them when the current scope closes.
 *
 * @internal
 */
export function stopRequests(listeners: "process"): Effect.Effect<Deferred.Deferred<void>>
export function stopRequests(listeners: "scope"): Effect.Effect<Deferred.Deferred<void>, never, Scope.Scope>
export function stopRequests(
  listeners: "process" | "scope"
): Effect.Effect<Deferred.Deferred<void>, never, Scope.Scope> {
  return Effect.gen(function*() {
    const requested = yield* Deferred.make<void>()
    const onSignal = () => {
      Deferred.unsafeDone(requested, Exit.void)
    }
    const listen = Effect.sync(() => {
      for (const signal of STOP_SIGNALS) process.on(signal, onSignal)
    })
    if (listeners === "process") yield* listen
    else {
      yield* Effect.acquireRelease(listen, () =>
        Effect.sync(() => {
          for (const signal of STOP_SIGNALS) process.off(signal, onSignal)
        }))
    }
    return requested
  })
}
