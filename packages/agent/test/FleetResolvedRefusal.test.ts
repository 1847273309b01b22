/**
 * fleet.resolved as the v0.2 reference writes it (`system`, not `platform`) rolls out; a
 * fleet the agent refuses is one ERROR line naming the field, a refusal in `status` and in
 * the metrics, never a silent hold of every dispatch; accepted again, the held dispatch goes
 * on. Agent and dev control plane in one process, over real HTTP.
 */
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, start } from "@nixfleet/dev-control-plane"
import { Context, Duration, Effect, Metric } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { renderStatus } from "../src/cli/StatusTable.js"
import { fleetRefusals, fleetRefused, MANIFEST_POLL_INTERVAL } from "../src/controlplane/ManifestPoll.js"
import { labelEffect } from "../src/observability/Metrics.js"
import { AgentStatus } from "../src/status/AgentStatus.js"
import { eventually, type RunningAgent, startAgent, stateDirectory } from "./support/agentHarness.js"
import { PRIOR, TARGET } from "./support/fixtures.js"

const HOST = "web-01"
const TIMEOUT = 120_000

const stateOf = (cp: DevControlPlane, rolloutId: string) =>
  Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state)

const fleetText = (cp: DevControlPlane) =>
  Effect.promise(() => fetch(`${cp.url}/v1/fleet.resolved`).then((response) => response.text()))

const report = (agent: RunningAgent) => Context.get(agent.context, AgentStatus).report

// The agent's series carry its machine id.
const refusedGauge = Effect.map(Metric.value(fleetRefused), (state) => state.value).pipe(labelEffect(HOST))
const refusalCount = (reason: string) =>
  Effect.map(Metric.value(Metric.tagged(fleetRefusals, "reason", reason)), (state) => state.count).pipe(
    labelEffect(HOST)
  )

const linkCurrentSystem = (dir: string) => Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))

describe("fleet.resolved as upstream writes it", () => {
  it.scopedLive(
    "a fleet whose hosts name their platform `system` (the v0.2 reference) rolls out",
    () =>
      Effect.gen(function*() {
        const cp = yield* start()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02,
          platformKey: "system"
        })
        const served = JSON.parse(yield* fleetText(cp))
        expect(Object.keys(served.hosts[HOST]).sort()).toStrictEqual([
          "channel",
          "closureHash",
          "pubkey",
          "system",
          "tags"
        ])
        const agent = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        yield* eventually("Converged", Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"), 30_000)
        expect((yield* report(agent)).fleetRefused).toBeUndefined()
        expect(yield* refusedGauge).toBe(0)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "a refused fleet: one ERROR line naming the field, status and metrics say why dispatches wait; accepted, the held dispatch goes on",
    () =>
      Effect.gen(function*() {
        const cp = yield* start()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        const good = yield* fleetText(cp)
        // Signed by the release key, so it verifies: it is the schema that refuses it.
        const bad = JSON.parse(good)
        delete bad.hosts[HOST].platform
        yield* cp.serveFleet(JSON.stringify(bad, null, 2))
        const before = yield* refusalCount("schema")

        const agent = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        yield* eventually(
          "the refusal in status",
          Effect.map(report(agent), (r) => r.fleetRefused !== undefined)
        )
        yield* eventually(
          "the dispatch held",
          Effect.map(agent.logs, (lines) => lines.some((line) => line.includes("holding the event until it is")))
        )
        const refused = (yield* report(agent)).fleetRefused
        expect(refused).toMatchObject({ reason: "schema", policyCached: false })
        expect(refused?.detail).toContain(`$.hosts["${HOST}"]: missing field \`system\``)
        const shown = renderStatus(yield* report(agent), [])
        expect(shown).toContain(`fleet.resolved refused (schema): $.hosts["${HOST}"]: missing field \`system\``)
        expect(shown).toContain("no rollout policy: every dispatch is held until a fleet.resolved is accepted")
        const errors = (yield* agent.logs).filter((line) => line.startsWith("ERROR") && line.includes("refused"))
        expect(errors).toHaveLength(1)
        expect(errors[0]).toContain(`$.hosts["${HOST}"]: missing field \`system\``)
        expect(yield* refusedGauge).toBe(1)
        expect((yield* refusalCount("schema")) - before).toBe(1)
        expect(yield* stateOf(cp, rolloutId)).toBe("Pending")

        // The next poll takes the fixed fleet: the held dispatch goes on, the refusal clears.
        yield* cp.serveFleet(good)
        yield* eventually(
          "Converged",
          Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"),
          Duration.toMillis(MANIFEST_POLL_INTERVAL) + 30_000
        )
        expect((yield* report(agent)).fleetRefused).toBeUndefined()
        expect(yield* refusedGauge).toBe(0)
        expect((yield* agent.logs).filter((line) => line.startsWith("ERROR") && line.includes("refused"))).toHaveLength(
          1
        )
        expect((yield* agent.logs).some((line) => line.includes("fleet.resolved accepted again"))).toBe(true)
      }),
    TIMEOUT
  )
})
