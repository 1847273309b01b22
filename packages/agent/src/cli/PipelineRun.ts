/**
 * What `activate` and `rollback` do once their flags are parsed: one run of the agent's
 * activation pipeline. Loaded only when one of them runs.
 *
 * @internal
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import type { ClosureName } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { PipelineConfig } from "../config/PipelineConfig.js"
import { ExitStatus } from "../node/ExitStatus.js"
import { loggerLayer } from "../node/Logging.js"
import { ActivationPipeline } from "../pipeline/ActivationPipeline.js"
import { type ActivationResult, activationResult, processStatus, rollbackResult } from "../pipeline/ActivationResult.js"
import * as NixActivationPipeline from "../pipeline/NixActivationPipeline.js"
import { previousGeneration } from "../pipeline/phases/Profile.js"
import { type PipelineOptions, toPipelineConfig } from "./PipelineOptions.js"

const pipelineLayer = (options: PipelineOptions) =>
  NixActivationPipeline.layer.pipe(
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
 * `activate <closure>`.
 *
 * @internal
 */
export const activate = (options: PipelineOptions & { readonly closure: ClosureName }) =>
  Effect.gen(function*() {
    const pipeline = yield* ActivationPipeline
    const exit = yield* Effect.exit(pipeline.activate(options.closure))
    yield* report(activationResult(options.closure, exit))
  }).pipe(Effect.provide(pipelineLayer(options)), Effect.provide(loggerLayer(options.logFormat)))

/**
 * `rollback [--to <closure>]`.
 *
 * @internal
 */
export const rollback = (options: PipelineOptions & { readonly to: Option.Option<ClosureName> }) =>
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
