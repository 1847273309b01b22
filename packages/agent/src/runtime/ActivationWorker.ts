/**
 * The activation worker fiber: runs one intent at a time through the `ActivationPipeline`
 * and reports the outcome to the reducer as a Local event (seq 0; the reducer numbers it).
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import { ClosureName } from "@nixfleet/proto"
import type { LocalEvent } from "@nixfleet/state-machine"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { pipelineConfig, systemProfileConfig } from "../config/PipelineConfig.js"
import { ACTIVATION_TEST_MODE, switchGate } from "../config/testGates.js"
import { type ActivationError, ActivationPipeline, type ActivationSuccess } from "../pipeline/ActivationPipeline.js"
import { activationResult, rollbackResult } from "../pipeline/ActivationResult.js"
import { profileGenerations, selfCorrectProfile } from "../pipeline/phases/Profile.js"
import { annotateSpanAndLogs } from "../support/annotate.js"
import { readClosure } from "../support/closureLinks.js"
import { HostLedger } from "./HostLedger.js"
import { Reducer } from "./Reducer.js"
import { ReducerInput } from "./ReducerInput.js"
import { awaitSwitchEnd, resumeDecision } from "./resume.js"
import { type ActivationIntent, RuntimeChannels } from "./RuntimeChannels.js"
import { drainUntilShutdown } from "./Shutdown.js"
import { forkWorker } from "./Workers.js"

/**
 * Activations and rollbacks the worker ran, by `kind` (`activate`, `rollback`) and
 * `outcome` (the `activate`/`rollback` command's outcome names, or `test_mode`).
 *
 * @since 0.1.0
 */
export const activations = Metric.counter("nixfleet_agent_activations_total", {
  description: "Activations and rollbacks run by the agent, by kind and outcome",
  incremental: true
})

/**
 * How long each activation or rollback took, from the intent to the outcome. Buckets span
 * a fast switch (seconds) to the realise timeout (an hour).
 *
 * @since 0.1.0
 */
export const activationDuration = Metric.histogram(
  "nixfleet_agent_activation_duration_seconds",
  MetricBoundaries.fromIterable([1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]),
  "Duration of activations and rollbacks, by kind and outcome"
)

/**
 * Set to a true value (`1`, `true`, `yes`), activations and rollbacks are not run: they are
 * reported as succeeded at once. Read on every intent, so that unsetting it takes effect
 * without a restart (and a misconfiguration never half-activates). See `config/testGates`.
 *
 * @since 0.1.0
 */
export const activationTestMode: Config.Config<boolean> = switchGate(ACTIVATION_TEST_MODE)

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

/** Runs one pipeline call, counted and timed under the outcome its command prints. */
const measured = <A, E>(rollback: boolean, call: Effect.Effect<A, E>, outcome: (exit: Exit.Exit<A, E>) => string) =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(call)
    yield* measure(rollback, outcome(exit), startedAt)
    return exit
  })

/** The Local events the worker reports (seq 0: the reducer numbers them), at `at`. */
const activationStarted = (at: Date): LocalEvent => ({
  _tag: "LocalActivationStarted",
  startedAt: at,
  switchMethod: SWITCH_METHOD,
  seq: 0
})
const activationCompleted = (closure: string, at: Date): LocalEvent => ({
  _tag: "LocalActivationCompleted",
  observedCurrentClosure: closure,
  exitCode: 0,
  completedAt: at,
  seq: 0
})
const rollbackCompleted = (closure: string, at: Date): LocalEvent => ({
  _tag: "LocalRollbackCompleted",
  revertedToClosure: closure,
  exitCode: 0,
  completedAt: at,
  seq: 0
})
const activationFailed = (exitCode: number, stderrTail: string, at: Date): LocalEvent => ({
  _tag: "LocalActivationFailed",
  exitCode,
  stderrTail,
  failedAt: at,
  seq: 0
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
      ? activationCompleted(exit.value.closure, at)
      : { _tag: "LocalActivationDeferred", component: exit.value.component, deferredAt: at, seq: 0 }
  }
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure)
    ? activationFailed(failure.value.exitCode, failure.value.message, at)
    : activationFailed(-1, `activation pipeline error: ${Cause.pretty(exit.cause)}`.slice(0, 4096), at)
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

