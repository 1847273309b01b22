/**
 * The crash matrix with the real activation pipeline: the agent, as a process, is
 * SIGKILLed with its whole process group while a slow `switch-to-configuration` runs, then
 * restarted on the same state directory. Behind the fault-matrix tag, like
 * StorageFaults.test.ts (it waits for the control plane's heartbeat-driven recovery).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Path from "node:path"
import { boot, buildClosure, currentClosure, makeSandbox, switchRuns } from "../../../scripts/nix/fixtures.js"
import { describeNix } from "./nix/describeNix.js"
import { confinementMissing, fill, free, startConfined } from "./support/confined.js"
import { faultMatrixEnabled, faultMatrixSkipped } from "./support/faultMatrix.js"
import {
  type Accepted,
  awaitState,
  events,
  eventually,
  groupAlive,
  hostRecord,
  logged,
  publish,
  type Spawned,
  startAgent,
  startControlPlane,
  tail
} from "./support/processes.js"

/** Each seq once with one body (a resend repeats it exactly); seqs rise in arrival order. */
const expectOncePerSeq = (accepted: Accepted, rolloutId: string) => {
  const bodies = new Map<number, string>()
  const fresh: Array<number> = []
  for (const { duplicate, envelope } of accepted.filter((entry) => entry.envelope.rolloutId === rolloutId)) {
    const body = JSON.stringify(envelope.event)
    const seen = bodies.get(envelope.event.seq)
    if (seen === undefined) bodies.set(envelope.event.seq, body)
    else expect(body, `seq ${envelope.event.seq} resent with another body`).toBe(seen)
    if (!duplicate) fresh.push(envelope.event.seq)
  }
  expect(fresh).toStrictEqual([...fresh].sort((a, b) => a - b))
  expect(new Set(fresh).size).toBe(fresh.length)
}

const describeMatrix = (name: string, body: () => void) =>
  faultMatrixEnabled() ? describeNix(name, body) : describe.skip(faultMatrixSkipped(name), body)

describeMatrix("crash matrix, real Nix", () => {
  it.scopedLive(
    "direct: SIGKILL of the agent's process group while switch-to-configuration runs; restarted, it converges " +
      "without a second switch and every event once",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const a = yield* buildClosure(sandbox, { name: "nixos-system-web-01-a", switch: { _tag: "Flip" } })
        const b = yield* buildClosure(sandbox, {
          name: "nixos-system-web-01-b",
          switch: { _tag: "Flip", delayMs: 6_000 }
        })
        yield* boot(sandbox, a)
        const cp = yield* startControlPlane(Path.join(sandbox.root, "cp"))
        const paths = {
          stateDir: sandbox.stateDir,
          currentSystemPath: sandbox.currentSystem,
          extraFlags: [
            "--system-profile",
            sandbox.profile,
            "--switch-method",
            "direct",
            "--switch-lock-path",
            sandbox.lockPath,
            "--verify-timeout-secs",
            "60"
          ]
        }
        const env = { ...sandbox.env, NIXFLEET_AGENT_PROBE_TEST_MODE: "1" }
        const first = yield* startAgent(cp, paths, env)
        let current: Spawned = first
        const { rolloutId } = yield* publish(cp, b, 0.05)
        yield* eventually(
          "the switch to b to start",
          Effect.map(switchRuns(sandbox), (runs) => runs.includes(b)),
          60_000,
          Effect.sync(() => tail(first.stderr(), 30))
        )
        first.signalGroup("SIGKILL")
        yield* first.awaitExit(10_000)
        yield* eventually("the agent's process group to be gone", Effect.sync(() => !groupAlive(first.pid)), 5_000)
        // The switch runs in a process group of its own (the agent kills it on a timeout): under
        // `direct` it outlives a process-group kill (systemd's control-group kill would take it).
        expect(yield* currentClosure(sandbox)).toBe(a)
        expect((yield* hostRecord(cp, rolloutId))?.state).toBe("Activating")

        const second = yield* startAgent(cp, paths, env)
        current = second
        // The host reaches b; the control plane sees it in a heartbeat (every 60 s) and completes
        // the activation itself; the restarted agent soaks and converges.
        yield* awaitState(cp, rolloutId, "Converged", () => current, 150_000)
        expect(yield* currentClosure(sandbox)).toBe(b)
        expect(yield* switchRuns(sandbox)).toStrictEqual([b])
        expect(logged(second, "rollout rehydrated from the control plane")).toBe(true)
        expectOncePerSeq(yield* events(cp), rolloutId)
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({ currentClosure: b, currentClosureAtDispatch: a })
      }),
    240_000
  )

  it.scopedLive.skipIf(confinementMissing !== null && process.env["CI"] === undefined)(
    "the disk fills between ActivationStarted and ActivationCompleted: the completion waits for the disk, then " +
      "reaches the control plane once",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const a = yield* buildClosure(sandbox, { name: "nixos-system-web-01-a", switch: { _tag: "Flip" } })
        const b = yield* buildClosure(sandbox, {
          name: "nixos-system-web-01-b",
          switch: { _tag: "Flip", delayMs: 4_000 }
        })
        yield* boot(sandbox, a)
        const cp = yield* startControlPlane(Path.join(sandbox.root, "cp"))
        const host = {
          stateDir: sandbox.stateDir,
          currentSystemPath: sandbox.currentSystem,
          extraFlags: [
            "--system-profile",
            sandbox.profile,
            "--switch-method",
            "direct",
            "--switch-lock-path",
            sandbox.lockPath,
            "--verify-timeout-secs",
            "60"
          ]
        }
        const agent = yield* startConfined(cp, host, "", { ...sandbox.env, NIXFLEET_AGENT_PROBE_TEST_MODE: "1" })
        const { rolloutId } = yield* publish(cp, b, 0.05)
        yield* eventually(
          "the switch to b to start",
          Effect.map(switchRuns(sandbox), (runs) => runs.includes(b)),
          60_000,
          Effect.sync(() => tail(agent.stderr(), 30))
        )
        // ActivationStarted is stored before the switch runs; the disk fills while it runs.
        yield* fill(agent, host)
        yield* eventually("the switch to land", Effect.map(currentClosure(sandbox), (closure) => closure === b), 30_000)
        yield* eventually(
          "the completion to be held for the disk",
          Effect.sync(() => logged(agent, "refuses writes")),
          30_000,
          Effect.sync(() => tail(agent.stderr(), 30))
        )
        expect((yield* hostRecord(cp, rolloutId))?.state).toBe("Activating")
        yield* free(agent, host)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 60_000)
        expect(yield* switchRuns(sandbox)).toStrictEqual([b])
        expectOncePerSeq(yield* events(cp), rolloutId)
        const kinds = (yield* events(cp)).filter((entry) => !entry.duplicate).map((entry) => entry.envelope.event.kind)
        expect(kinds).toStrictEqual(["DispatchAck", "ActivationStarted", "ActivationCompleted", "Converged"])
        expect(agent.stderr().filter((line) => line.includes("event LOST"))).toStrictEqual([])
      }),
    240_000
  )
})
