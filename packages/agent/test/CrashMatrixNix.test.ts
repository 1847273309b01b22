/**
 * The crash matrix with the real activation pipeline: the agent, as a process, is
 * SIGKILLed with its whole process group while a slow `switch-to-configuration` runs, then
 * restarted on the same state directory. Behind the fault-matrix tag, like
 * StorageFaults.test.ts (it waits for the control plane's heartbeat-driven recovery).
 */
import { describe, expect, it } from "@effect/vitest"
import { boot, buildClosure, currentClosure, makeSandbox, switchRuns } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describeNix } from "./nix/describeNix.js"
import { confinementMissing, fill, free, startConfined } from "./support/confined.js"
import { faultMatrixEnabled, faultMatrixSkipped } from "./support/faultMatrix.js"
import { unusedPort } from "./support/ports.js"
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

/**
 * A `nix-store` in front of the real one that, while `<dir>/slow` exists, waits `seconds`
 * before a `--realise` (a realise that substitutes a large closure); every realise is
 * logged to `<dir>/realise.log`. Returned: the directory, to put first on the agent's PATH.
 */
const slowRealise = (root: string, seconds: number) =>
  Effect.sync(() => {
    const real = (process.env["PATH"] ?? "").split(Path.delimiter)
      .map((dir) => Path.join(dir, "nix-store"))
      .find((file) => Fs.existsSync(file))
    if (real === undefined) throw new Error("nix-store not on PATH")
    const dir = Path.join(root, "slow-nix")
    Fs.mkdirSync(dir, { recursive: true })
    Fs.writeFileSync(Path.join(dir, "slow"), "")
    Fs.writeFileSync(
      Path.join(dir, "nix-store"),
      [
        "#!/bin/sh",
        `dir='${dir}'`,
        "if [ \"$1\" = --realise ]; then",
        "  echo \"realise $2\" >> \"$dir/realise.log\"",
        `  if [ -e "$dir/slow" ]; then /bin/sleep ${seconds}; fi`,
        "fi",
        `exec '${real}' "$@"`,
        ""
      ].join("\n"),
      { mode: 0o755 }
    )
    return dir
  })

const realiseRuns = (dir: string) =>
  Effect.sync(() => {
    const file = Path.join(dir, "realise.log")
    return Fs.existsSync(file) ? Fs.readFileSync(file, "utf8").split("\n").filter((line) => line !== "") : []
  })

/** The agent's `nixfleet_agent_outbox_lost_events_total` (0 when it never counted). */
const lostEvents = (port: number) =>
  Effect.promise(async () => {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((response) => response.text())
    const line = text.split("\n").find((l) => l.startsWith("nixfleet_agent_outbox_lost_events_total"))
    return line === undefined ? 0 : Number(line.split(" ").at(-1))
  })