const sendFor = (intent: ActivationIntent) => (event: LocalEvent) =>
  Effect.flatMap(Reducer, (reducer) => reducer.offer(ReducerInput.HostEvent({ rolloutId: intent.rolloutId, event })))

/** In test mode, says so and counts it: the caller then reports success without running anything. */
const testModeReported = (rollback: boolean) =>
  Effect.flatMap(activationTestMode.pipe(Effect.orElseSucceed(() => false)), (on) =>
    on
      ? Effect.as(
        Effect.zipRight(
          Effect.logWarning("NIXFLEET_AGENT_ACTIVATION_TEST_MODE is set: NOT activating anything, reporting success"),
          measure(rollback, "test_mode", null)
        ),
        true
      )
      : Effect.succeed(false))

/** Why a closure the reducer named is not run, or null: it must be a Nix store basename. */
const notAClosure = (closure: string, action: string): string | null =>
  isClosureName(closure) ? null : `refusing to ${action} ${JSON.stringify(closure)}: not a Nix store basename`

/** A forward switch: reports started (unless a previous run already did), then the outcome. */
const runForward = (intent: ActivationIntent, reportStarted: boolean) =>
  Effect.gen(function*() {
    const pipeline = yield* ActivationPipeline
    const send = sendFor(intent)
    if (reportStarted) yield* send(activationStarted(yield* now))
    if (yield* testModeReported(false)) return yield* send(activationCompleted(intent.closure, yield* now))
    const detail = notAClosure(intent.closure, "activate")
    if (detail !== null) {
      yield* Effect.logError(detail)
      return yield* send(activationFailed(-1, detail, yield* now))
    }
    const exit = yield* measured(
      false,
      pipeline.activate(intent.closure),
      (exit) => activationResult(intent.closure, exit).outcome
    )
    const event = activationEvent(exit, yield* now)
    if (event._tag === "LocalActivationFailed") {
      yield* Effect.logError(`activation failed: ${event.stderrTail}`).pipe(
        Effect.annotateLogs("exitCode", event.exitCode)
      )
    }
    return yield* send(event)
  })

/**
 * A rollback ended without reaching its closure: the ledger says so, so that a restart
 * does not take it up again (the host stays Failed for the operator).
 */
const rollbackGaveUp = (intent: ActivationIntent) =>
  Effect.flatMap(now, (at) => Effect.flatMap(HostLedger, (ledger) => ledger.recordRollbackFailed(intent.rolloutId, at)))
    .pipe(
      Effect.catchAll((error) =>
        Effect.logWarning(`${error.message}: a restart may try this rollback again`).pipe(
          Effect.annotateLogs("errno", error.detail)
        )
      )
    )

/** A rollback (from Failed, where Activating events are illegal: it never reports "started"). */
const runRollback = (intent: ActivationIntent) =>
  Effect.gen(function*() {
    const pipeline = yield* ActivationPipeline
    const send = sendFor(intent)
    const refusal = yield* rollbackRefusal(intent)
    if (refusal !== null) {
      yield* Effect.logError(refusal)
      return yield* rollbackGaveUp(intent)
    }
    if (yield* testModeReported(true)) return yield* send(rollbackCompleted(intent.closure, yield* now))
    const detail = notAClosure(intent.closure, "roll back to")
    if (detail !== null) {
      yield* Effect.logError(detail)
      return yield* rollbackGaveUp(intent)
    }
    const exit = yield* measured(
      true,
      pipeline.rollback(intent.closure),
      (exit) => rollbackResult(intent.closure, exit).outcome
    )
    if (Exit.isSuccess(exit)) {
      if (exit.value.fallback !== null) {
        yield* Effect.logWarning(`rollback closure missing; used ${exit.value.fallback}`)
      }
      return yield* send(rollbackCompleted(exit.value.revertedToClosure, yield* now))
    }
    // Failed accepts no other event: the host stays Failed, and the operator must know.
    const failure = Cause.failureOption(exit.cause)
    yield* Effect.logError(
      Option.isSome(failure)
        ? `${failure.value.message}; the host stays Failed`
        : `rollback pipeline error; the host stays Failed: ${Cause.pretty(exit.cause)}`
    ).pipe(Effect.annotateLogs("exitCode", Option.isSome(failure) ? failure.value.exitCode : -1))
    yield* rollbackGaveUp(intent)
  })

