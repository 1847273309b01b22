/**
 * Whole rollouts through the dev control plane against real Nix in a sandbox: a healthy
 * one switches and converges; one whose probe fails is switched back for real.
 */
import { expect, it } from "@effect/vitest"
import { start } from "@nixfleet/dev-control-plane"
import {
  boot,
  buildClosure,
  currentClosure,
  makeSandbox,
  type NixSandbox,
  profileClosure
} from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describeNix } from "./nix/describeNix.js"
import { eventually, startAgent } from "./support/agentHarness.js"
import { pipeline } from "./support/nixPipeline.js"

const HOST = "web-01"

/** Nix's configuration for the sandbox, in this process's environment for the test (the pipeline inherits it). */
const nixEnvironment = (sandbox: NixSandbox) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const previous = Object.fromEntries(Object.keys(sandbox.env).map((key) => [key, process.env[key]]))
      Object.assign(process.env, sandbox.env)
      return previous
    }),
    (previous) =>
      Effect.sync(() => {
        for (const [key, value] of Object.entries(previous)) {
          if (value === undefined) delete process.env[key]
          else process.env[key] = value
        }
      })
  )

const rollout = (probe: Record<string, unknown>, soakMinutes: number) =>
  Effect.gen(function*() {
    const sandbox = yield* makeSandbox
    yield* nixEnvironment(sandbox)
    const prior = yield* buildClosure(sandbox, { name: "nixos-system-prior", switch: { _tag: "Flip" } })
    const target = yield* buildClosure(sandbox, { name: "nixos-system-next", switch: { _tag: "Flip" } })
    yield* boot(sandbox, prior)
    const cp = yield* start()
    const healthChecksFile = Path.join(sandbox.root, "health-checks.json")
    Fs.writeFileSync(healthChecksFile, JSON.stringify({ web: probe }))
    const { rolloutId } = yield* cp.publishRollout({
      channel: "stable",
      hosts: [{ hostname: HOST, targetClosure: target }],
      soakMinutes,
      onHealthFailure: "rollback-and-halt"
    })
    yield* startAgent({
      machineId: HOST,
      stateDir: Path.join(sandbox.stateDir, "agent"),
      controlPlaneUrl: cp.url,
      trustFile: cp.trustFile,
      currentSystemPath: sandbox.currentSystem,
      healthChecksFile,
      sustainedFailureSecs: 2
    }, { testMode: false, pipeline: pipeline(sandbox, 60) })
    const state = Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state)
    return { cp, prior, sandbox, state, target }
  })

describeNix("rollouts against real Nix", () => {
  it.scopedLive("a healthy rollout switches the sandbox and converges", () =>
    Effect.gen(function*() {
      const { sandbox, state, target } = yield* rollout({
        kind: "exec",
        mode: "enforce",
        command: ["true"],
        intervalSeconds: 5
      }, 0.1)
      yield* eventually("Converged", Effect.map(state, (s) => s === "Converged"), 60_000)
      expect(yield* currentClosure(sandbox)).toBe(target)
      expect(yield* profileClosure(sandbox)).toBe(target)
    }), 120_000)

  it.scopedLive("a rollout whose probe fails is switched back to the previous closure", () =>
    Effect.gen(function*() {
      const { cp, prior, sandbox, state, target } = yield* rollout(
        { kind: "exec", mode: "enforce", command: ["false"], intervalSeconds: 5 },
        5
      )
      yield* eventually("Reverted", Effect.map(state, (s) => s === "Reverted"), 60_000)
      expect(yield* currentClosure(sandbox)).toBe(prior)
      expect(yield* profileClosure(sandbox)).toBe(prior)
      expect(yield* cp.quarantined).toStrictEqual([{ channel: "stable", closure: target }])
    }), 120_000)
})
