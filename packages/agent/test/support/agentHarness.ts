/**
 * An agent runtime in process against a dev control plane, for end-to-end tests.
 */
import type { HttpClient } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { ConfigProvider, type Context, Effect, Exit, Layer, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentRuntime, type AgentRuntimeServices } from "../../src/AgentRuntime.js"
import { type AgentConfigShape, defaults } from "../../src/config/AgentConfig.js"
import { ActivationPipeline, type ActivationPipelineService } from "../../src/pipeline/ActivationPipeline.js"
import { CapturedLogs, captureLogs } from "./logs.js"

export interface RunningAgent {
  readonly stop: Effect.Effect<void>
  readonly logs: Effect.Effect<ReadonlyArray<string>>
  readonly context: Context.Context<AgentRuntimeServices>
}

/** A fresh state directory (removed with the scope). */
export const stateDirectory = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-agent-e2e-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/**
 * Starts an agent (its own scope, so a test can stop it and start another on the same
 * state directory). Test mode unless a pipeline is given.
 */
export const startAgent = (
  config: Pick<AgentConfigShape, "machineId" | "stateDir" | "controlPlaneUrl"> & Partial<AgentConfigShape>,
  options: {
    readonly pipeline?: Layer.Layer<ActivationPipeline>
    readonly script?: Partial<ActivationPipelineService>
    readonly testMode?: boolean
    /** More settings for the agent's `ConfigProvider` (e.g. `NIXFLEET_AGENT_METRICS_LISTEN`). */
    readonly env?: Readonly<Record<string, string>>
    /** An `HttpClient` of the program embedding the agent, in the runtime's context. */
    readonly ambientHttpClient?: Layer.Layer<HttpClient.HttpClient>
  } = {}
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const env = new Map<string, string>([
      ...(options.testMode === false ? [] : [["NIXFLEET_AGENT_ACTIVATION_TEST_MODE", "1"] as const]),
      ...Object.entries(options.env ?? {})
    ])
    const full: AgentConfigShape = {
      ...defaults,
      currentSystemPath: Path.join(config.stateDir, "current-system"),
      ...config
    }
    const layer = AgentRuntime.layer({ config: full }).pipe(
      Layer.provide(Layer.mergeAll(
        NodeContext.layer,
        options.pipeline ?? ActivationPipeline.scripted(options.script ?? {}),
        options.ambientHttpClient ?? Layer.empty
      )),
      Layer.provideMerge(captureLogs),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(env)))
    )
    const context = yield* Layer.buildWithScope(layer, scope)
    const logs = Effect.flatMap(Effect.provide(CapturedLogs, context), (captured) => captured.lines)
    const stop = Scope.close(scope, Exit.void)
    yield* Effect.addFinalizer(() => stop)
    return { context, logs, stop } satisfies RunningAgent
  })

/** Polls until `condition` holds (real time), failing after `timeoutMs`. */
export const eventually = <E, R>(
  what: string,
  condition: Effect.Effect<boolean, E, R>,
  timeoutMs = 20_000
): Effect.Effect<void, E | Error, R> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!(yield* condition)) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("50 millis")
    }
  })
