/**
 * Stop requests (node/Signals.ts): the first SIGTERM or SIGINT completes them, repeats are
 * absorbed, and the listeners stay until the process exits or leave with the scope, as
 * asked. The listeners are called directly rather than through process.kill: the test
 * worker may have its own, which a real signal would run. Real signals reach `run` and
 * `dev` in RunCommand.test.ts and DevCommand.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Scope } from "effect"
import { stopRequests } from "../src/node/Signals.js"

const SIGNALS = ["SIGTERM", "SIGINT"] as const

type Listeners = Record<(typeof SIGNALS)[number], ReadonlyArray<NodeJS.SignalsListener>>

const listeners = (): Listeners => ({
  SIGTERM: process.listeners("SIGTERM"),
  SIGINT: process.listeners("SIGINT")
})

/** The listeners added since `before`, by signal. */
const added = (before: Listeners): Listeners => {
  const now = listeners()
  return {
    SIGTERM: now.SIGTERM.filter((listener) => !before.SIGTERM.includes(listener)),
    SIGINT: now.SIGINT.filter((listener) => !before.SIGINT.includes(listener))
  }
}

describe("stop requests", () => {
  for (const signal of SIGNALS) {
    it.scoped(`${signal} completes them, and repeats are absorbed`, () =>
      Effect.gen(function*() {
        const before = listeners()
        const requested = yield* stopRequests("scope")
        const ours = added(before)
        expect(ours.SIGTERM).toHaveLength(1)
        expect(ours.SIGINT).toHaveLength(1)
        expect(yield* Deferred.isDone(requested)).toBe(false)
        for (let i = 0; i < 3; i++) ours[signal][0]!(signal)
        expect(yield* Deferred.isDone(requested)).toBe(true)
        // The listeners stay for the scope: a repeat still finds one instead of Node's default exit.
        expect(added(before)).toStrictEqual(ours)
      }))
  }

  it.effect("\"scope\": the listeners leave when the scope closes", () =>
    Effect.gen(function*() {
      const before = listeners()
      const scope = yield* Scope.make()
      yield* Scope.extend(stopRequests("scope"), scope)
      expect(added(before).SIGTERM).toHaveLength(1)
      yield* Scope.close(scope, Exit.void)
      expect(added(before)).toStrictEqual({ SIGTERM: [], SIGINT: [] })
    }))

  it.scoped("\"process\": the listeners stay after the request, for the drain and the exit after it", () =>
    Effect.gen(function*() {
      const before = listeners()
      // Asked for in a scope that then closes, as `run` asks before its runtime's scope ends.
      const requested = yield* Effect.scoped(stopRequests("process"))
      const ours = added(before)
      // This test's process goes on: leave it as found.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const signal of SIGNALS) for (const listener of ours[signal]) process.off(signal, listener)
        })
      )
      expect(ours.SIGTERM).toHaveLength(1)
      expect(ours.SIGINT).toHaveLength(1)
      ours.SIGTERM[0]!("SIGTERM")
      ours.SIGINT[0]!("SIGINT")
      expect(yield* Deferred.isDone(requested)).toBe(true)
      expect(added(before)).toStrictEqual(ours)
    }))
})
