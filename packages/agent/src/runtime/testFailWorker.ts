/**
 * A test hook, off unless `NIXFLEET_AGENT_TEST_FAIL_WORKER=<worker>[:<seconds>]` is set: the
 * named supervised worker dies that many seconds after the process started, as a worker hit
 * by a bug would, and the supervisor stops the agent (`run` exits 70). It goes through the
 * `WorkerHook` seam, so a test's own hook still wraps every worker. The delay counts from
 * the process's start, not from a file in the state directory: every run of the process
 * has the same few seconds of life, which lets a restarted agent make progress (the systemd
 * test's rollout resumes and converges across the restarts) and leaves nothing behind.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { FAIL_WORKER, failWorkerGate } from "../config/testGates.js"
import { WorkerHook } from "./Workers.js"

/**
 * The current `WorkerHook`, wrapped so that the worker the gate names dies on time; the
 * hook as it is when the gate is off. Fails with a `ConfigError` naming the key on a value
 * that is not a gate value.
 *
 * @internal
 */
export const layer = Layer.effect(
  WorkerHook,
  Effect.gen(function*() {
    const outer = yield* WorkerHook
    const gate = yield* failWorkerGate
    if (gate === null) return outer
    const started = (yield* Clock.currentTimeMillis) - process.uptime() * 1000
    const dies = Effect.gen(function*() {
      const left = started + gate.afterSeconds * 1000 - (yield* Clock.currentTimeMillis)
      if (left > 0) yield* Effect.sleep(left)
      return yield* Effect.dieMessage(`test hook ${FAIL_WORKER}: ${gate.worker} dies now`)
    })
    return <E, R>(worker: string, effect: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> =>
      outer(worker, worker === gate.worker ? Effect.raceFirst(effect, dies) : effect)
  })
)
