/**
 * `nixfleet-agent dev` (what `npm start` runs): the dev control plane and an agent in one
 * process, on a sandbox, running a good and a bad rollout. The implementation is loaded
 * only when the command runs, so no other command loads the dev control plane; and
 * `@nixfleet/dev-control-plane` is a development dependency, absent from the production
 * package, where `dev` says so in one line and exits 69.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
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

/**
 * `dev` where `@nixfleet/dev-control-plane` is not installed (EX_UNAVAILABLE).
 *
 * @since 0.1.0
 */
export const EXIT_UNAVAILABLE = 69

const DEV_CONTROL_PLANE = "@nixfleet/dev-control-plane"

/** The dev control plane package is not installed (the production package has no dev dependencies). */
class DevControlPlaneMissing extends Data.TaggedError("DevControlPlaneMissing")<{ readonly detail: string }> {
  override get message(): string {
    return `dev needs the ${DEV_CONTROL_PLANE} package, a development dependency that is not installed here ` +
      `(${this.detail}); run it from a checkout of the repository (npm start)`
  }
}

/**
 * The demo's implementation, which imports the dev control plane. A module-not-found error
 * naming that package means it is not installed; any other failure to load is a defect.
 */
const loadDemo = Effect.tryPromise({
  try: () => import("../dev/Demo.js"),
  catch: (error) => error
}).pipe(
  Effect.catchAll((error) =>
    error instanceof Error && "code" in error && error.code === "ERR_MODULE_NOT_FOUND" &&
      error.message.includes(DEV_CONTROL_PLANE)
      ? Effect.fail(new DevControlPlaneMissing({ detail: error.message.split("\n")[0] ?? "" }))
      : Effect.die(error)
  )
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
 * `--sandbox` directory that is not empty; 69 the dev control plane is not installed.
 *
 * @since 0.1.0
 */
export const devCommand = Command.make(
  "dev",
  devOptions,
  (options) =>
    Effect.gen(function*() {
      const status = yield* loadDemo.pipe(
        Effect.flatMap(({ runDemo }) =>
          Effect.flatMap(stopSignals, (stopRequested) =>
            runDemo({
              sandbox: Option.getOrNull(options.sandbox),
              testMode: options.testMode,
              keepRunning: options.keepRunning,
              stopRequested,
              color: process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined
            }))
        ),
        Effect.catchTags({
          DevControlPlaneMissing: (error) =>
            Effect.as(Console.error(`nixfleet-agent: ${error.message}`), EXIT_UNAVAILABLE),
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
