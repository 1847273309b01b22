/**
 * The real activation pipeline, against Nix and the host's system profile. Order: switch
 * lock → validate → realise (with a GC root) → read the running closure → `nix-env --set`
 * (the GC root goes: the profile holds the closure) → deferred-reboot check → fire →
 * verify → profile self-correction.
 *
 * Where we differ from the reference agent: the running closure is read before the
 * profile is touched (a failed read never leaves the profile flipped without a switch);
 * the realised closure is rooted until the profile holds it; every subprocess has a
 * timeout; verify sees a flip in milliseconds and a dead switch at once; a rollback goes
 * to the explicit closure the reducer names, so running it twice is harmless.
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { ClosureName } from "@nixfleet/proto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { PipelineConfig } from "../config/PipelineConfig.js"
import { annotateSpanAndLogs } from "../support/annotate.js"
import { readClosure } from "../support/closureLinks.js"
import { run } from "../support/subprocess.js"
import {
  ActivationPipeline,
  type ActivationPipelineService,
  PipelineError,
  RealiseFailed,
  RollbackFailed,
  SwitchFailed,
  VerifyMismatch
} from "./ActivationPipeline.js"
import { fire, type FiredSwitch, type FireFailed, installBootEntry, type SwitchUnit } from "./phases/Fire.js"
import { detectInhibitor } from "./phases/Inhibitors.js"
import { checkSwitchLock } from "./phases/Lock.js"
import { profileTarget, rollbackGeneration, selfCorrectProfile, setProfile } from "./phases/Profile.js"
import { realise } from "./phases/Realise.js"
import { verify } from "./phases/Verify.js"

const isClosureName = Schema.is(ClosureName)

/** The fields of a step's failure, as `SwitchFailed` and `RollbackFailed` take them. */
type StepFailure = ConstructorParameters<typeof SwitchFailed>[0]

const fromFireFailed = (error: FireFailed): StepFailure => ({
  phase: error.phase,
  subprocessExitCode: error.exitCode,
  detail: error.detail
})

/**
 * What a fired switch that did not land becomes: the link shows a third closure, the switch
 * ended without the flip, or the verify budget ran out (with the switch's status as far as
 * it can be read). Each carries what the link last showed.
 */
interface Unlanded<E> {
  readonly flipped: (observed: string) => E
  readonly ended: (exitCode: number | null, lastObserved: string) => E
  readonly timedOut: (exitCode: number | null, lastObserved: string) => E
}

type Platform = FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor

/**
 * Builds the pipeline over the configured paths.
 *
 * @since 0.1.0
 */
