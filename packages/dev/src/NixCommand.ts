/**
 * Running the Nix commands that set a sandbox up (builds, keys, copies), argv only, with a
 * timeout, through the current `CommandExecutor` (whose environment decides Nix's
 * configuration, see `NixEnvironment`). The dev tools' own runner: the agent's is internal
 * to it, and its allow-listed environment and systemd scopes serve a host, not a sandbox.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/**
 * Where Nix keeps its store (the closures' paths are `${STORE_DIR}/<basename>`).
 *
 * @since 0.1.0
 */
export const STORE_DIR = "/nix/store"

/**
 * A Nix command failed: `exitCode` is null when it could not run, was killed or ran out of time.
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
 * What a command that ran to its end reported.
 *
 * @since 0.1.0
 */
export interface Completed {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * A command could not be started, was killed by a signal, or ran out of time (and was
 * stopped).
 *
 * @since 0.1.0
 */
export class CommandUnfinished extends Data.TaggedError("CommandUnfinished")<{
  readonly argv: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.argv}: ${this.detail}`
  }
}

/** `argv` as one line, for messages. */
const display = (argv: ReadonlyArray<string>): string => argv.join(" ")

/** Output kept per stream: its end, which is what explains a failure. */
const CAPTURE_CHARS = 64 * 1024

const collect = (stream: Stream.Stream<Uint8Array, PlatformError>) =>
  stream.pipe(
    Stream.decodeText(),
    Stream.runFold("", (kept, chunk) => (kept + chunk).slice(-CAPTURE_CHARS))
  )

/**
 * Runs `argv` to its end within `timeout`, stdin empty, with the process's environment (and
 * whatever the current `CommandExecutor` adds); a non-zero exit is a result. On timeout the
 * command's process group is terminated (the executor does so when the command's scope
 * closes) before this fails.
 *
 * @since 0.1.0
 */
export const runCommand = (
  argv: readonly [string, ...Array<string>],
  timeout: Duration.DurationInput
): Effect.Effect<Completed, CommandUnfinished, CommandExecutor.CommandExecutor> => {
  const [command, ...args] = argv
  const unfinished = (detail: string) => new CommandUnfinished({ argv: display(argv), detail })
  return Effect.scoped(
    Effect.gen(function*() {
      // Empty stdin: a command that reads it gets end-of-file at once instead of waiting.
      const child = yield* Command.start(Command.stdin(Command.make(command, ...args), Stream.empty))
      const [exitCode, stdout, stderr] = yield* Effect.all(
        [child.exitCode, collect(child.stdout), collect(child.stderr)],
        { concurrency: "unbounded" }
      )
      return { exitCode, stdout, stderr }
    })
  ).pipe(
    Effect.mapError((error) => unfinished(error.message)),
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => unfinished(`timed out after ${Duration.format(timeout)}`)
    })
  )
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
    const done = yield* runCommand(argv, timeout).pipe(
      Effect.catchTag("CommandUnfinished", (error) => Effect.fail(failed(null, error.detail)))
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
