/**
 * The agent and the dev control plane as separate processes, as they run on a host: both
 * spawned from their bundles with node from the repository root (each in a process group
 * of its own, killed with the test's scope), driven and observed only through the control
 * plane's operator API and the agent's JSON log lines on stderr.
 */
import { describe, expect, it } from "@effect/vitest"
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
import { PRIOR, TARGET } from "./support/fixtures.js"
import {
  type Accepted,
  awaitState,
  events,
  eventually,
  groupAlive,
  HOST,
  hostRecord,
  logged,
  publish,
  startAgent,
  startControlPlane,
  tail,
  tempDirectory,
  TEST_MODES,
  testModeHost
} from "./support/processes.js"

const UPSTREAM_KEYS: Readonly<Record<string, ReadonlyArray<string>>> = {
  DispatchAck: ["currentClosureAtDispatch", "kind", "receivedAt", "seq"],
  ActivationStarted: ["kind", "seq", "startedAt", "switchMethod"],
  ActivationCompleted: ["completedAt", "exitCode", "kind", "observedCurrentClosure", "seq"],
  Converged: ["convergedAt", "currentClosure", "kind", "seq"]
}
const KINDS = ["DispatchAck", "ActivationStarted", "ActivationCompleted", "Converged"]

/**
 * The outbox delivered every event once and in order: the non-duplicate entries have
 * seqs 1..n in arrival order and the kinds of a rollout that converged; a resend is only
 * ever flagged `duplicate` and repeats a seq already recorded. Every envelope carries
 * exactly the upstream keys.
 */
const expectDeliveredInOrder = (accepted: Accepted, rolloutId: string) => {
  const seen = new Set<number>()
  for (const { duplicate, envelope } of accepted) {
    expect(Object.keys(envelope).sort()).toStrictEqual(["event", "hostname", "rolloutId"])
    expect({ hostname: envelope.hostname, rolloutId: envelope.rolloutId }).toStrictEqual({ hostname: HOST, rolloutId })
    expect(Object.keys(envelope.event).sort(), envelope.event.kind).toStrictEqual(UPSTREAM_KEYS[envelope.event.kind])
    if (duplicate) expect(seen.has(envelope.event.seq), `duplicate of seq ${envelope.event.seq}`).toBe(true)
    else seen.add(envelope.event.seq)
  }
  const fresh = accepted.filter((entry) => !entry.duplicate).map((entry) => entry.envelope.event)
  expect(fresh.map((event) => event.seq)).toStrictEqual(fresh.map((_, i) => i + 1))
  expect(fresh.map((event) => event.kind)).toStrictEqual(KINDS)
  return fresh
}

const TIMEOUT = 90_000