export const make = Effect.gen(function*() {
  const config = yield* PipelineConfig
  const context = yield* Effect.context<Platform>()
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const budget = Duration.seconds(config.verifyTimeoutSecs)
  // The last switch fired: a rollback stops it first if it still runs (e.g. it hung).
  const lastFired = yield* Ref.make<FiredSwitch | null>(null)

  const storePath = (closure: string) => path.join(config.storeDir, closure)
  const linuxInhibitors = config.switchMethod !== "darwin"

  const validate = <E>(closure: string, onInvalid: (reason: string) => E) =>
    isClosureName(closure)
      ? Effect.void
      : Effect.fail(onInvalid(`${JSON.stringify(closure)} is not a Nix store basename`))

  /**
   * Fires the switch of `unit` to `target` and waits for the link to hold it. `failed` makes
   * the caller's error of a step that failed; `unlanded`, of a switch that did not land.
   */
  const switchTo = <E>(
    unit: SwitchUnit,
    target: string,
    previous: string | null,
    failed: (step: StepFailure) => E,
    unlanded: Unlanded<E>
  ) =>
    Effect.gen(function*() {
      const fired = yield* fire({
        method: config.switchMethod,
        unit,
        storePath: storePath(target),
        stateDir: config.stateDir
      }).pipe(
        Effect.tap((fired) => Ref.set(lastFired, fired)),
        Effect.mapError((error) => failed(fromFireFailed(error)))
      )
      const outcome = yield* verify({
        link: config.currentSystemPath,
        expected: target,
        previous,
        budget,
        ended: fired.ended
      })
      switch (outcome._tag) {
        case "Settled":
          return
        case "Flipped":
          return yield* Effect.fail(unlanded.flipped(outcome.observed))
        case "Ended":
          return yield* Effect.fail(unlanded.ended(outcome.exitCode, outcome.lastObserved))
        case "Timeout":
          return yield* Effect.fail(unlanded.timedOut(yield* fired.exitStatus, outcome.lastObserved))
      }
    })

  /**
   * Around `activate` and `rollback`: the closure on their span and log lines, a defect as a
   * `PipelineError` of `op` (a caller never sees the pipeline die), the platform provided.
   */
  const entryPoint = <A, E>(op: "activate" | "rollback", effect: Effect.Effect<A, E, Platform>, closure: string) =>
    annotateSpanAndLogs(effect, { closure }).pipe(
      Effect.catchAllDefect((defect) => Effect.fail(new PipelineError({ phase: op, detail: String(defect) }))),
      Effect.provide(context)
    )

  const activate: ActivationPipelineService["activate"] = Effect.fn("ActivationPipeline.activate")(
    function*(target: string) {
      yield* validate(target, (reason) => new RealiseFailed({ phase: "validate", reason }))
      yield* Effect.logInfo("activating")
      yield* checkSwitchLock(config.switchLockPath).pipe(Effect.annotateLogs("phase", "lock"))
      const target_ = storePath(target)
      const gcRoots = path.join(config.stateDir, "gcroots")
      yield* fs.makeDirectory(gcRoots, { recursive: true, mode: 0o700 }).pipe(
        Effect.mapError((error) =>
          new PipelineError({ phase: "realise", detail: `cannot create ${gcRoots}: ${error.message}` })
        )
      )
      const gcRoot = path.join(gcRoots, target)
      // The root lasts until the profile holds the closure (or the activation gives up).
      const dropRoot = Effect.ignore(fs.remove(gcRoot))
      return yield* Effect.gen(function*() {
        yield* realise({
          storePath: target_,
          closure: target,
          gcRoot,
          timeout: Duration.seconds(config.realiseTimeoutSecs)
        })
        const previous = yield* readClosure(config.currentSystemPath).pipe(
          Effect.mapError((error) =>
            new RealiseFailed({
              phase: "pre-switch-read",
              reason: `pre-switch ${error.path} read failed: ${error.detail}`
            })
          ),
          Effect.withSpan("ActivationPipeline.preSwitchRead")
        )
        // The deferred-reboot check only reads the running system and the new closure: it
        // runs while nix-env writes the profile.
        const [, component] = yield* Effect.all([
          setProfile(config.systemProfile, target_).pipe(
            Effect.mapError((error) =>
              error.exitCode === null
                ? new PipelineError({ phase: "nix-env-set", detail: `${error.argv}: ${error.detail}` })
                : new SwitchFailed({ phase: "nix-env-set", subprocessExitCode: error.exitCode, detail: error.detail })
            )
          ),
          linuxInhibitors ? detectInhibitor(config.currentSystemPath, target_) : Effect.succeed(null)
        ], { concurrency: 2 })
        yield* dropRoot
        if (component !== null) {
          yield* Effect.logWarning(`deferring the live switch: ${component} changes, which needs a reboot`)
          yield* installBootEntry(target_, config.switchMethod).pipe(
            Effect.mapError((error) => new SwitchFailed(fromFireFailed(error)))
          )
          return { _tag: "DeferredPendingReboot", closure: target, component } as const
        }
        yield* switchTo<SwitchFailed | VerifyMismatch>(
          "nixfleet-switch",
          target,
          previous,
          (step) => new SwitchFailed(step),
          {
            flipped: (observed) => new VerifyMismatch({ expected: target, actual: observed }),
            ended: (exitCode, observed) =>
              new SwitchFailed({
                phase: "switch-exited",
                subprocessExitCode: exitCode,
                detail: `the switch ended without the flip; ${config.currentSystemPath} is ${observed}`
              }),
            timedOut: (exitCode, observed) =>
              new SwitchFailed({
                phase: "switch-poll-timeout",
                subprocessExitCode: exitCode,
                detail: `no flip within ${Duration.format(budget)}; ${config.currentSystemPath} is ${observed}`
              })
          }
        )
        yield* selfCorrectProfile(config.systemProfile, target_)
        return { _tag: "FiredAndPolled", closure: target } as const
      }).pipe(
        // On success the root is already gone: dropped once the profile held the closure.
        Effect.onError(() => dropRoot)
      )
    },
    (effect, target) => entryPoint("activate", effect, target)
  )

  const rollback: ActivationPipelineService["rollback"] = Effect.fn("ActivationPipeline.rollback")(
    function*(closure: string) {
      yield* validate(
        closure,
        (reason) => new RollbackFailed({ phase: "validate", subprocessExitCode: null, detail: reason })
      )
      yield* Effect.logWarning("rolling back")
      // A forward switch that is still running (it hung) must not land after the rollback.
      const stuck = yield* Ref.getAndSet(lastFired, null)
      if (stuck !== null) {
        yield* stuck.stop
      }
      const previous = yield* Effect.option(readClosure(config.currentSystemPath))
      const present = yield* run(["nix-store", "--check-validity", storePath(closure)], {
        timeout: "60 seconds",
        children: "nix"
      }).pipe(
        Effect.map((done) => done.exitCode === 0),
        Effect.orElseSucceed(() => false)
      )
      let target = closure
      let fallback: string | null = null
      if (present) {
        const profile = yield* Effect.option(profileTarget(config.systemProfile))
        if (
          previous._tag === "Some" && previous.value === closure && profile._tag === "Some" &&
          profile.value.closure === closure
        ) {
          yield* Effect.logInfo("already running the rollback closure; nothing to do")
          return { _tag: "RolledBack", revertedToClosure: closure, fallback: null } as const
        }
        yield* setProfile(config.systemProfile, storePath(closure)).pipe(
          Effect.mapError((error) =>
            new RollbackFailed({ phase: "nix-env-set", subprocessExitCode: error.exitCode, detail: error.detail })
          )
        )
      } else {
        yield* Effect.logWarning(
          `${closure} is no longer in the store; rolling back to the previous generation instead`
        )
        yield* rollbackGeneration(config.systemProfile).pipe(
          Effect.mapError((error) =>
            new RollbackFailed({ phase: "nix-env-rollback", subprocessExitCode: error.exitCode, detail: error.detail })
          )
        )
        const generation = yield* profileTarget(config.systemProfile).pipe(
          Effect.mapError((error) =>
            new RollbackFailed({ phase: "discover-target", subprocessExitCode: null, detail: error.message })
          )
        )
        target = generation.closure
        fallback = target
        yield* validate(
          target,
          (reason) => new RollbackFailed({ phase: "discover-target", subprocessExitCode: null, detail: reason })
        )
      }
      // The switch binary is the rollback target's own, never the running system's (that one
      // would switch to itself and leave the broken services down).
      yield* switchTo("nixfleet-rollback", target, Option.getOrNull(previous), (step) => new RollbackFailed(step), {
        flipped: (observed) =>
          new RollbackFailed({
            phase: "rollback-verify-mismatch",
            subprocessExitCode: null,
            detail: `expected=${target} actual=${observed}`
          }),
        ended: (exitCode, observed) =>
          new RollbackFailed({ phase: "switch-exited", subprocessExitCode: exitCode, detail: observed }),
        timedOut: (exitCode, observed) =>
          new RollbackFailed({ phase: "rollback-poll-timeout", subprocessExitCode: exitCode, detail: observed })
      })
      return { _tag: "RolledBack", revertedToClosure: target, fallback } as const
    },
    (effect, closure) => entryPoint("rollback", effect, closure)
  )

  return ActivationPipeline.of({ activate, rollback })
})

/**
 * The real pipeline as a layer.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<ActivationPipeline, never, PipelineConfig | Platform> = Layer.effect(
  ActivationPipeline,
  make
)
