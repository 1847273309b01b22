/**
 * The activation worker fiber: runs one intent at a time through the `ActivationPipeline`
 * and reports the outcome to the reducer as a Local event (seq 0; the reducer numbers it).
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import { ClosureName } from "@nixfleet/proto"
import type { LocalEvent } from "@nixfleet/state-machine"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import {
  type ActivationError,
  ActivationPipeline,
  type ActivationSuccess,
  type RollbackError,
  type RolledBack
} from "./ActivationPipeline.js"
import { activationResult, rollbackResult } from "./cli/ActivationResult.js"
import { HostLedger } from "./HostLedger.js"
import { activationDuration, activations } from "./Metrics.js"
import { profileGenerations } from "./phases/Profile.js"
import { systemProfileConfig } from "./PipelineConfig.js"
import { Reducer } from "./Reducer.js"
import { ReducerInput } from "./ReducerInput.js"
import { type ActivationIntent, RuntimeChannels } from "./RuntimeChannels.js"
import { drainUntilShutdown } from "./Shutdown.js"

/**
 * Set to any value (even empty), activations and rollbacks are not run: they are reported
 * as succeeded at once. Read on every intent, so that unsetting it takes effect without a
 * restart (and a misconfiguration never half-activates).
 *
 * @since 0.1.0
 */
export const activationTestMode = Config.option(Config.string("NIXFLEET_AGENT_ACTIVATION_TEST_MODE")).pipe(
  Config.map(Option.isSome)
)

/**
 * The `switchMethod` of `ActivationStarted`, as the reference agent reports it.
 *
 * @since 0.1.0
 */
export const SWITCH_METHOD = "switch-to-configuration"

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

const isClosureName = Schema.is(ClosureName)

/** Counts a finished activation or rollback; `startedAt` (ms) also records its duration. */
const measure = (rollback: boolean, outcome: string, startedAt: number | null) =>
  Effect.gen(function*() {
    const kind = rollback ? "rollback" : "activate"
    yield* Metric.increment(Metric.tagged(Metric.tagged(activations, "kind", kind), "outcome", outcome))
    if (startedAt !== null) {
      const seconds = ((yield* Clock.currentTimeMillis) - startedAt) / 1000
      yield* Metric.update(
        Metric.tagged(Metric.tagged(activationDuration, "kind", kind), "outcome", outcome),
        seconds
      )
    }
  })

/**
 * The event that reports a forward activation's outcome (spec activation-pipeline §1.8).
 *
 * @since 0.1.0
 */
export const activationEvent = (
  exit: Exit.Exit<ActivationSuccess, ActivationError>,
  at: Date
): LocalEvent => {
  if (Exit.isSuccess(exit)) {
    return exit.value._tag === "FiredAndPolled"
      ? {
        _tag: "LocalActivationCompleted",
        observedCurrentClosure: exit.value.closure,
        exitCode: 0,
        completedAt: at,
        seq: 0
      }
      : { _tag: "LocalActivationDeferred", component: exit.value.component, deferredAt: at, seq: 0 }
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    return {
      _tag: "LocalActivationFailed",
      exitCode: failure.value.exitCode,
      stderrTail: failure.value.message,
      failedAt: at,
      seq: 0
    }
  }
  return {
    _tag: "LocalActivationFailed",
    exitCode: -1,
    stderrTail: `activation pipeline error: ${Cause.pretty(exit.cause)}`.slice(0, 4096),
    failedAt: at,
    seq: 0
  }
}

/**
 * Where the reducer may send a rollback: the closure this agent read as running before it
 * switched for that rollout (recorded in the host ledger before the switch), or one of the
 * system profile's generations. A closure named only by the control plane (a snapshot is
 * unsigned) is neither; null when the target is allowed, else why not.
 */
const rollbackRefusal = Effect.fn("ActivationWorker.checkRollback")(function*(intent: ActivationIntent) {
  const ledger = yield* HostLedger
  const recorded = yield* ledger.switchOf(intent.rolloutId)
  if (recorded !== undefined && recorded.previous === intent.closure) return null
  const profile = yield* systemProfileConfig.pipe(Effect.orElseSucceed(() => "/nix/var/nix/profiles/system"))
  const generations = yield* profileGenerations(profile).pipe(Effect.orElseSucceed((): Array<string> => []))
  if (generations.includes(intent.closure)) return null
  return `refusing to roll back to ${JSON.stringify(intent.closure)}: it is neither the closure this host ran before ` +
    `switching for this rollout (${recorded?.previous ?? "none recorded"}) nor a generation of ${profile}; ` +
    "the host stays Failed"
})

