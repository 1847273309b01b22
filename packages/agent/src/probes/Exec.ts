/**
 * The exec probe: passes iff its argv exits 0 within `timeoutSecs`.
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { run } from "../support/subprocess.js"
import type { ProbeDeclaration } from "./HealthChecks.js"
import type { ProbeOutcome } from "./ProbeOutcome.js"
import { failed, passed } from "./reason.js"

/** Output kept per stream: the reason only quotes three stderr lines, capped at 512 bytes. */
const CAPTURE_BYTES = 8 * 1024

/**
 * The last three lines of stderr, newest first, joined by " / " (as upstream: Rust's
 * `lines()`, so a final newline does not make an empty line and `\r\n` counts as one break).
 */
const stderrTail = (stderr: string): string => {
  const lines = stderr.split("\n").map((line) => line.replace(/\r$/, ""))
  if (lines.at(-1) === "") lines.pop()
  return lines.reverse().slice(0, 3).join(" / ")
}

/**
 * Runs `command` (argv, never a shell) as the agent's user, stdin closed. On timeout the
 * child and its whole process group are terminated (`run` sends SIGTERM to the group, then
 * SIGKILL) — upstream left the child running. The reason for a non-zero exit is
 * `exit <code>; stderr: <tail>`: upstream printed Rust's `exit Some(<code>)`, the code alone
 * is what it meant. A child killed by a signal has no code: `killed by a signal`.
 *
 * @since 0.1.0
 */
export const runExec: (
  declaration: ProbeDeclaration
) => Effect.Effect<ProbeOutcome, never, CommandExecutor.CommandExecutor> = Effect.fn("probe.exec")(
  function*(declaration) {
    const [command, ...args] = declaration.command
    if (command === undefined) return failed("exec probe: empty command")
    yield* Effect.annotateCurrentSpan("argv0", command)
    return yield* run([command, ...args], {
      timeout: Duration.seconds(declaration.timeoutSecs),
      children: "probe",
      captureBytes: CAPTURE_BYTES,
      contained: true
    }).pipe(
      Effect.map((completed) => {
        if (completed.exitCode === 0) return passed
        // `run` reports a child ended by a signal as -1 (a real exit code is 0–255).
        const exit = completed.exitCode === -1 ? "killed by a signal" : `exit ${completed.exitCode}`
        return failed(`exec probe: ${exit}; stderr: ${stderrTail(completed.stderr)}`)
      }),
      Effect.catchTags({
        SpawnFailed: (error) => Effect.succeed(failed(`exec probe: spawn: ${error.detail}`)),
        TimedOut: () => Effect.succeed(failed(`exec probe: timed out after ${declaration.timeoutSecs}s`))
      })
    )
  }
)
