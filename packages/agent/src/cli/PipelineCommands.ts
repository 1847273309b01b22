/**
 * `nixfleet-agent activate <closure>` and `nixfleet-agent rollback [--to <closure>]`: one
 * activation or rollback through the same pipeline the daemon uses, outside the daemon.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { ClosureName } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { ActivationPipeline } from "../ActivationPipeline.js"
import { ActivationPipelineLive } from "../ActivationPipelineLive.js"
import { previousGeneration } from "../phases/Profile.js"
import { PipelineConfig } from "../PipelineConfig.js"
import { type ActivationResult, activationResult, processStatus, rollbackResult } from "./ActivationResult.js"
import { ExitStatus } from "./ExitStatus.js"
import { loggerLayer } from "./Logging.js"
import { type PipelineOptions, pipelineOptions, toPipelineConfig } from "./PipelineOptions.js"

const closureArg = Args.text({ name: "closure" }).pipe(
  Args.withSchema(ClosureName),
  Args.withDescription("the closure to activate: a store basename, <32 nix-base32 chars>-<name>")
)

const pipelineLayer = (options: PipelineOptions) =>
  ActivationPipelineLive.pipe(
    Layer.provide(PipelineConfig.make(toPipelineConfig(options))),
    Layer.provide(NodeContext.layer)
  )

/** Prints the result as the last line on stdout and records the exit status. */
const report = (result: ActivationResult) =>
  Effect.gen(function*() {
    yield* Effect.sync(() => process.stdout.write(`${JSON.stringify(result)}\n`))
    yield* Effect.flatMap(ExitStatus, (status) => Ref.set(status, processStatus(result)))
  })

/**
 * @since 0.1.0
 */
export const activateCommand = Command.make(
  "activate",
  { closure: closureArg, ...pipelineOptions },
  (options) =>
    Effect.gen(function*() {
      const pipeline = yield* ActivationPipeline
      const exit = yield* Effect.exit(pipeline.activate(options.closure))
      yield* report(activationResult(options.closure, exit))
    }).pipe(Effect.provide(pipelineLayer(options)), Effect.provide(loggerLayer(options.logFormat)))
).pipe(
  Command.withDescription("activate one closure through the agent's pipeline, outside the daemon")
)

/**
 * @since 0.1.0
 */
export const rollbackCommand = Command.make(
  "rollback",
  {
    to: Options.text("to").pipe(
      Options.withSchema(ClosureName),
      Options.optional,
      Options.withDescription("the closure to roll back to (default: the profile's previous generation)")
    ),
    ...pipelineOptions
  },
  (options) =>
    Effect.gen(function*() {
      const pipeline = yield* ActivationPipeline
      const target = Option.isSome(options.to)
        ? options.to.value
        : yield* previousGeneration(options.systemProfile).pipe(Effect.orElseSucceed(() => null))
      if (target === null) {
        return yield* report({
          outcome: "Failed",
          exitCode: -1,
          phase: "discover-target",
          closure: "",
          detail: `${options.systemProfile} has no generation before the current one; pass --to <closure>`
        })
      }
      const exit = yield* Effect.exit(pipeline.rollback(target))
      yield* report(rollbackResult(target, exit))
    }).pipe(
      Effect.provide(pipelineLayer(options)),
      Effect.provide(NodeContext.layer),
      Effect.provide(loggerLayer(options.logFormat))
    )
).pipe(Command.withDescription("roll back through the agent's pipeline, outside the daemon"))
