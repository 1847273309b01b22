import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { start } from "@nixfleet/dev-control-plane"
import { Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { AgentConfig } from "../src/config/AgentConfig.js"
import { HostLedger, LEDGER_FILE } from "../src/runtime/HostLedger.js"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { PRIOR, TARGET, testConfig } from "./support/fixtures.js"

const EVIL = "1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s-nixos-system-evil"
const HOST = "web-01"

const ledgerIn = (stateDir: string) => HostLedger.layer.pipe(Layer.provide(AgentConfig.make(testConfig({ stateDir }))))

const withLedger = <A, E>(stateDir: string, f: (ledger: HostLedger["Type"]) => Effect.Effect<A, E>) =>
  Effect.flatMap(HostLedger, f).pipe(Effect.provide(ledgerIn(stateDir)))

describe("HostLedger", () => {
  it.scoped("what it records survives a restart; only a newer manifest replaces a channel's newest", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const at = new Date("2026-05-01T00:00:00Z")
      yield* withLedger(dir, (ledger) =>
        Effect.all([
          ledger.recordSwitch({
            rolloutId: "stable@a1",
            target: TARGET,
            previous: PRIOR,
            soakDueAt: at,
            recordedAt: at
          }),
          ledger.acceptManifest("stable", { id: "stable@a1", signedAt: at }),
          ledger.acceptManifest("stable", { id: "stable@a0", signedAt: new Date(at.getTime() - 1000) }),
          ledger.acceptFleet({ id: "f1", signedAt: at })
        ]))
      const reopened = yield* withLedger(
        dir,
        (ledger) => Effect.all([ledger.switchOf("stable@a1"), ledger.newestManifest("stable"), ledger.newestFleet])
      )
      expect(reopened).toStrictEqual([
        { rolloutId: "stable@a1", target: TARGET, previous: PRIOR, soakDueAt: at, recordedAt: at },
        { channel: "stable", id: "stable@a1", signedAt: at },
        { id: "f1", signedAt: at }
      ])
      expect(Fs.statSync(Path.join(dir, LEDGER_FILE)).mode & 0o777).toBe(0o600)
    }))

  it.scoped("a ledger that is not one is set aside loudly and an empty one starts", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      Fs.writeFileSync(Path.join(dir, LEDGER_FILE), "{not json")
      expect(yield* withLedger(dir, (ledger) => ledger.newestFleet)).toBeUndefined()
      expect(Fs.readdirSync(dir).some((name) => name.startsWith(`${LEDGER_FILE}.corrupt-`))).toBe(true)
    }))

  it.scoped("switch records are bounded", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const at = new Date(0)
      yield* withLedger(dir, (ledger) =>
        Effect.forEach(
          Array.from({ length: 100 }, (_, i) => i),
          (i) =>
            ledger.recordSwitch({
              rolloutId: `stable@${i}`,
              target: TARGET,
              previous: null,
              soakDueAt: null,
              recordedAt: at
            })
        ))
      const ledger = JSON.parse(Fs.readFileSync(Path.join(dir, LEDGER_FILE), "utf8")) as { switches: Array<unknown> }
      expect(ledger.switches).toHaveLength(64)
    }))
})

describe("no downgrade by replay (agent + dev control plane, in process)", () => {
  it.scopedLive(
    "an older signed manifest that is still fresh is refused once a newer one was accepted",
    () =>
      Effect.gen(function*() {
        const cp = yield* start()
        const dir = yield* stateDirectory
        Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
        const newer = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        const agent = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        const stateOf = (rolloutId: string) =>
          Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state)
        yield* eventually("Converged", Effect.map(stateOf(newer.rolloutId), (s) => s === "Converged"), 30_000)
        // Ten minutes old: inside the freshness window, so only the ledger can refuse it.
        const older = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: EVIL }],
          soakMinutes: 0.02,
          signedAt: new Date(Date.now() - 10 * 60_000)
        })
        yield* eventually(
          "the downgrade refusal",
          Effect.map(agent.logs, (lines) => lines.some((l) => l.includes("dispatch refused (downgrade)"))),
          30_000
        )
        expect(yield* stateOf(older.rolloutId)).toBe("Pending")
        const sent = (yield* cp.events).filter((e) => JSON.stringify(e.envelope).includes(older.rolloutId))
        expect(sent).toStrictEqual([])
      }).pipe(Effect.provide(NodeContext.layer)),
    60_000
  )
})
