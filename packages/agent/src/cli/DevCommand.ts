/**
 * `nixfleet-agent dev` (what `npm start` runs): the dev control plane and an agent in one
 * process, on a sandbox, running a good and a bad rollout. The demo lives in the
 * `@nixfleet/dev` workspace package, which the agent does not depend on: it is loaded by name
 * only when this command runs, from a checkout of the repository; where it is not installed
 * (the production package), `dev` says so in one line and exits 69.
 *
 * @internal
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { ExitStatus } from "../node/ExitStatus.js"
import { loggerLayer } from "../node/Logging.js"
import { stopRequests } from "../node/Signals.js"
import { EXIT_BAD_ARGUMENTS } from "../pipeline/ActivationResult.js"

/**
 * `dev` where `@nixfleet/dev` is not installed (EX_UNAVAILABLE).
 *
 * @internal
 */
export const EXIT_UNAVAILABLE = 69

/** A variable, not a literal, so that neither tsc nor the bundler follows it into the dev package. */
const DEV_TOOLS: string = "@nixfleet/dev"

/** The dev tools are not installed (only a checkout of the repository has them). */
class DevToolsMissing extends Data.TaggedError("DevToolsMissing")<{ readonly detail: string }> {
  override get message(): string {
    return `dev needs the ${DEV_TOOLS} package, which only a checkout of the repository has ` +
      `(${this.detail}); run it from there (npm start)`
  }
}

/** What this command needs from `@nixfleet/dev` (its `runDemo`), checked when it is loaded. */
interface DevTools {
  readonly runDemo: (options: {
    readonly sandbox: string | null
    readonly testMode: boolean
    readonly keepRunning: boolean
    readonly stopRequested: Effect.Effect<void>
    readonly color: boolean
  }) => Effect.Effect<
    number,
    | { readonly _tag: "SandboxNotEmpty"; readonly message: string }
    | { readonly _tag: "DemoSetupFailed"; readonly message: string },
    FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor
  >
}

const isDevTools = (module: unknown): module is DevTools =>
  typeof module === "object" && module !== null && "runDemo" in module && typeof module.runDemo === "function"

/**
 * The dev tools, loaded by name. A module-not-found error naming the package means it is
 * not installed; any other failure to load is a defect.
 */
const loadDevTools = Effect.tryPromise({
  try: (): Promise<unknown> => import(DEV_TOOLS),
  catch: (error) => error
}).pipe(
  Effect.catchAll((error) =>
    error instanceof Error && "code" in error && error.code === "ERR_MODULE_NOT_FOUND" &&
      error.message.includes(DEV_TOOLS)
      ? Effect.fail(new DevToolsMissing({ detail: error.message.split("\n")[0] ?? "" }))
      : Effect.die(error)
  ),
  Effect.filterOrDieMessage(isDevTools, `${DEV_TOOLS} has no runDemo`)
)

const devOptions = {
  sandbox: Options.directory("sandbox").pipe(
    Options.optional,
    Options.withDescription("the sandbox directory (created; must be empty); default a new temporary directory")
  ),
  testMode: Options.boolean("test-mode").pipe(
    Options.withDescription("activation test mode even when Nix is installed: nothing is built or switched")
  ),
  keepRunning: Options.boolean("keep-running").pipe(
    Options.withDescription("after the summary, stay up for poking at (until SIGINT or SIGTERM)")
  ),
  logFormat: Options.choice("log-format", ["json", "pretty"]).pipe(
    Options.withDefault("pretty" as const),
    Options.withDescription("the agent's logs on stderr: pretty or json (one object per line)")
  ),
  verbose: Options.boolean("verbose").pipe(
    Options.withDescription("the agent's info logs too (by default only warnings and errors)")
  )
}

/**
 * Exit statuses: 0 both rollouts ended as expected (and, with `--keep-running`, stopped on
 * request); 1 they did not, or the demo could not be set up; 64 bad flags, or a
 * `--sandbox` directory that is not empty; 69 the dev control plane is not installed.
 *
 * @internal
 */
export const devCommand = Command.make(
  "dev",
  devOptions,
  (options) =>
    Effect.gen(function*() {
      const status = yield* loadDevTools.pipe(
        Effect.flatMap(({ runDemo }) =>
          // Listened to while the demo runs (repeats absorbed while it stops).
          Effect.flatMap(stopRequests("scope"), (stopRequested) =>
            runDemo({
              sandbox: Option.getOrNull(options.sandbox),
              testMode: options.testMode,
              keepRunning: options.keepRunning,
              stopRequested: Deferred.await(stopRequested),
              color: process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined
            }))
        ),
        Effect.catchTags({
          DevToolsMissing: (error) => Effect.as(Console.error(`nixfleet-agent: ${error.message}`), EXIT_UNAVAILABLE),
          SandboxNotEmpty: (error) => Effect.as(Console.error(`nixfleet-agent: ${error.message}`), EXIT_BAD_ARGUMENTS),
          DemoSetupFailed: (error) => Effect.as(Console.error(`nixfleet-agent dev: ${error.message}`), 1)
        })
      )
      yield* Effect.flatMap(ExitStatus, (exitStatus) => Ref.set(exitStatus, status))
    }).pipe(
      Effect.scoped,
      Effect.provide(Layer.merge(
        loggerLayer(options.logFormat),
        Logger.minimumLogLevel(options.verbose ? LogLevel.Info : LogLevel.Warning)
      ))
    )
).pipe(
  Command.withDescription(
    "the dev control plane and an agent on a sandbox: a good rollout converges, a bad one is rolled back"
  )
)
