/**
 * Running the Nix commands that set a sandbox up (builds, keys, copies), argv only, with a
 * timeout, through the current `CommandExecutor` (whose environment decides Nix's
 * configuration, see `NixEnvironment`).
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { display, run } from "../internal/pipeline/subprocess.js"

/**
 * Where Nix keeps its store (the closures' paths are `${STORE_DIR}/<basename>`).
 *
 * @since 0.1.0
 */
export const STORE_DIR = "/nix/store"

/**
 * A Nix command failed: `exitCode` is null when it could not run or ran out of time.
 *
 * @since 0.1.0
 */
export class NixCommandFailed extends Data.TaggedError("NixCommandFailed")<{
  readonly what: string
  readonly argv: string
  readonly exitCode: number | null
  readonly detail: string
}> {
  override get message(): string {
    const status = this.exitCode === null ? "could not run" : `exit ${this.exitCode}`
    return `${this.what} failed (${status}): ${this.argv}\n${this.detail}`
  }
}

/**
 * Runs `argv` and returns its stdout; a non-zero exit fails with its stderr.
 *
 * @since 0.1.0
 */
export const nixCommand = (
  what: string,
  argv: readonly [string, ...Array<string>],
  timeout: Duration.DurationInput = "5 minutes"
): Effect.Effect<string, NixCommandFailed, CommandExecutor.CommandExecutor> =>
  Effect.gen(function*() {
    const failed = (exitCode: number | null, detail: string) =>
      new NixCommandFailed({ what, argv: display(argv), exitCode, detail })
    const done = yield* run(argv, { timeout, children: "nix" }).pipe(
      Effect.catchTags({
        SpawnFailed: (error) => Effect.fail(failed(null, error.detail)),
        TimedOut: () => Effect.fail(failed(null, `timed out after ${Duration.format(timeout)}`))
      })
    )
    if (done.exitCode !== 0) return yield* failed(done.exitCode, done.stderr.trim())
    return done.stdout
  })

/**
 * `nix-store --version` when every command a sandbox needs (`nix-store`, `nix-build`,
 * `nix-env`, `nix`) runs, otherwise none.
 *
 * @since 0.1.0
 */
export const nixVersion: Effect.Effect<Option.Option<string>, never, CommandExecutor.CommandExecutor> = Effect.gen(
  function*() {
    const versions = yield* Effect.forEach(
      ["nix-store", "nix-build", "nix-env", "nix"] as const,
      (command) => Effect.option(nixCommand(`${command} --version`, [command, "--version"], "30 seconds"))
    )
    const [store] = versions
    return versions.every(Option.isSome) && store !== undefined ? Option.map(store, (out) => out.trim()) : Option.none()
  }
)
