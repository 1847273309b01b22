/**
 * The `nixfleet-agent` command line.
 *
 * @internal
 */
import * as Command from "@effect/cli/Command"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Config from "effect/Config"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Settings from "../config/settings.js"
import { ExitStatus } from "../node/ExitStatus.js"
import { withEnvironmentLogLevel } from "../node/Logging.js"
import { EXIT_BAD_ARGUMENTS } from "../pipeline/ActivationResult.js"
import { VERSION } from "../support/version.js"
import { devCommand } from "./DevCommand.js"
import { exportQueueCommand } from "./ExportQueueCommand.js"
import { activateCommand, rollbackCommand } from "./PipelineCommands.js"
import { runCommand } from "./RunCommand.js"
import { statusCommand } from "./StatusCommand.js"

/**
 * @internal
 */
export const rootCommand = Command.make("nixfleet-agent").pipe(
  Command.withDescription(
    "the nixfleet host agent; run's flags without a subcommand run the daemon, as the reference agent's command line does"
  ),
  Command.withSubcommands([runCommand, activateCommand, rollbackCommand, statusCommand, devCommand, exportQueueCommand])
)

/** @effect/cli's own flags of the root command: `nixfleet-agent --help` still lists the subcommands. */
const ROOT_FLAGS = new Set(["--help", "-h", "--version", "--wizard", "--completions", "--log-level"])

/** Either of run's two required settings in the environment: the reference agent's way to be configured. */
const runEnvironment = Config.map(
  Config.all([Settings.givenText(Settings.controlPlaneUrl), Settings.givenText(Settings.machineId)]),
  ([url, machine]) => Option.isSome(url) || Option.isSome(machine)
)

/**
 * The reference binary has no subcommands: its units run `nixfleet-agent --control-plane-url
 * … --machine-id …`, or no arguments at all with its settings in the environment. Such an
 * argv (`node`, the script, then run's flags or nothing) is `run`'s. A first word that is a
 * subcommand or one of @effect/cli's root flags keeps its meaning; an unknown flag is then
 * run's to refuse (exit 64), as the reference binary refuses it.
 *
 * @internal
 */
export const withDefaultCommand = (argv: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function*() {
    const [node = "node", script = "nixfleet-agent", ...args] = argv
    const first = args[0]
    if (first === undefined) {
      const configured = yield* Effect.orElseSucceed(runEnvironment, () => false)
      return configured ? [node, script, "run"] : argv
    }
    const flag = first.split("=")[0] ?? first
    return first.startsWith("-") && !ROOT_FLAGS.has(flag) ? [node, script, "run", ...args] : argv
  })

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
 * @internal
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
    const exit = yield* cliWith(current)(yield* withDefaultCommand(argv)).pipe(
      Effect.provideService(ExitStatus, status),
      // Outermost: `--log-level` and a command's own level, set inside, override RUST_LOG.
      withEnvironmentLogLevel,
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