// Each test runs its own control plane and agent, and mostly waits: they run concurrently.
describe("agent and dev control plane as separate processes", { concurrent: true }, () => {
  it.scopedLive(
    "a rollout reaches Converged in activation test mode; events have seqs 1..n and exactly the upstream keys",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startAgent(cp, host, TEST_MODES)
        const { rolloutId } = yield* publish(cp, TARGET, 0.05)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)

        const accepted = yield* events(cp)
        expect(accepted.filter((entry) => entry.duplicate)).toStrictEqual([])
        const fresh = expectDeliveredInOrder(accepted, rolloutId)
        // The closure that ran at dispatch (the rollback target), and the one it converged on.
        expect(fresh[0]).toMatchObject({ kind: "DispatchAck", currentClosureAtDispatch: PRIOR })
        expect(fresh[3]).toMatchObject({ kind: "Converged", currentClosure: TARGET })
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({
          state: "Converged",
          currentClosureAtDispatch: PRIOR,
          currentClosure: TARGET,
          lastEventSeq: 4
        })
        // Test mode activates nothing: the link is untouched.
        expect(Fs.readlinkSync(host.currentSystemPath)).toBe(`/nix/store/${PRIOR}`)

        // SIGTERM: a clean stop, exit 0, within the 25 s drain.
        agent.signal("SIGTERM")
        expect(yield* agent.awaitExit(30_000), tail(agent.stderr())).toStrictEqual({ code: 0, signal: null })
      }),
    TIMEOUT
  )

  it.scopedLive(
    "an agent SIGKILLed mid-soak and restarted rehydrates from the snapshot, converges, and loses no event",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const first = yield* startAgent(cp, host, TEST_MODES)
        let current = first
        const { rolloutId, soakDueAt } = yield* publish(cp, TARGET, 0.3)
        yield* awaitState(cp, rolloutId, "Soaking", () => current, 45_000)
        // Still inside the soak: the convergence is the restarted agent's to decide.
        expect(Date.parse(soakDueAt) - Date.now()).toBeGreaterThan(3_000)

        first.signalGroup("SIGKILL")
        expect(yield* first.awaitExit(10_000)).toStrictEqual({ code: null, signal: "SIGKILL" })
        // The agent and anything it ran: the whole group is gone.
        yield* eventually(
          "the killed agent's process group to be gone",
          Effect.sync(() => !groupAlive(first.pid)),
          5_000
        )
        expect((yield* hostRecord(cp, rolloutId))?.state).toBe("Soaking")

        const second = yield* startAgent(cp, host, TEST_MODES)
        current = second
        yield* awaitState(cp, rolloutId, "Converged", () => current, 60_000)

        const fresh = expectDeliveredInOrder(yield* events(cp), rolloutId)
        expect(fresh[3]).toMatchObject({ kind: "Converged", currentClosure: TARGET })
        // Converged no earlier than the soak allowed.
        expect(Date.parse(String(fresh[3]?.["convergedAt"]))).toBeGreaterThanOrEqual(Date.parse(soakDueAt))
        expect(
          logged(second, "rollout rehydrated from the control plane"),
          `the restarted agent's stderr has no "rollout rehydrated from the control plane" line; ` +
            `it printed ${second.stderr().length} line(s):\n${tail(second.stderr())}`
        ).toBe(true)
      }),
    120_000
  )
})

describeNix("agent and dev control plane as separate processes, real Nix", () => {
  const nixFlags = (sandbox: NixSandbox) => [
    "--system-profile",
    sandbox.profile,
    "--switch-method",
    "direct",
    "--switch-lock-path",
    sandbox.lockPath,
    "--verify-timeout-secs",
    "60"
  ]

  it.scopedLive(
    "a published closure is realised, set in the profile and switched to: Converged, link and profile on it",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const a = yield* buildClosure(sandbox, { name: "nixos-system-web-01-a", switch: { _tag: "Flip" } })
        const b = yield* buildClosure(sandbox, { name: "nixos-system-web-01-b", switch: { _tag: "Flip" } })
        yield* boot(sandbox, a)
        const cp = yield* startControlPlane(Path.join(sandbox.root, "cp"))
        // No activation test mode: the agent's Nix subprocesses get the sandbox's NIX_CONFIG.
        const agent = yield* startAgent(cp, {
          stateDir: sandbox.stateDir,
          currentSystemPath: sandbox.currentSystem,
          extraFlags: nixFlags(sandbox)
        }, { ...sandbox.env, NIXFLEET_AGENT_PROBE_TEST_MODE: "1" })
        const { rolloutId } = yield* publish(cp, b, 0.05)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 90_000)

        expect(yield* currentClosure(sandbox)).toBe(b)
        expect(yield* profileClosure(sandbox)).toBe(b)
        const fresh = expectDeliveredInOrder(yield* events(cp), rolloutId)
        expect(fresh[0]).toMatchObject({ kind: "DispatchAck", currentClosureAtDispatch: a })
        expect(fresh[2]).toMatchObject({ kind: "ActivationCompleted", exitCode: 0, observedCurrentClosure: b })
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({ currentClosureAtDispatch: a, currentClosure: b })
      }),
    180_000
  )
})
