/**
 * `nixfleet-agent status` against a running agent (its status socket), a stopped one (its
 * files) and a state directory that does not exist; and a second agent on the same state
 * directory refused. The agent and the control plane run as separate processes.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { StatusReportJson } from "../src/status/StatusReport.js"
import { PRIOR, TARGET } from "./support/fixtures.js"
import {
  AGENT,
  awaitState,
  type ControlPlane,
  eventually,
  publish,
  type Spawned,
  spawnScript,
  startAgent,
  startControlPlane,
  tail,
  tempDirectory,
  TEST_MODES,
  testModeHost
} from "./support/processes.js"

const TIMEOUT = 90_000

/** Runs `status` to its end: exit code, stdout and stderr. */
const status = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const spawned = yield* spawnScript("status", AGENT, ["status", ...args], {})
    const exit = yield* spawned.awaitExit(30_000)
    return { code: exit?.code, stdout: spawned.stdout().join("\n"), stderr: spawned.stderr().join("\n") }
  }).pipe(Effect.scoped)

const report = (stdout: string) => Schema.decodeUnknownSync(StatusReportJson)(stdout.trim())

const converged = (cp: ControlPlane, agent: Spawned) =>
  Effect.gen(function*() {
    const { rolloutId } = yield* publish(cp, TARGET, 0.02)
    yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)
    return rolloutId
  })

// Each test has its own state directory, control plane and agent: they run concurrently.
describe("nixfleet-agent status", { concurrent: true }, () => {
  it.scopedLive(
    "asks the running agent, then reads the state directory once it has stopped",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startAgent(cp, host, TEST_MODES)
        const rolloutId = yield* converged(cp, agent)

        // The reducer publishes Converged before the sender delivers it: wait for an empty outbox.
        yield* eventually(
          "the live report to show an empty outbox",
          Effect.map(
            status(["--state-dir", host.stateDir, "--json"]),
            ({ code, stdout }) => code === 0 && report(stdout).outbox?.depth === 0
          ),
          20_000
        )
        const live = yield* status(["--state-dir", host.stateDir, "--json"])
        expect(live.code).toBe(0)
        const answered = report(live.stdout)
        expect(answered).toMatchObject({
          source: "live",
          agent: { running: true, lifecycle: "running", phase: `idle: ${rolloutId} Converged` },
          machineId: "web-01",
          controlPlaneUrl: cp.url,
          stateDir: host.stateDir,
          currentClosure: PRIOR,
          outbox: { depth: 0, deadLetters: 0, recentDeadLetters: [] }
        })
        expect(answered.rollouts.map(({ lastEventSeq, rolloutId, state, targetClosure }) => ({
          rolloutId,
          state,
          lastEventSeq,
          targetClosure
        }))).toStrictEqual([{ rolloutId, state: "Converged", lastEventSeq: 4, targetClosure: TARGET }])

        const table = yield* status(["--state-dir", host.stateDir])
        expect(table.code).toBe(0)
        expect(table.stdout).toMatch(/^nixfleet-agent \S+: running \(pid \d+, since /)
        expect(table.stdout).toMatch(
          new RegExp(`${rolloutId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s+Converged\\s+4\\s`)
        )
        expect(table.stdout).toContain(`current closure:  ${PRIOR}`)

        // A second agent on the same state directory would share its outbox: refused.
        const second = yield* startAgent(cp, host, TEST_MODES)
        const refused = yield* second.awaitExit(30_000)
        expect(refused?.code, tail(second.stderr())).toBe(78)
        expect(second.stderr().join("\n")).toContain("another agent is running on this state directory")

        agent.signal("SIGTERM")
        expect((yield* agent.awaitExit(30_000))?.code).toBe(0)
        expect(Fs.existsSync(Path.join(host.stateDir, "agent.sock"))).toBe(false)

        // The link is the one the agent last reported.
        const files = yield* status(["--state-dir", host.stateDir, "--json"])
        expect(files.code, files.stderr).toBe(3)
        const fromFiles = report(files.stdout)
        expect(fromFiles).toMatchObject({
          source: "state-dir",
          agent: { running: false, pid: null, lifecycle: "stopped" },
          machineId: "web-01",
          currentClosure: PRIOR,
          outbox: { depth: 0, deadLetters: 0 }
        })
        expect(fromFiles.agent.phase).toMatch(/^not running \(stopped at /)
        expect(fromFiles.rollouts.map((r) => [r.rolloutId, r.state, r.lastEventSeq])).toStrictEqual([
          [rolloutId, "Converged", 4]
        ])
        expect(files.stderr).toContain("the agent did not answer")

        const human = yield* status(["--state-dir", host.stateDir])
        expect(human.code).toBe(3)
        expect(human.stdout).toMatch(/^nixfleet-agent \S+: not running/)
        expect(human.stdout).toContain("note: the agent did not answer")
      }),
    TIMEOUT
  )

  it.scopedLive("an agent killed with SIGKILL: the report says it did not stop cleanly", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      const cp = yield* startControlPlane(Path.join(dir, "cp"))
      const host = testModeHost(dir)
      const agent = yield* startAgent(cp, host, TEST_MODES)
      yield* converged(cp, agent)
      yield* eventually(
        "status.json",
        Effect.sync(() => Fs.existsSync(Path.join(host.stateDir, "status.json"))),
        20_000
      )
      agent.signalGroup("SIGKILL")
      yield* agent.awaitExit(10_000)

      const files = yield* status(["--state-dir", host.stateDir, "--json"])
      expect(files.code, files.stderr).toBe(3)
      const fromFiles = report(files.stdout)
      expect(fromFiles.agent.running).toBe(false)
      expect(fromFiles.agent.phase).toMatch(/^not running \(last report .* by pid \d+, .*; it did not stop cleanly\)$/)

      // The socket the killed agent left is no obstacle to the next one.
      const restarted = yield* startAgent(cp, host, TEST_MODES)
      yield* eventually(
        "the restarted agent to answer",
        Effect.map(status(["--state-dir", host.stateDir, "--json"]), ({ code }) => code === 0),
        30_000
      )
      restarted.signal("SIGTERM")
      expect((yield* restarted.awaitExit(30_000))?.code).toBe(0)
    }), TIMEOUT)

  it.scopedLive(
    "no state directory: exit 4 with one line; garbage in status.json is a note, not a crash",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const missing = yield* status(["--state-dir", Path.join(dir, "nowhere")])
        expect(missing.code).toBe(4)
        expect(missing.stdout).toBe("")
        expect(missing.stderr.trim().split("\n")).toStrictEqual([
          `nixfleet-agent: no agent state in ${Path.join(dir, "nowhere")} (is --state-dir right?)`
        ])

        const stateDir = Path.join(dir, "state")
        Fs.mkdirSync(stateDir)
        Fs.writeFileSync(Path.join(stateDir, "status.json"), "{\"source\": garbage")
        Fs.writeFileSync(Path.join(stateDir, "outbox.sqlite"), "not a database")
        const garbage = yield* status(["--state-dir", stateDir, "--current-system-path", Path.join(dir, "none")])
        expect(garbage.code).toBe(3)
        expect(garbage.stdout).toContain("status.json is not a status report")
        expect(garbage.stdout).toContain("outbox read failed")
        expect(garbage.stdout).toContain("current closure:  -")
        // Read-only: nothing set aside, nothing created.
        expect(Fs.readdirSync(stateDir).sort()).toStrictEqual(["outbox.sqlite", "status.json"])
      }),
    TIMEOUT
  )
})
