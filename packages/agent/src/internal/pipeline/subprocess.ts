/**
 * Running the pipeline's subprocesses: argv only (never a shell), through
 * `@effect/platform`'s `Command`, with a bounded capture of their output and a timeout that
 * terminates the child and its process group.
 *
 * @internal
 */
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/** Output kept per stream: the end of it (the tail is what explains a failure). */
const DEFAULT_CAPTURE = 64 * 1024

/** After SIGTERM, how long a timed-out child gets before SIGKILL. */
const KILL_GRACE = Duration.seconds(5)

/** @internal */
export interface Completed {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
  /** The last bytes of stderr, undecoded (for byte-exact tails). */
  readonly stderrBytes: Uint8Array
}

/** The command could not be started (missing binary, permissions). @internal */
export class SpawnFailed extends Data.TaggedError("SpawnFailed")<{ readonly argv: string; readonly detail: string }> {}

/** The command ran out of time and was terminated. @internal */
export class TimedOut
  extends Data.TaggedError("TimedOut")<{ readonly argv: string; readonly after: Duration.Duration }>
{}

/** @internal */
export const display = (argv: ReadonlyArray<string>): string => argv.join(" ")

/** Keeps the last `max` bytes of a byte stream. */
const tail = (stream: Stream.Stream<Uint8Array, PlatformError>, max: number) =>
  Stream.runFold(stream, new Uint8Array(0), (kept, chunk) => {
    const joined = new Uint8Array(kept.length + chunk.length)
    joined.set(kept)
    joined.set(chunk, kept.length)
    return joined.length > max ? joined.slice(joined.length - max) : joined
  }).pipe(Effect.orElseSucceed(() => new Uint8Array(0)))

const decode = (bytes: Uint8Array) => new TextDecoder("utf-8", { fatal: false }).decode(bytes)

/**
 * Runs `argv` to completion within `timeout`, stdin empty. Environment and working
 * directory are the agent's, plus `env`. On timeout the child's process group gets
 * SIGTERM, then SIGKILL.
 *
 * @internal
 */
export const run = (
  argv: readonly [string, ...Array<string>],
  options: {
    readonly timeout: Duration.DurationInput
    readonly env?: Readonly<Record<string, string>>
    readonly captureBytes?: number
  }
): Effect.Effect<Completed, SpawnFailed | TimedOut, CommandExecutor.CommandExecutor> =>
  Effect.scoped(
    Effect.gen(function*() {
      const [command, ...args] = argv
      const max = options.captureBytes ?? DEFAULT_CAPTURE
      const process = yield* Command.make(command, ...args).pipe(
        Command.env(options.env ?? {}),
        // Empty stdin: a child that reads it gets end-of-file at once instead of waiting.
        Command.stdin(Stream.empty),
        Command.start,
        Effect.mapError((error) => new SpawnFailed({ argv: display(argv), detail: error.message }))
      )
      const outputs = yield* Effect.fork(Effect.all([tail(process.stdout, max), tail(process.stderr, max)], {
        concurrency: 2
      }))
      const exitCode = yield* process.exitCode.pipe(
        Effect.map(Option.some),
        // Killed by a signal (no code): report it as a failure.
        Effect.orElseSucceed(() => Option.some(-1)),
        Effect.timeoutTo({
          duration: options.timeout,
          onSuccess: (code) => code,
          onTimeout: () => Option.none<number>()
        })
      )
      if (Option.isNone(exitCode)) {
        yield* Effect.ignore(Effect.timeout(process.kill("SIGTERM"), KILL_GRACE))
        // Whatever is left of the group (a grandchild that ignored SIGTERM) goes too.
        yield* Effect.ignore(Effect.timeout(process.kill("SIGKILL"), KILL_GRACE))
        return yield* new TimedOut({ argv: display(argv), after: Duration.decode(options.timeout) })
      }
      // A grandchild may keep the pipes open after the child exits: do not wait for it long.
      const [stdout, stderr] = yield* outputs.await.pipe(
        Effect.timeout(KILL_GRACE),
        Effect.map((exit) => exit._tag === "Success" ? exit.value : [new Uint8Array(), new Uint8Array()] as const),
        Effect.orElseSucceed(() => [new Uint8Array(), new Uint8Array()] as const)
      )
      return { exitCode: exitCode.value, stdout: decode(stdout), stderr: decode(stderr), stderrBytes: stderr }
    })
  )
