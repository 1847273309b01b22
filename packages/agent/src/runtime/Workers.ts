/**
 * The runtime's supervised set of workers. Every long-running fiber of the runtime (the
 * reducer, the activation worker, the sender, the long-poll, …) is forked through it under
 * a name. A worker that dies (a defect, a typed failure it did not handle) or returns while
 * no shutdown was asked for is a fault: it is logged once at ERROR with its name and cause,
 * counted, kept on the status board, and the runtime is asked to stop; `runUntilShutdown`
 * then fails with `WorkerFailed` and `run` exits 70 (EX_SOFTWARE), so that systemd's
 * `Restart=always` starts a whole agent again. No fault is restarted in place: every loop
 * already retries what is transient (the control plane, the disk), so what reaches the
 * supervisor is a bug, and a fresh process on the durable state is the known-good state.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import { Shutdown } from "./Shutdown.js"
import { StatusBoard } from "./StatusBoard.js"
import type { WorkerFault } from "./StatusBoard.js"

/**
 * Faults of supervised workers, by `worker`: each one ends the agent.
 *
 * @since 0.1.0
 */
export const workerFaults = Metric.counter("nixfleet_agent_worker_faults_total", {
  description: "Supervised workers that died or ended unexpectedly, by worker (each one stops the agent)",
  incremental: true
})

/**
 * The runtime stopped because a worker failed; `run` exits 70 (EX_SOFTWARE).
 *
 * @since 0.1.0
 */
export class WorkerFailed extends Data.TaggedError("WorkerFailed")<{
  readonly worker: string
  readonly message: string
}> {}

/**
 * @since 0.1.0
 */
export interface WorkersService {
  /**
   * Forks a worker in the current scope, watched: its end is a fault unless a shutdown was
   * asked for or the scope interrupted it. `mayEnd` marks a one-shot task (a retry that
   * succeeds and is done), whose return is not a fault; its death still is.
   */
  readonly fork: <E, R>(
    worker: string,
    effect: Effect.Effect<void, E, R>,
    options?: { readonly mayEnd?: boolean }
  ) => Effect.Effect<Fiber.RuntimeFiber<void, E>, never, R | Scope.Scope>
  /**
   * `effect` watched as the worker `worker`, not forked: for a fiber another structure forks
   * (a `FiberMap` of per-probe tickers), so that its death is a fault like any worker's.
   */
  readonly watch: <E, R>(
    worker: string,
    effect: Effect.Effect<void, E, R>,
    options?: { readonly mayEnd?: boolean }
  ) => Effect.Effect<void, E, R>
  /** The first fault, once there is one. */
  readonly fault: Effect.Effect<Option.Option<WorkerFault>>
  /** Completes on the first fault. */
  readonly awaitFault: Effect.Effect<WorkerFault>
}

/**
 * A test seam: wraps each worker's effect when it is forked (by default, leaves it as it is).
 * Tests provide one that makes a chosen worker die, to see the runtime stop.
 *
 * @since 0.1.0
 */
export class WorkerHook extends Context.Reference<WorkerHook>()("@nixfleet/agent/WorkerHook", {
  defaultValue: () => <E, R>(_worker: string, effect: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> => effect
}) {}

/** What a worker's exit says, or null when it ended as it should. */
const faultOf = (exit: Exit.Exit<void, unknown>, stopping: boolean, mayEnd: boolean): string | null => {
  if (Exit.isSuccess(exit)) return stopping || mayEnd ? null : "ended while the agent was not stopping"
  if (Cause.isInterruptedOnly(exit.cause)) return null
  return Cause.pretty(exit.cause)
}

const make = (
  onFault: (fault: WorkerFault, cause: string) => Effect.Effect<void>,
  stopping: Effect.Effect<boolean>
) =>
  Effect.gen(function*() {
    const first = yield* Deferred.make<WorkerFault>()
    const hook = yield* WorkerHook
    const watch: WorkersService["watch"] = (worker, effect, options) =>
      hook(worker, effect).pipe(
        Effect.onExit((exit) =>
          Effect.gen(function*() {
            const cause = faultOf(exit, yield* stopping, options?.mayEnd === true)
            if (cause === null) return
            const fault: WorkerFault = {
              worker,
              at: new Date(yield* Effect.clockWith((clock) => clock.currentTimeMillis)),
              // The first line names the error; the whole trace goes to the log.
              reason: cause.split("\n")[0] ?? cause
            }
            yield* Deferred.succeed(first, fault)
            yield* Metric.increment(Metric.tagged(workerFaults, "worker", worker))
            yield* onFault(fault, cause)
          })
        )
      )
    const fork: WorkersService["fork"] = (worker, effect, options) => Effect.forkScoped(watch(worker, effect, options))
    return {
      fork,
      watch,
      fault: Deferred.poll(first).pipe(Effect.flatMap(Option.match({
        onNone: () => Effect.succeedNone,
        onSome: Effect.asSome
      }))),
      awaitFault: Deferred.await(first)
    } satisfies WorkersService
  })

/** Read in the worker's fiber: a worker built on its own may still have a `Shutdown`. */
const standaloneStopping = Effect.flatMap(
  Effect.serviceOption(Shutdown),
  Option.match({ onNone: () => Effect.succeed(false), onSome: Deferred.isDone })
)

const logFault = (fault: WorkerFault, cause: string) =>
  Effect.logError(`worker ${fault.worker} failed; the agent stops`).pipe(
    Effect.annotateLogs({ worker: fault.worker, cause })
  )

/**
 * @since 0.1.0
 */
export class Workers extends Context.Reference<Workers>()("@nixfleet/agent/Workers", {
  // Outside a runtime (a worker layer built on its own, in a test) a fault is only logged.
  defaultValue: () =>
    Effect.runSync(Effect.provideService(make(logFault, standaloneStopping), WorkerHook, WorkerHook.defaultValue()))
}) {
  /**
   * The runtime's set: a fault is logged, kept on the status board, and asks for the
   * runtime's shutdown.
   */
  static readonly layer: Layer.Layer<Workers, never, Shutdown | StatusBoard> = Layer.effect(
    Workers,
    Effect.gen(function*() {
      const shutdown = yield* Shutdown
      const board = yield* StatusBoard
      return yield* make(
        (fault, cause) =>
          Effect.all([
            logFault(fault, cause),
            Ref.update(board.workerFault, (previous) => previous ?? fault),
            Deferred.succeed(shutdown, undefined)
          ], { discard: true }),
        Deferred.isDone(shutdown)
      )
    })
  )
}

/**
 * Forks `effect` as the supervised worker `worker` (see `WorkersService.fork`).
 *
 * @since 0.1.0
 */
export const forkWorker = <E, R>(
  worker: string,
  effect: Effect.Effect<void, E, R>,
  options?: { readonly mayEnd?: boolean }
): Effect.Effect<Fiber.RuntimeFiber<void, E>, never, R | Scope.Scope> =>
  Effect.flatMap(Workers, (workers) => workers.fork(worker, effect, options))

/**
 * The runtime's supervised set: `Workers.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = Workers.layer