/**
 * A switch or rollback a previous run released and died in (the reducer resumes it only
 * when the ledger recorded its release and the control plane has every event of the
 * rollout, so the record's state and `activationStartedAt` are what happened): wait for a
 * switch that outlived that run, read the host, and finish the work without repeating
 * what already happened.
 */
const runResume = Effect.fn("ActivationWorker.resume")(function*(intent: ActivationIntent) {
  const ledger = yield* HostLedger
  const reducer = yield* Reducer
  const config = yield* pipelineConfig
  const send = sendFor(intent)
  const switched = yield* ledger.switchOf(intent.rolloutId)
  const rolledBack = intent.rollback ? yield* ledger.rollbackOf(intent.rolloutId) : undefined
  const record = (yield* SubscriptionRef.get(reducer.records)).get(intent.rolloutId)
  // The switch's target and the closure before it, or the rollback's closure and the target it leaves.
  const target = intent.rollback ? (switched?.target ?? record?.targetClosure ?? null) : (switched?.target ?? null)
  const previous = intent.rollback ? (rolledBack?.closure ?? null) : (switched?.previous ?? null)
  if (target === null || (intent.rollback ? previous !== intent.closure : target !== intent.closure)) {
    return yield* Effect.logError("nothing recorded in the host ledger to resume; leaving the rollout as it is")
  }
  const still = yield* awaitSwitchEnd({
    method: config.switchMethod,
    unit: intent.rollback ? "nixfleet-rollback" : "nixfleet-switch",
    closures: intent.rollback ? [intent.closure] : [target],
    storeDir: config.storeDir,
    switchLockPath: config.switchLockPath
  }, Duration.seconds(config.verifyTimeoutSecs))
  const current = Option.getOrNull(yield* Effect.option(readClosure(config.currentSystemPath)))
  const decision = still === null
    ? resumeDecision({ rollback: intent.rollback, current, target, previous })
    : {
      _tag: "Unknown" as const,
      reason: `the switch fired before the restart still ran after ${config.verifyTimeoutSecs} s (${still}); stopped it`
    }
  yield* Effect.logWarning(`resuming after a restart: ${decision._tag}`).pipe(
    Effect.annotateLogs({ current: current ?? "unreadable", target, previous: previous ?? "none" })
  )
  const started = record?.activationStartedAt !== null && record?.activationStartedAt !== undefined
  switch (decision._tag) {
    case "Complete": {
      // The switch ran and the link holds the target: what verify would have seen.
      yield* selfCorrectProfile(config.systemProfile, `${config.storeDir}/${target}`)
      if (!started) yield* send(activationStarted(yield* now))
      yield* measure(false, "resumed", null)
      return yield* send(activationCompleted(target, yield* now))
    }
    case "Rerun":
      return yield* runForward(intent, !started)
    case "RolledBack":
      // The run may have died before or after the profile went back: it must boot what runs.
      yield* selfCorrectProfile(config.systemProfile, `${config.storeDir}/${intent.closure}`)
      yield* measure(true, "resumed", null)
      return yield* send(rollbackCompleted(intent.closure, yield* now))
    case "RollbackAgain":
      return yield* runRollback(intent)
    case "Unknown":
      yield* Effect.logError(decision.reason)
      if (intent.rollback) return yield* rollbackGaveUp(intent)
      // The rollback, if the policy asks for one, goes to the ledger's closure (checked as always).
      return yield* send(activationFailed(-1, decision.reason, yield* now))
  }
}, (effect) =>
  Effect.catchAll(
    effect,
    (error) => Effect.logError(`cannot resume after a restart: ${error.message}; leaving the rollout as it is`)
  ))

const runIntent = Effect.fn("ActivationWorker.intent")(
  (intent: ActivationIntent) =>
    intent.resume === true ? runResume(intent) : intent.rollback ? runRollback(intent) : runForward(intent, true),
  (effect, intent) =>
    annotateSpanAndLogs(effect, { rolloutId: intent.rolloutId, closure: intent.closure, rollback: intent.rollback })
)

/**
 * Forks the worker in the runtime's scope. A defect while handling an intent is logged and
 * the worker carries on with the next one.
 *
 * @since 0.1.0
 */
export const layer = Layer.scopedDiscard(
  Effect.gen(function*() {
    const channels = yield* RuntimeChannels
    const context = yield* Effect.context<
      Reducer | ActivationPipeline | HostLedger | FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor
    >()
    yield* forkWorker(
      "ActivationWorker",
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
