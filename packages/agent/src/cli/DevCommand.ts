/**
 * `nixfleet-agent dev` (what `npm start` runs): the dev control plane and an agent in one
 * process, on a sandbox, running a good and a bad rollout. The implementation is loaded
 * only when the command runs, so `run`, `activate` and `rollback` never load the dev
 * control plane.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { EXIT_BAD_ARGUMENTS } from "./ActivationResult.js"
import { ExitStatus } from "./ExitStatus.js"
import { loggerLayer } from "./Logging.js"

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
 * SIGINT and SIGTERM as an effect that completes on the first of them, listened to for
 * the current scope (repeats are absorbed while the demo stops).
 */
const stopSignals = Effect.gen(function*() {
  const requested = yield* Deferred.make<void>()
  const onSignal = () => {
    Deferred.unsafeDone(requested, Exit.void)
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)
    }),
    () =>
      Effect.sync(() => {
        process.off("SIGINT", onSignal)
        process.off("SIGTERM", onSignal)
      })
  )
  return Deferred.await(requested)
})

/**
 * Exit statuses: 0 both rollouts ended as expected (and, with `--keep-running`, stopped on
 * request); 1 they did not, or the demo could not be set up; 64 bad flags, or a
 * `--sandbox` directory that is not empty.
 *
 * @since 0.1.0
 */
export const devCommand = Command.make(
  "dev",
  devOptions,
  (options) =>
    Effect.gen(function*() {
      const { runDemo } = yield* Effect.promise(() => import("../dev/Demo.js"))
      const status = yield* runDemo({
        sandbox: Option.getOrNull(options.sandbox),
        testMode: options.testMode,
        keepRunning: options.keepRunning,
        stopRequested: yield* stopSignals,
        color: process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined
      }).pipe(
        Effect.catchTags({
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
