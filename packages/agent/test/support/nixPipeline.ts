/**
 * The real activation pipeline over a real-Nix sandbox, for the tests that run it.
 */
import { NodeContext } from "@effect/platform-node"
import type { NixSandbox } from "@nixfleet/dev/NixFixtures"
import { Effect, Layer } from "effect"
import { PipelineConfig } from "../../src/config/PipelineConfig.js"
import * as NixActivationPipeline from "../../src/pipeline/NixActivationPipeline.js"

/** Runs `effect` with extra environment variables (Nix's configuration), restoring them after. */
export const withEnv = <A, E, R>(env: Readonly<Record<string, string>>, effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const previous = Object.fromEntries(Object.keys(env).map((key) => [key, process.env[key]]))
      Object.assign(process.env, env)
      return previous
    }),
    () => effect,
    (previous) =>
      Effect.sync(() => {
        for (const [key, value] of Object.entries(previous)) {
          if (value === undefined) delete process.env[key]
          else process.env[key] = value
        }
      })
  )

export const pipeline = (sandbox: NixSandbox, verifyTimeoutSecs = 30) =>
  NixActivationPipeline.layer.pipe(
    Layer.provide(PipelineConfig.make({
      currentSystemPath: sandbox.currentSystem,
      systemProfile: sandbox.profile,
      switchMethod: "direct",
      switchLockPath: sandbox.lockPath,
      stateDir: sandbox.stateDir,
      verifyTimeoutSecs,
      realiseTimeoutSecs: 120,
      storeDir: "/nix/store"
    })),
    Layer.provide(NodeContext.layer)
  )
