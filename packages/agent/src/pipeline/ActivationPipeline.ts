/**
 * The activation pipeline as a service: realise, switch, verify, and rollback to an
 * explicit closure. Failures are typed errors that carry the phase that failed and the
 * exit-code class reported to the control plane: -1 generic, -2 closure signature refused
 * by the substituter's trust, -3 a third closure appeared after the switch; a switch
 * subprocess's own non-zero exit code passes through.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * The switch ran and the current-system link now points at `closure`.
 *
 * @since 0.1.0
 */
export interface FiredAndPolled {
  readonly _tag: "FiredAndPolled"
  readonly closure: string
}

/**
 * The new closure changes something that cannot be switched live (`dbus`, `systemd` or
 * `kernel`): the profile and boot loader were set, the switch happens at the next reboot.
 *
 * @since 0.1.0
 */
export interface DeferredPendingReboot {
  readonly _tag: "DeferredPendingReboot"
  readonly closure: string
  readonly component: string
}

/** @since 0.1.0 */
export type ActivationSuccess = FiredAndPolled | DeferredPendingReboot

/**
 * The rollback ran and the current-system link points at `revertedToClosure`.
 *
 * @since 0.1.0
 */
export interface RolledBack {
  readonly _tag: "RolledBack"
  readonly revertedToClosure: string
  /** Set when the requested closure was gone and the previous generation was used instead. */
  readonly fallback: string | null
}

/**
 * The closure could not be realised (or another switch holds the lock): exit class -1.
 *
 * @since 0.1.0
 */
export class RealiseFailed extends Data.TaggedError("RealiseFailed")<{
  readonly phase: string
  readonly reason: string
}> {
  readonly exitCode = -1
  override get message(): string {
    return `realise failed: ${this.reason}`
  }
}

/**
 * The substituter refused the closure's signature: exit class -2.
 *
 * @since 0.1.0
 */
export class SignatureMismatch extends Data.TaggedError("SignatureMismatch")<{
  readonly closure: string
  readonly stderrTail: string
}> {
  readonly phase = "realise"
  readonly exitCode = -2
  override get message(): string {
    return `signature mismatch on ${this.closure}: ${this.stderrTail}`
  }
}

/** What a failed step carries: its phase and the failing command's own code, if any. */
type StepFailure = {
  readonly phase: string
  readonly subprocessExitCode: number | null
  readonly detail: string
}

/**
 * The one definition of `SwitchFailed` and `RollbackFailed`, which differ only in their tag
 * and in the work `action` names in the message.
 */
const StepFailed = <Tag extends string>(
  tag: Tag,
  action: string
): new(args: StepFailure) => Cause.YieldableError & StepFailure & { readonly _tag: Tag; readonly exitCode: number } =>
  class extends Data.TaggedError(tag)<StepFailure> {
    /** A code of 0 is not success here (a collected unit reads as 0): it reports -1. */
    get exitCode(): number {
      return this.subprocessExitCode === null || this.subprocessExitCode === 0 ? -1 : this.subprocessExitCode
    }
    override get message(): string {
      return `${action} failed at phase ${this.phase}`
    }
  }

/**
 * A step after realise failed; `subprocessExitCode` is the failing command's own code when
 * it has one, and becomes the reported exit code (else -1).
 *
 * @since 0.1.0
 */
export class SwitchFailed extends StepFailed("SwitchFailed", "switch") {}

/**
 * After the switch the current-system link names a third closure, neither the target nor
 * the one before the switch: exit class -3.
 *
 * @since 0.1.0
 */
export class VerifyMismatch extends Data.TaggedError("VerifyMismatch")<{
  readonly expected: string
  readonly actual: string
}> {
  readonly phase = "verify"
  readonly exitCode = -3
  override get message(): string {
    return `verify mismatch: expected=${this.expected} actual=${this.actual}`
  }
}

/**
 * A rollback step failed; its exit code is reckoned as `SwitchFailed`'s.
 *
 * @since 0.1.0
 */
export class RollbackFailed extends StepFailed("RollbackFailed", "rollback") {}

/**
 * Anything else the pipeline could not do (a spawn or I/O error): exit class -1.
 *
 * @since 0.1.0
 */
export class PipelineError extends Data.TaggedError("PipelineError")<{
  readonly phase: string
  readonly detail: string
}> {
  readonly exitCode = -1
  override get message(): string {
    return `activation pipeline error: ${this.detail} (phase ${this.phase})`
  }
}

/** @since 0.1.0 */
export type ActivationError = RealiseFailed | SignatureMismatch | SwitchFailed | VerifyMismatch | PipelineError

/** @since 0.1.0 */
export type RollbackError = RollbackFailed | PipelineError

/**
 * @since 0.1.0
 */
export interface ActivationPipelineService {
  /** Activates `target` (a validated store basename). */
  readonly activate: (target: string) => Effect.Effect<ActivationSuccess, ActivationError>
  /** Switches back to `closure`, the closure that ran before the rollout (idempotent). */
  readonly rollback: (closure: string) => Effect.Effect<RolledBack, RollbackError>
}

/**
 * @since 0.1.0
 */
export class ActivationPipeline extends Context.Tag("@nixfleet/agent/ActivationPipeline")<
  ActivationPipeline,
  ActivationPipelineService
>() {
  /**
   * A test double: each call runs the given function, by default an immediate success
   * (the switch flips to the target; the rollback reaches the requested closure).
   */
  static readonly scripted = (script: Partial<ActivationPipelineService> = {}) =>
    Layer.succeed(ActivationPipeline, {
      activate: script.activate ?? ((target) => Effect.succeed({ _tag: "FiredAndPolled", closure: target })),
      rollback: script.rollback ??
        ((closure) => Effect.succeed({ _tag: "RolledBack", revertedToClosure: closure, fallback: null }))
    })
}

/**
 * A pipeline that answers from a script (tests, demos): `ActivationPipeline.scripted`, as this module's `layerScripted`.
 *
 * @since 0.1.0
 */
export const layerScripted = ActivationPipeline.scripted
