/**
 * The real command line's parser, without running the daemon: argv goes through the root
 * command (so `run`'s options and schemas, and the rule that run's flags without a
 * subcommand are `run`'s), with `run`'s handler replaced by one that records what it was
 * given. The environment is not read: every value comes from argv or a default.
 */
import * as Command from "@effect/cli/Command"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { ConfigProvider, Effect, Ref } from "effect"
import type * as Console from "effect/Console"
import { withDefaultCommand } from "../../src/cli/Cli.js"
import { runCommand } from "../../src/cli/RunCommand.js"
import { ExitStatus } from "../../src/node/ExitStatus.js"

export type Parsed =
  | { readonly _tag: "Accepted"; readonly options: Record<string, unknown> }
  | { readonly _tag: "Refused"; readonly message: string }

/**
 * `nixfleet-agent <argv>` parsed as the binary parses it; argv without a subcommand is
 * `run`'s, as in the binary. Only `run` is recorded: any other subcommand is refused here.
 */
export const parseArgv = (argv: ReadonlyArray<string>): Effect.Effect<Parsed> =>
  Effect.gen(function*() {
    let given: Record<string, unknown> | undefined
    const printed: Array<string> = []
    const record = (...args: ReadonlyArray<unknown>) => {
      printed.push(args.map(String).join(" "))
    }
    const current = yield* Effect.console
    const capturing: Console.Console = {
      ...current,
      log: (...args: ReadonlyArray<unknown>) => Effect.sync(() => record(...args)),
      error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => record(...args)),
      unsafe: { ...current.unsafe, log: record, error: record }
    }
    const recordOnly = Command.make("nixfleet-agent").pipe(
      Command.withSubcommands([
        Command.transformHandler(runCommand, (_handler, options) =>
          Effect.sync(() => {
            given = { ...options }
          }))
      ])
    )
    const full = yield* withDefaultCommand(["node", "nixfleet-agent", ...argv])
    yield* Command.run(recordOnly, { name: "nixfleet-agent", version: "test" })(full).pipe(
      Effect.provide(NodeContext.layer),
      Effect.provideService(ExitStatus, yield* Ref.make(0)),
      Effect.withConsole(capturing),
      Effect.exit
    )
    const parsed: Parsed = given === undefined
      ? { _tag: "Refused", message: printed.join("\n") }
      : { _tag: "Accepted", options: given }
    return parsed
  }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))

/** `nixfleet-agent run <argv>`. */
export const parseRun = (argv: ReadonlyArray<string>) => parseArgv(["run", ...argv])

/** The options `run` was given; throws with the parser's message when it refused. */
export const accepted = (parsed: Parsed, what: string) => {
  if (parsed._tag === "Refused") throw new Error(`run refused ${what}: ${parsed.message}`)
  return parsed.options
}

/**
 * The words of an Exec* line as nix/agent-args.nix writes them: bare words, or double-quoted
 * JSON strings; `%%` and `$$` stand for `%` and `$`. (systemd's own syntax is larger; the
 * units stay in this subset, which is what the renderer emits.)
 */
export const systemdWords = (line: string): ReadonlyArray<string> =>
  Array.from(line.matchAll(/"(?:[^"\\]|\\.)*"|[^\s"]+/g), ([word]) => {
    const plain = word.replaceAll("%%", "%").replaceAll("$$", "$")
    return word.startsWith("\"") ? JSON.parse(plain) as string : plain
  })
