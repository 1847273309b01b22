/**
 * A hostile control plane in a process of its own (issue 17): it forwards the genuine
 * signed artifacts and dispatches of a real dev control plane and forges only the
 * heartbeat's snapshots. The agent, a separate process too, must switch to the signed
 * target and roll back only where it has been.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { TARGET } from "./support/fixtures.js"
import {
  awaitState,
  type ControlPlane,
  events,
  eventually,
  HOST,
  logged,
  publish,
  spawnScript,
  startAgent,
  startControlPlane,
  tail,
  tempDirectory,
  TEST_MODES,
  testModeHost
} from "./support/processes.js"

const EVIL = "1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s-nixos-system-evil"
const PROXY = Path.join(__dirname, "support", "hostileProxy.ts")
const TIMEOUT = 90_000

/** The hostile control plane in front of `cp`; the agent is pointed at it. */
const hostileProxy = (cp: ControlPlane) =>
  Effect.gen(function*() {
    const proxy = yield* spawnScript("hostile control plane", PROXY, [cp.url], {})
    yield* eventually("the hostile control plane's address", Effect.sync(() => proxy.stdout().length > 0), 30_000)
    const { url } = yield* Schema.decode(Schema.parseJson(Schema.Struct({ url: Schema.String })))(proxy.stdout()[0]!)
    const forge = (snapshots: ReadonlyArray<Record<string, unknown>>) =>
      Effect.promise(() =>
        fetch(`${url}/_hostile/snapshots`, { method: "POST", body: JSON.stringify(snapshots) }).then(() => undefined)
      )
    return { controlPlane: { ...cp, url } satisfies ControlPlane, forge }
  })

const forgedSnapshot = (rolloutId: string, fields: Record<string, unknown>) => ({
  rolloutId,
  hostname: HOST,
  channel: "stable",
  dispatchedAt: new Date().toISOString(),
  ...fields
})

describe("a hostile control plane in another process", () => {
  it.scopedLive(
    "a forged Pending snapshot cannot choose the closure a signed dispatch activates",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const hostile = yield* hostileProxy(cp)
        const { rolloutId } = yield* publish(cp, TARGET, 0.05)
        // At boot recovery the agent hears of the signed rollout as Pending on EVIL.
        yield* hostile.forge([forgedSnapshot(rolloutId, { state: "Pending", targetClosure: EVIL, lastEventSeq: 0 })])
        const agent = yield* startAgent(hostile.controlPlane, testModeHost(dir), TEST_MODES)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)
        const completed = (yield* events(cp)).map((e) => e.envelope.event).find((e) => e.kind === "ActivationCompleted")
        expect(completed).toMatchObject({ observedCurrentClosure: TARGET })
        expect(agent.stderr().some((line) => line.includes(EVIL) && line.includes("activating")), tail(agent.stderr()))
          .toBe(false)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "a forged rollback target is refused with an ERROR line; the host stays Failed",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const hostile = yield* hostileProxy(cp)
        const { rolloutId } = yield* publish(cp, TARGET, 5)
        // After a restart (a fresh state dir), the control plane claims the host ran EVIL before the switch.
        yield* hostile.forge([forgedSnapshot(rolloutId, {
          state: "Soaking",
          targetClosure: TARGET,
          currentClosureAtDispatch: EVIL,
          currentClosure: TARGET,
          lastEventSeq: 3
        })])
        const host = testModeHost(dir)
        const healthChecksFile = Path.join(dir, "health-checks.json")
        Fs.writeFileSync(
          healthChecksFile,
          JSON.stringify({ web: { kind: "exec", mode: "enforce", command: ["false"], intervalSeconds: 5 } })
        )
        const agent = yield* startAgent(hostile.controlPlane, {
          ...host,
          healthChecksFile,
          extraFlags: ["--sustained-failure-secs", "2", "--system-profile", Path.join(dir, "no-profile", "system")]
        }, { NIXFLEET_AGENT_ACTIVATION_TEST_MODE: "1" })
        yield* eventually(
          "the refused rollback",
          Effect.sync(() => logged(agent, "refusing to roll back")),
          45_000,
          Effect.sync(() => tail(agent.stderr(), 40))
        )
        const refusal = agent.stderr().find((line) => line.includes("refusing to roll back"))!
        expect(JSON.parse(refusal)).toMatchObject({ logLevel: "ERROR" })
        expect(refusal).toContain(EVIL)
        const kinds = (yield* events(cp)).map((e) => e.envelope.event.kind)
        expect(kinds).not.toContain("RollbackComplete")
        expect(agent.exited()).toBeUndefined()
      }),
    TIMEOUT
  )
})
