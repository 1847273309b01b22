/**
 * `nixfleet-agent dev`: the dev control plane and an agent in this process, on a sandbox
 * standing in for a host. A good rollout converges; a bad one (its probe fails, under
 * `rollback-and-halt`) is rolled back and ends Reverted. Progress is shown live, then a
 * summary table; the exit status says whether both ended as expected.
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import { AgentRuntime, type Reducer } from "@nixfleet/agent"
import { type DevControlPlane, start } from "@nixfleet/dev-control-plane"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { type DemoHost, HOSTNAME, prepareHost } from "./DemoHost.js"
import {
  awaitRollout,
  CHANNEL,
  type DemoContext,
  execProbe,
  publish,
  type Published,
  type RolloutPlan,
  type RolloutResult
} from "./DemoRollout.js"
import { agentLayer, agentOptions } from "./DevAgent.js"
import { Progress } from "./Progress.js"
import { watch } from "./RolloutWatch.js"
import * as Sandbox from "./Sandbox.js"
import { summaryLines } from "./Summary.js"

/**
 * @since 0.1.0
 */
export interface DemoOptions {
  /** The sandbox directory (created, must be empty); null for a new temporary directory. */
  readonly sandbox: string | null
  /** Activation test mode even when Nix is there. */
  readonly testMode: boolean
  /** After the summary, stay up until `stopRequested`. */
  readonly keepRunning: boolean
  /** Completes when the user asks to stop (SIGINT, SIGTERM). */
  readonly stopRequested: Effect.Effect<void>
  /** Colours in the progress lines (stdout is a terminal). */
  readonly color: boolean
}

/**
 * The demo could not be set up: `step` says what it was doing.
 *
 * @since 0.1.0
 */
export class DemoSetupFailed extends Data.TaggedError("DemoSetupFailed")<{
  readonly step: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.step}: ${this.detail}`
  }
}

const setupFailed = (step: string) => (error: { readonly message: string }) =>
  new DemoSetupFailed({ step, detail: error.message })

const PASSING = execProbe(["true"])
const FAILING = execProbe(["false"])

/** How to poke at the demo once it is over. */
const pokeLines = (controlPlane: DevControlPlane, sandbox: Sandbox.SandboxLayout, host: DemoHost) => {
  const url = controlPlane.url
  const publish = JSON.stringify({
    channel: CHANNEL,
    hosts: [{ hostname: HOSTNAME, targetClosure: host.closures.base }],
    soakMinutes: 0.1
  })
  return [
    `still running, until Ctrl-C or SIGTERM; control plane ${url}, health checks back to \`true\`. Poke at it:`,
    `  curl -s ${url}/v1/operator/hosts          # host records, keyed <rolloutId>/${HOSTNAME}`,
    `  curl -s ${url}/v1/operator/events         # every event the agent delivered`,
    `  curl -s ${url}/v1/operator/log            # the control plane's audit log`,
    `  curl -s ${url}/v1/operator/quarantine     # closures quarantined by a rollback`,
    `  curl -s -X POST ${url}/v1/operator/rollouts -d '${publish}'`,
    `  npx nixfleet-agent status --state-dir ${sandbox.stateDir}`
  ]
}

/** The two rollouts. In test mode nothing switches: the sandbox stays on the base closure. */
const plans = (host: DemoHost): { readonly good: RolloutPlan; readonly bad: RolloutPlan } => {
  const nix = host._tag === "Nix"
  const runningAfter = nix ? host.closures.good : host.closures.base
  return {
    good: {
      label: "good",
      closure: host.closures.good,
      probes: PASSING,
      soakMinutes: 0.1,
      expected: "Converged",
      runningAfter,
      checkProfile: nix
    },
    bad: {
      label: "bad",
      closure: host.closures.bad,
      probes: FAILING,
      // Long enough never to be reached: the failing probe decides first.
      soakMinutes: 1,
      expected: "Reverted",
      // Rolled back to the closure that ran at dispatch.
      runningAfter,
      checkProfile: nix
    }
  }
}

/**
 * Follows the good rollout (published before the agent started), then publishes and
 * follows the bad one, and prints the summary. True when both ended as expected.
 */
const scenario = (
  context: DemoContext & { readonly agent: Reducer.ReducerService },
  good: Published,
  bad: RolloutPlan
) =>
  Effect.gen(function*() {
    const progress = yield* Progress
    const results: ReadonlyArray<RolloutResult> = [
      yield* awaitRollout(context, good),
      yield* awaitRollout(context, yield* publish(context, bad))
    ]
    yield* progress.line("")
    for (const line of summaryLines(results, progress.paint)) yield* progress.line(line)
    const asExpected = results.every((result) => result.problems.length === 0)
    yield* progress.line(
      asExpected
        ? progress.paint.good("both rollouts ended as expected")
        : progress.paint.bad("the rollouts did not end as expected")
    )
    return asExpected
  })

