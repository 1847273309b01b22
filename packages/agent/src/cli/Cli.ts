/**
 * The `nixfleet-agent` command line.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as NodeContext from "@effect/platform-node/NodeContext"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import { VERSION } from "../version.js"
import { EXIT_BAD_ARGUMENTS } from "./ActivationResult.js"
import { devCommand } from "./DevCommand.js"
import { ExitStatus } from "./ExitStatus.js"
import { activateCommand, rollbackCommand } from "./PipelineCommands.js"
import { runCommand } from "./RunCommand.js"
import { statusCommand } from "./StatusCommand.js"

/**
 * @since 0.1.0
 */
export const rootCommand = Command.make("nixfleet-agent").pipe(
  Command.withDescription("the nixfleet host agent"),
  Command.withSubcommands([runCommand, activateCommand, rollbackCommand, statusCommand, devCommand])
)

/**
 * The command line whose handlers write through `console`: only @effect/cli's own output
 * (argument errors, help) goes through the capturing console of {@link runCli}, so the
 * commands' logs reach stderr as they happen.
 */
const cliWith = (console: Console.Console) =>
  Command.run(
    rootCommand.pipe(Command.transformHandler((handler) => Effect.withConsole(handler, console))),
    { name: "nixfleet-agent", version: VERSION }
  )

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g

/** One line: no colours, no line breaks, no repeated blanks. */
const oneLine = (text: string) => text.replace(ANSI, "").replace(/\s+/g, " ").trim()

/**
 * Runs the command line and returns the process exit status: what the command asked for,
 * 64 for arguments the command line refused (with one line on stderr, nothing executed),
 * 1 for anything unexpected.
 *
 * @since 0.1.0
 */
export const runCli = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  Effect.gen(function*() {
    const status = yield* Ref.make(0)
    // @effect/cli prints validation errors as multi-line help text; collect it instead.
    const refused: Array<string> = []
    const capture = (...args: ReadonlyArray<unknown>) => {
      refused.push(args.map(String).join(" "))
    }
    const current = yield* Effect.console
    const capturing: Console.Console = {
      ...current,
      error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => capture(...args)),
      unsafe: { ...current.unsafe, error: capture }
    }
    const exit = yield* cliWith(current)(argv).pipe(
      Effect.provideService(ExitStatus, status),
      Effect.provide(NodeContext.layer),
      Effect.withConsole(capturing),
      Effect.exit
    )
    if (exit._tag === "Success") return yield* Ref.get(status)
    const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
    const message = oneLine(refused.join(" ")) ||
      (failure === undefined ? "unexpected error" : oneLine(String(failure)))
    yield* Effect.sync(() => process.stderr.write(`nixfleet-agent: ${message}\n`))
    return failure !== undefined ? EXIT_BAD_ARGUMENTS : 1
  })