const runIntent = (intent: ActivationIntent) =>
  Effect.gen(function*() {
    const reducer = yield* Reducer
    const pipeline = yield* ActivationPipeline
    const send = (event: LocalEvent) => reducer.offer(ReducerInput.HostEvent({ rolloutId: intent.rolloutId, event }))

    // Rollbacks come from Failed, where Activating events are illegal: never report "started" for them.
    if (!intent.rollback) {
      yield* send({ _tag: "LocalActivationStarted", startedAt: yield* now, switchMethod: SWITCH_METHOD, seq: 0 })
    }

    if (intent.rollback) {
      const refusal = yield* rollbackRefusal(intent)
      if (refusal !== null) return yield* Effect.logError(refusal)
    }

    const testMode = yield* activationTestMode.pipe(Effect.orElseSucceed(() => false))
    if (testMode) {
      yield* Effect.logWarning(
        "NIXFLEET_AGENT_ACTIVATION_TEST_MODE is set: NOT activating anything, reporting success"
      )
      const at = yield* now
      yield* measure(intent.rollback, "test_mode", null)
      return yield* send(
        intent.rollback
          ? { _tag: "LocalRollbackCompleted", revertedToClosure: intent.closure, exitCode: 0, completedAt: at, seq: 0 }
          : {
            _tag: "LocalActivationCompleted",
            observedCurrentClosure: intent.closure,
            exitCode: 0,
            completedAt: at,
            seq: 0
          }
      )
    }

    if (!isClosureName(intent.closure)) {
      const detail = `refusing to activate ${JSON.stringify(intent.closure)}: not a Nix store basename`
      yield* Effect.logError(detail)
      if (intent.rollback) return
      return yield* send({
        _tag: "LocalActivationFailed",
        exitCode: -1,
        stderrTail: detail,
        failedAt: yield* now,
        seq: 0
      })
    }

    const startedAt = yield* Clock.currentTimeMillis
    if (!intent.rollback) {
      const exit = yield* Effect.exit(pipeline.activate(intent.closure))
      yield* measure(false, activationResult(intent.closure, exit).outcome, startedAt)
      const event = activationEvent(exit, yield* now)
      if (event._tag === "LocalActivationFailed") {
        yield* Effect.logError(`activation failed: ${event.stderrTail}`).pipe(
          Effect.annotateLogs("exitCode", event.exitCode)
        )
      }
      return yield* send(event)
    }

    const exit: Exit.Exit<RolledBack, RollbackError> = yield* Effect.exit(pipeline.rollback(intent.closure))
    yield* measure(true, rollbackResult(intent.closure, exit).outcome, startedAt)
    if (Exit.isSuccess(exit)) {
      if (exit.value.fallback !== null) {
        yield* Effect.logWarning(`rollback closure missing; used ${exit.value.fallback}`)
      }
      return yield* send({
        _tag: "LocalRollbackCompleted",
        revertedToClosure: exit.value.revertedToClosure,
        exitCode: 0,
        completedAt: yield* now,
        seq: 0
      })
    }
    // Failed accepts no other event: the host stays Failed, and the operator must know.
    const failure = Cause.failureOption(exit.cause)
    yield* Effect.logError(
      Option.isSome(failure)
        ? `${failure.value.message}; the host stays Failed`
        : `rollback pipeline error; the host stays Failed: ${Cause.pretty(exit.cause)}`
    ).pipe(Effect.annotateLogs("exitCode", Option.isSome(failure) ? failure.value.exitCode : -1))
  }).pipe(
    Effect.annotateLogs({ rolloutId: intent.rolloutId, closure: intent.closure, rollback: intent.rollback }),
    Effect.withSpan("ActivationWorker.intent", {
      attributes: { rolloutId: intent.rolloutId, closure: intent.closure, rollback: intent.rollback }
    })
  )

/**
 * Forks the worker in the runtime's scope. A defect while handling an intent is logged and
 * the worker carries on with the next one.
 *
 * @since 0.1.0
 */
export const ActivationWorker = Layer.scopedDiscard(
  Effect.gen(function*() {
    const channels = yield* RuntimeChannels
    const context = yield* Effect.context<
      Reducer | ActivationPipeline | HostLedger | FileSystem.FileSystem | Path.Path
    >()
    yield* Effect.forkScoped(
      drainUntilShutdown(channels.activationIntents, (intent) =>
        runIntent(intent).pipe(
          Effect.provide(context),
          Effect.catchAllDefect((defect) =>
            Effect.logError("activation worker defect; continuing with the next intent").pipe(
              Effect.annotateLogs({ defect: String(defect), rolloutId: intent.rolloutId })
            )
          )
        ))
    )
  })
)
