/**
 * The agent embedded in a program: the dev control plane and an agent side by side, in
 * activation test mode (nothing is built or switched), every path in a temporary directory.
 * A rollout is published; the agent's state transitions are logged until it is Converged
 * and its events are delivered; then the program ends, which stops the agent. Run it with
 * `npx tsx --conditions=@nixfleet/source packages/agent/examples/embedding.ts`.
 */
import { FileSystem } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { NixfleetAgent } from "@nixfleet/agent"
import { start } from "@nixfleet/dev-control-plane"
import { Effect, Stream } from "effect"

const HOST = "web-01"
const closure = (hash: string) => `${hash.repeat(32)}-nixos-system-${HOST}`

const program = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const dir = yield* fs.makeTempDirectoryScoped({ prefix: "nixfleet-embedding-" })
  yield* fs.symlink(`/nix/store/${closure("a")}`, `${dir}/current-system`)
  const controlPlane = yield* start()
  const { rolloutId } = yield* controlPlane.publishRollout({
    channel: "stable",
    hosts: [{ hostname: HOST, targetClosure: closure("b") }],
    soakMinutes: 0.05
  })
  const agent = NixfleetAgent.layer({
    machineId: HOST,
    controlPlaneUrl: controlPlane.url,
    trustFile: controlPlane.trustFile,
    stateDir: `${dir}/state`,
    currentSystemPath: `${dir}/current-system`,
    // Neither exists: no probes, no evidence signing.
    healthChecksFile: `${dir}/health-checks.json`,
    sshHostKeyFile: `${dir}/ssh_host_ed25519_key`,
    activationTestMode: true
  })
  // The agent runs while this effect does; Effect.provide closes its scope, which stops it.
  const converged = yield* NixfleetAgent.NixfleetAgent.pipe(
    Effect.flatMap(({ awaitDelivered, transitions }) =>
      transitions.pipe(
        Stream.tap((step) => Effect.log(`${step.rolloutId}: ${step.from} → ${step.to} (${step.event})`)),
        Stream.filter((step) => step.rolloutId === rolloutId && step.to === "Converged"),
        Stream.runHead,
        Effect.flatten,
        // Before stopping: the control plane has every event recorded so far.
        Effect.zipLeft(awaitDelivered)
      )
    ),
    Effect.timeout("2 minutes"),
    Effect.provide(agent)
  )
  const record = (yield* controlPlane.hostStates).get(`${rolloutId}/${HOST}`)
  yield* Effect.log(`${rolloutId} converged`).pipe(
    Effect.annotateLogs({ at: converged.at.toISOString(), controlPlane: record?.state })
  )
})

program.pipe(Effect.scoped, Effect.provide(NodeContext.layer), NodeRuntime.runMain)
