/**
 * `nixfleet-agent activate <closure>` and `nixfleet-agent rollback [--to <closure>]`: one
 * activation or rollback through the same pipeline the daemon uses, outside the daemon.
 * The pipeline is loaded only when one of them runs (see PipelineRun.ts).
 *
 * @internal
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { ClosureName } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import { pipelineOptions } from "./PipelineOptions.js"

const closureArg = Args.text({ name: "closure" }).pipe(
  Args.withSchema(ClosureName),
  Args.withDescription("the closure to activate: a store basename, <32 nix-base32 chars>-<name>")
)

const pipelineRun = Effect.promise(() => import("./PipelineRun.js"))

/**
 * @internal
 */
export const activateCommand = Command.make(
  "activate",
  { closure: closureArg, ...pipelineOptions },
  (options) => Effect.flatMap(pipelineRun, ({ activate }) => activate(options))
).pipe(
  Command.withDescription("activate one closure through the agent's pipeline, outside the daemon")
)

/**
 * @internal
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
  (options) => Effect.flatMap(pipelineRun, ({ rollback }) => rollback(options))
).pipe(Command.withDescription("roll back through the agent's pipeline, outside the daemon"))