/** The kinds the control plane accepted for the first time, in order. */
const freshKinds = (cp: Parameters<typeof events>[0], rolloutId: string) =>
  Effect.map(
    events(cp),
    (accepted) =>
      accepted.filter((entry) => !entry.duplicate && entry.envelope.rolloutId === rolloutId)
        .map((entry) => entry.envelope.event.kind)
  )

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

        const port = yield* unusedPort
        const second = yield* startAgent(cp, {
          ...paths,
          extraFlags: [...paths.extraFlags, "--metrics-listen", `127.0.0.1:${port}`]
        }, env)
        current = second
        // The restarted agent resumes the switch its previous run released: it waits for the
        // switch that outlived it, sees b running, and reports the completion (no second switch).
        yield* awaitState(cp, rolloutId, "Converged", () => current, 150_000)
        expect(yield* currentClosure(sandbox)).toBe(b)
        expect(yield* switchRuns(sandbox)).toStrictEqual([b])
        expect(logged(second, "rollout rehydrated from the control plane")).toBe(true)
        expect(logged(second, "was released before the restart and its outcome never recorded")).toBe(true)
        expect(logged(second, "resuming after a restart: Complete")).toBe(true)
        expectOncePerSeq(yield* events(cp), rolloutId)
        expect(yield* freshKinds(cp, rolloutId)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "Converged"
        ])
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({ currentClosure: b, currentClosureAtDispatch: a })
        expect(yield* lostEvents(port)).toBe(0)
      }),
    240_000
  )

  it.scopedLive(
    "direct: SIGKILL of the agent's process group while realising; restarted, it realises and switches once, " +
      "without a second ActivationStarted",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const a = yield* buildClosure(sandbox, { name: "nixos-system-web-01-a", switch: { _tag: "Flip" } })
        const b = yield* buildClosure(sandbox, { name: "nixos-system-web-01-b", switch: { _tag: "Flip" } })
        yield* boot(sandbox, a)
        const slow = yield* slowRealise(sandbox.root, 30)
        const cp = yield* startControlPlane(Path.join(sandbox.root, "cp"))
        const port = yield* unusedPort
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
        const env = {
          ...sandbox.env,
          NIXFLEET_AGENT_PROBE_TEST_MODE: "1",
          PATH: `${slow}${Path.delimiter}${process.env["PATH"] ?? ""}`
        }
        const first = yield* startAgent(cp, paths, env)
        let current: Spawned = first
        const { rolloutId } = yield* publish(cp, b, 0.05)
        yield* eventually(
          "the realise of b to start and ActivationStarted to reach the control plane",
          Effect.zipWith(
            realiseRuns(slow),
            freshKinds(cp, rolloutId),
            (runs, kinds) => runs.length > 0 && kinds.includes("ActivationStarted")
          ),
          60_000,
          Effect.sync(() => tail(first.stderr(), 30))
        )
        first.signalGroup("SIGKILL")
        yield* first.awaitExit(10_000)
        yield* eventually("the agent's process group to be gone", Effect.sync(() => !groupAlive(first.pid)), 5_000)
        expect(yield* currentClosure(sandbox)).toBe(a)
        expect(yield* switchRuns(sandbox)).toStrictEqual([])
        expect((yield* hostRecord(cp, rolloutId))?.state).toBe("Activating")

        Fs.rmSync(Path.join(slow, "slow"))
        const second = yield* startAgent(cp, {
          ...paths,
          extraFlags: [...paths.extraFlags, "--metrics-listen", `127.0.0.1:${port}`]
        }, env)
        current = second
        yield* awaitState(cp, rolloutId, "Converged", () => current, 120_000)
        expect(logged(second, "resuming after a restart: Rerun")).toBe(true)
        expect(yield* currentClosure(sandbox)).toBe(b)
        expect(yield* switchRuns(sandbox)).toStrictEqual([b])
        expect((yield* realiseRuns(slow)).length).toBe(2)
        expectOncePerSeq(yield* events(cp), rolloutId)
        expect(yield* freshKinds(cp, rolloutId)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "Converged"
        ])
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({ currentClosure: b, currentClosureAtDispatch: a })
        expect(yield* lostEvents(port)).toBe(0)
      }),
    240_000
  )

  it.scopedLive(
    "direct: SIGKILL of the agent's process group while rolling back; restarted, it records the rollback " +
      "without switching back twice",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        // b's switch lands on a third closure c (verify fails: the rollout rolls back to a); a's own
        // switch runs the rollback, slowly, so that the agent dies while it runs.
        const a = yield* buildClosure(sandbox, {
          name: "nixos-system-web-01-a",
          switch: { _tag: "Flip", delayMs: 6_000 }
        })
        const c = yield* buildClosure(sandbox, { name: "nixos-system-web-01-c", switch: { _tag: "Flip" } })
        const b = yield* buildClosure(sandbox, {
          name: "nixos-system-web-01-b",
          switch: { _tag: "FlipTo", closure: c }
        })
        yield* boot(sandbox, a)
        const cp = yield* startControlPlane(Path.join(sandbox.root, "cp"))
        const port = yield* unusedPort
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
          "the rollback's switch to a to start",
          Effect.map(switchRuns(sandbox), (runs) => runs.includes(a)),
          60_000,
          Effect.sync(() => tail(first.stderr(), 30))
        )
        first.signalGroup("SIGKILL")
        yield* first.awaitExit(10_000)
        yield* eventually("the agent's process group to be gone", Effect.sync(() => !groupAlive(first.pid)), 5_000)
        expect((yield* hostRecord(cp, rolloutId))?.state).toBe("Failed")
        expect(yield* currentClosure(sandbox)).toBe(c)

        const second = yield* startAgent(cp, {
          ...paths,
          extraFlags: [...paths.extraFlags, "--metrics-listen", `127.0.0.1:${port}`]
        }, env)
        current = second
        yield* awaitState(cp, rolloutId, "Reverted", () => current, 120_000)
        expect(logged(second, "resuming after a restart: RolledBack")).toBe(true)
        expect(yield* currentClosure(sandbox)).toBe(a)
        expect(yield* switchRuns(sandbox)).toStrictEqual([b, a])
        expectOncePerSeq(yield* events(cp), rolloutId)
        expect(yield* freshKinds(cp, rolloutId)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationFailed",
          "RollbackComplete"
        ])
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({ currentClosure: a, currentClosureAtDispatch: a })
        expect(yield* lostEvents(port)).toBe(0)
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
