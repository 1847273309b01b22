/**
 * The one-line JSON result `activate` and `rollback` print last on stdout, and the process
 * exit status that goes with it.
 */
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { ActivationError, ActivationSuccess, RollbackError, RolledBack } from "./ActivationPipeline.js"

export interface ActivationResult {
  readonly outcome:
    | "FiredAndPolled"
    | "DeferredPendingReboot"
    | "SignatureMismatch"
    | "RealiseFailed"
    | "SwitchFailed"
    | "VerifyMismatch"
    | "PipelineError"
    | "Failed"
  readonly exitCode: number
  readonly phase: string | null
  readonly closure: string
  readonly detail: string
}

/**
 * Exit statuses: 0 done, 10 deferred to the next reboot, 2 signature refused (class -2),
 * 3 third closure after the switch (class -3), 1 anything else; 64 is bad arguments.
 */
export const processStatus = (result: ActivationResult): number => {
  switch (result.outcome) {
    case "FiredAndPolled":
      return 0
    case "DeferredPendingReboot":
      return 10
    case "SignatureMismatch":
      return 2
    case "VerifyMismatch":
      return 3
    default:
      return 1
  }
}

export const EXIT_BAD_ARGUMENTS = 64

const defect = (closure: string, cause: Cause.Cause<unknown>): ActivationResult => ({
  outcome: "PipelineError",
  exitCode: -1,
  phase: null,
  closure,
  detail: Cause.pretty(cause).split("\n")[0] ?? "unexpected error"
})

export const activationResult = (
  closure: string,
  exit: Exit.Exit<ActivationSuccess, ActivationError>
): ActivationResult => {
  if (Exit.isSuccess(exit)) {
    return exit.value._tag === "FiredAndPolled"
      ? { outcome: "FiredAndPolled", exitCode: 0, phase: null, closure, detail: `switched to ${closure}` }
      : {
        outcome: "DeferredPendingReboot",
        exitCode: 0,
        phase: "defer-bootloader-update",
        closure,
        detail: `${exit.value.component} changes: ${closure} is the boot default and applies at the next reboot`
      }
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return defect(closure, exit.cause)
  const error = failure.value
  return { outcome: error._tag, exitCode: error.exitCode, phase: error.phase, closure, detail: error.message }
}

export const rollbackResult = (closure: string, exit: Exit.Exit<RolledBack, RollbackError>): ActivationResult => {
  if (Exit.isSuccess(exit)) {
    return {
      outcome: "FiredAndPolled",
      exitCode: 0,
      phase: null,
      closure: exit.value.revertedToClosure,
      detail: exit.value.fallback === null
        ? `rolled back to ${exit.value.revertedToClosure}`
        : `${closure} is gone from the store; rolled back to the previous generation, ${exit.value.fallback}`
    }
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return defect(closure, exit.cause)
  const error = failure.value
  return {
    outcome: error._tag === "RollbackFailed" ? "Failed" : "PipelineError",
    exitCode: error.exitCode,
    phase: error.phase,
    closure,
    detail: error._tag === "RollbackFailed" && error.detail !== "" ? `${error.message}: ${error.detail}` : error.message
  }
}