/**
 * The host, the control plane, the live lines, and the good rollout, published before the
 * agent starts: the control plane is ready (it answers 503 until its first publish) and
 * the agent finds a dispatch waiting.
 */
const setUp = (sandbox: Sandbox.SandboxLayout, testMode: boolean) =>
  Effect.gen(function*() {
    const progress = yield* Progress
    const host = yield* prepareHost(sandbox, testMode).pipe(Effect.mapError(setupFailed("set up the host")))
    const controlPlane = yield* start({ dir: sandbox.controlPlaneDir }).pipe(
      Effect.mapError(setupFailed("start the control plane"))
    )
    yield* progress.line(`control plane: ${controlPlane.url} (loopback only; trust file ${controlPlane.trustFile})`)
    yield* progress.line(
      `agent: ${HOSTNAME}, state directory ${sandbox.stateDir}, switch method direct; its warnings and errors go ` +
        "to stderr (--verbose for more)"
    )
    const context: DemoContext = { controlPlane, sandbox, watch: yield* watch(controlPlane) }
    const rollouts = plans(host)
    yield* progress.line(
      "lines: `state` is the agent's rollout state machine, `event` an event as the control plane receives it"
    )
    const good = yield* publish(context, rollouts.good)
    return { context, good, host, rollouts }
  })

/**
 * Runs the demo and returns the process exit status: 0 when both rollouts ended as
 * expected, 1 otherwise (or when interrupted before the summary). Fails before anything
 * runs when the sandbox directory is not empty.
 *
 * @since 0.1.0
 */
export const runDemo = (
  options: DemoOptions
): Effect.Effect<
  number,
  DemoSetupFailed | Sandbox.SandboxNotEmpty,
  FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor
> =>
  Effect.gen(function*() {
    const progress = yield* Progress
    const { paint } = progress
    const fs = yield* FileSystem.FileSystem
    const sandbox = yield* Sandbox.create(options.sandbox).pipe(
      Effect.catchTag("SandboxError", (error) => Effect.fail(setupFailed("create the sandbox")(error)))
    )
    yield* progress.line(paint.bold("nixfleet-agent dev: the dev control plane and an agent, in one process"))
    yield* progress.line(`sandbox: ${sandbox.root} (everything the demo writes goes here, and it is kept)`)
    // A stop asked for while setting up (a Nix build takes a few seconds) ends the demo there.
    const ready = yield* Effect.raceFirst(
      Effect.asSome(setUp(sandbox, options.testMode)),
      Effect.as(options.stopRequested, Option.none())
    )
    if (Option.isNone(ready)) {
      yield* progress.line(paint.bad("interrupted while setting up"))
      return 1
    }
    const { context, good, host, rollouts } = ready.value
    const { controlPlane } = context
    const status = yield* Deferred.make<number>()
    const scope = yield* Effect.scope
    const services = yield* Effect.context<Progress | FileSystem.FileSystem | Path.Path>()

    const demo = (agent: AgentRuntime.AgentRuntimeService) =>
      Effect.gen(function*() {
        yield* context.watch.follow(agent.reducer).pipe(Scope.extend(scope))
        const interrupted = Effect.as(options.stopRequested, null)
        const outcome = yield* Effect.raceFirst(
          scenario({ ...context, agent: agent.reducer }, good, rollouts.bad),
          interrupted
        )
        if (outcome === null) {
          yield* progress.line(paint.bad("interrupted before the rollouts were over"))
          return 1
        }
        if (options.keepRunning) {
          yield* fs.writeFileString(sandbox.healthChecksFile, `${JSON.stringify(PASSING, null, 2)}\n`).pipe(
            Effect.orDie
          )
          yield* progress.line("")
          for (const line of pokeLines(controlPlane, sandbox, host)) yield* progress.line(line)
          yield* options.stopRequested
        }
        return outcome ? 0 : 1
      }).pipe(
        Effect.catchAllCause((cause) => Effect.as(Effect.logError("the demo failed", cause), 1)),
        Effect.flatMap((code) => Deferred.succeed(status, code)),
        Effect.provide(services),
        Effect.ensuring(agent.shutdown),
        Effect.forkIn(scope),
        Effect.asVoid
      )

    const settings = agentOptions({
      sandbox,
      controlPlaneUrl: controlPlane.url,
      trustFile: controlPlane.trustFile,
      testMode: host._tag === "TestMode"
    })
    yield* AgentRuntime.runUntilShutdown(agentLayer(settings, host.environment), { onStarted: demo }).pipe(
      Effect.mapError(setupFailed("start the agent"))
    )
    yield* context.watch.flush
    yield* progress.line(
      `stopped. The sandbox is kept: ${sandbox.root}` +
        (host._tag === "Nix" ? " (its profile generations are GC roots until it is removed)" : "")
    )
    return yield* Deferred.await(status)
  }).pipe(Effect.scoped, Effect.provide(Progress.layer({ color: options.color })))
