/**
 * Running the pipeline's subprocesses: argv only (never a shell), through
 * `@effect/platform`'s `Command`, with an allow-listed environment (`childEnvironment`), a
 * bounded capture of their output and a timeout that terminates the child and its process
 * group — and, for a `contained` child under systemd, its transient scope, which holds
 * whatever it started (a grandchild that left the process group with `setsid` too).
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
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { childEnvironment, type ChildKind } from "./childEnvironment.js"

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

/**
 * SIGKILL to every process of a probe's scope (systemd then collects the empty scope). A
 * scope already gone (it ended with its processes) is no error.
 */
const killScope = (unit: string): Effect.Effect<void, never, CommandExecutor.CommandExecutor> =>
  Command.make("systemctl", "kill", "--signal=SIGKILL", `${unit}.scope`).pipe(
    Command.env(childEnvironment("tool", globalThis.process.env), { extendEnv: false }),
    Command.exitCode,
    Effect.timeout(KILL_GRACE),
    Effect.ignore
  )

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

/** Whether `name` is an executable file in one of PATH's directories. */
const onPath = (name: string, path: string | undefined): boolean =>
  (path ?? "").split(":").some((dir) => {
    if (dir === "") return false
    try {
      Fs.accessSync(Path.join(dir, name), Fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })

/**
 * Whether the agent runs as a systemd service with `systemd-run` at hand: systemd set
 * INVOCATION_ID for it, the host booted with systemd, and the tool is on PATH. Read once.
 *
 * @internal
 */
export const systemdScopes: () => boolean = (() => {
  let known: boolean | undefined
  return () => {
    known ??= globalThis.process.env["INVOCATION_ID"] !== undefined && Fs.existsSync("/run/systemd/system") &&
      onPath("systemd-run", globalThis.process.env["PATH"])
    return known
  }
})()

/**
 * `argv` inside a transient scope named `unit`, which systemd ends (every process in it)
 * once `limit` has passed, whatever the agent does meanwhile. `systemd-run --scope` execs
 * `argv` in its own process, so the child keeps its pid, process group, pipes and the
 * agent's sandbox; only its cgroup is new.
 *
 * @internal
 */
export const scopeArgv = (
  unit: string,
  limit: Duration.Duration,
  argv: readonly [string, ...Array<string>]
): readonly [string, ...Array<string>] => [
  "systemd-run",
  "--scope",
  "--quiet",
  "--collect",
  `--unit=${unit}`,
  `--property=RuntimeMaxSec=${Math.max(1, Math.ceil(Duration.toSeconds(limit)))}`,
  "--",
  ...argv
]

/**
 * Runs `argv` to completion within `timeout`, stdin empty, in the agent's working directory
 * with the environment `childEnvironment` allows `children` (then `env`). On timeout the
 * child's process group gets SIGTERM, then SIGKILL. A `contained` child runs, under
 * systemd, in a transient scope of its own (`nixfleet-probe-*.scope`) bounded by the same
 * timeout: on timeout every process in it is killed, and one that outlives a child that
 * ended is killed when the scope's time runs out. Elsewhere its process group is what is
 * killed: a grandchild that called `setsid` escapes it.
 *
 * @internal
 */
export const run = (
  argv: readonly [string, ...Array<string>],
  options: {
    readonly timeout: Duration.DurationInput
    readonly children: ChildKind
    readonly env?: Readonly<Record<string, string>>
    readonly captureBytes?: number
    readonly contained?: boolean
  }
): Effect.Effect<Completed, SpawnFailed | TimedOut, CommandExecutor.CommandExecutor> =>
  Effect.scoped(
    Effect.gen(function*() {
      const scope = options.contained === true && systemdScopes()
        ? `nixfleet-probe-${Crypto.randomBytes(6).toString("hex")}`
        : undefined
      const [command, ...args] = scope === undefined
        ? argv
        : scopeArgv(scope, Duration.decode(options.timeout), argv)
      const max = options.captureBytes ?? DEFAULT_CAPTURE
      const process = yield* Command.make(command, ...args).pipe(
        Command.env(childEnvironment(options.children, globalThis.process.env, options.env), { extendEnv: false }),
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
        // And whatever left the group: the scope holds every process the child started.
        if (scope !== undefined) yield* killScope(scope)
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
