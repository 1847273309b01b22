/**
 * One run of a declared probe, whatever its kind. Strict mode: a run never fails and never
 * dies — anything that goes wrong is a `fail` outcome with a reason (there is no "unknown").
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import { runEvidence } from "./Evidence.js"
import { runExec } from "./Exec.js"
import type { ProbeDeclaration } from "./HealthChecks.js"
import { runHttp } from "./Http.js"
import type { ProbeOutcome } from "./ProbeOutcome.js"
import { failed } from "./reason.js"
import { runTcp } from "./Tcp.js"

/**
 * What one run of a probe found (pass or fail, why, and an evidence probe's sub-results).
 *
 * @since 0.1.0
 */
export type { ProbeOutcome } from "./ProbeOutcome.js"

/**
 * What a run needs besides its declaration.
 *
 * @since 0.1.0
 */
export interface ProbeContext {
  /** The agent's `--ssh-host-key-file`; the evidence probe reads the `.pub` beside it. */
  readonly sshHostKeyFile: string
  /** The tick's time, which the scheduler stamps on the result (recorded on the span). */
  readonly now: Date
}

type Requirements = CommandExecutor.CommandExecutor | FileSystem.FileSystem

const dispatch = (
  declaration: ProbeDeclaration,
  context: ProbeContext
): Effect.Effect<ProbeOutcome, never, Requirements> => {
  switch (declaration.kind) {
    case "exec":
      return runExec(declaration)
    case "http":
      return runHttp(declaration)
    case "tcp":
      return runTcp(declaration)
    case "evidence":
      return runEvidence(declaration, context.sshHostKeyFile)
    default:
      return Effect.succeed(failed(`unknown probe kind ${declaration.kind}`))
  }
}

/**
 * Runs `declaration` once. An unknown kind fails every run (the declaration is kept, so
 * the control plane sees the probe and its failure rather than nothing). A defect in a
 * runner is a failure too, so that one bad probe cannot stop its ticker.
 *
 * @since 0.1.0
 */
export const runProbe: (
  declaration: ProbeDeclaration,
  context: ProbeContext
) => Effect.Effect<ProbeOutcome, never, Requirements> = Effect.fn("probe.run")(function*(declaration, context) {
  yield* Effect.annotateCurrentSpan({ kind: declaration.kind, observedAt: context.now.toISOString() })
  return yield* dispatch(declaration, context).pipe(
    Effect.catchAllDefect((defect) =>
      Effect.succeed(failed(`${declaration.kind} probe: internal error: ${Cause.pretty(Cause.die(defect))}`))
    )
  )
})
