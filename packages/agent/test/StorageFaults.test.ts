/**
 * The storage-fault matrix on a real file system: the agent runs in a private mount
 * namespace (`unshare -m`) whose state directory is a small tmpfs, against the dev control
 * plane in another process; the test fills it (`dd`), frees it, remounts it read-only or
 * corrupts the outbox through `nsenter`. Needs root and util-linux's unshare and nsenter:
 * without them the suite is skipped with one line, or fails when `CI` is set.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { confinementMissing as missing, FILL, fill, free, inNamespace, startConfined } from "./support/confined.js"
import { faultMatrixEnabled, faultMatrixSkipped } from "./support/faultMatrix.js"
import { TARGET } from "./support/fixtures.js"
import {
  type Accepted,
  type AgentPaths,
  awaitState,
  type ControlPlane,
  events,
  eventually,
  HOST,
  hostRecord,
  logged,
  operator,
  publish,
  Published,
  type Spawned,
  startControlPlane,
  tail,
  tempDirectory,
  testModeHost
} from "./support/processes.js"

/**
 * Independent cases, each with its own control plane, agent and tmpfs, run concurrently:
 * most of their time is spent waiting for the agent's retries.
 */
const describeStorage = (name: string, body: () => void) => {
  if (!faultMatrixEnabled()) return describe.skip(faultMatrixSkipped(name), body)
  if (missing === null) return describe.concurrent(name, body)
  if (process.env["CI"] === undefined) {
    return describe.skip(`${name} [skipped: ${missing}; with CI set this fails instead]`, body)
  }
  return describe(`${name} [${missing}, and CI is set]`, () => {
    it("needs root, unshare and nsenter", () => {
      throw new Error(`${name}: ${missing}. CI is set, so this suite fails instead of being skipped.`)
    })
  })
}

/**
 * Read-only mid-run. A file system with files open for writing cannot be remounted
 * read-only (EBUSY) short of the kernel doing it on an I/O error, so a read-only bind mount
 * goes over the state directory: every file opened from now on is refused with EROFS, while
 * the outbox's open SQLite handle keeps writing to the file system below.
 */
const readOnly = (agent: Spawned, host: AgentPaths) =>
  inNamespace(agent, `mount --bind "$STATE_DIR" "$STATE_DIR" && mount -o remount,bind,ro "$STATE_DIR"`, {
    STATE_DIR: host.stateDir
  })
const writable = (agent: Spawned, host: AgentPaths) =>
  inNamespace(agent, `umount "$STATE_DIR"`, { STATE_DIR: host.stateDir })

/** The line activation test mode logs where a real agent would switch. */
const SWITCHED = "NOT activating anything, reporting success"

const lines = (agent: Spawned, message: string) => agent.stderr().filter((line) => line.includes(message))
const switchesTo = (agent: Spawned, closure: string) => lines(agent, SWITCHED).filter((line) => line.includes(closure))

/**
 * Every event reached the control plane once per (rolloutId, seq), with one body however
 * often it was resent, and the fresh ones are numbered 1..n in arrival order.
 */
const expectOncePerSeq = (accepted: Accepted, rolloutId: string) => {
  const bodies = new Map<number, string>()
  for (const { envelope } of accepted.filter((entry) => entry.envelope.rolloutId === rolloutId)) {
    const body = JSON.stringify(envelope.event)
    const seen = bodies.get(envelope.event.seq)
    if (seen !== undefined) expect(body, `seq ${envelope.event.seq} resent with another body`).toBe(seen)
    bodies.set(envelope.event.seq, body)
  }
  const fresh = accepted.filter((entry) => !entry.duplicate && entry.envelope.rolloutId === rolloutId)
  expect(fresh.map((entry) => entry.envelope.event.seq)).toStrictEqual(fresh.map((_, i) => i + 1))
  return fresh.map((entry) => entry.envelope.event.kind)
}

/** Nothing the issue forbids: no lost event, no cause-less error. */
const expectNothingLost = (agent: Spawned) => {
  expect(lines(agent, "event LOST"), tail(agent.stderr(), 40)).toStrictEqual([])
  expect(lines(agent, "UnknownException"), tail(agent.stderr(), 40)).toStrictEqual([])
}

/** Another closure for the second rollout (test mode never moves the current-system link). */
const SECOND = `1${TARGET.slice(1)}`

/** The agent is up (boot recovery done). */
const awaitReady = (agent: Spawned) =>
  eventually(
    "the agent to finish its boot recovery",
    Effect.sync(() => logged(agent, "boot recovery done") || agent.exited() !== undefined),
    30_000,
    Effect.sync(() => tail(agent.stderr(), 40))
  )

/** A first rollout converged: the agent has the fleet and an outbox in use, as on a host that ran a while. */
const convergeFirst = (cp: ControlPlane, agent: Spawned) =>
  Effect.gen(function*() {
    yield* awaitReady(agent)
    const { rolloutId } = yield* publish(cp, TARGET, 0.02)
    yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)
  })

const awaitLine = (agent: Spawned, message: string, timeoutMs = 30_000) =>
  eventually(
    `the agent to log "${message}"`,
    Effect.sync(() => logged(agent, message)),
    timeoutMs,
    Effect.sync(() => `exit: ${JSON.stringify(agent.exited())}\n${tail(agent.stderr(), 40)}`)
  )

const TIMEOUT = 120_000

describeStorage("storage faults on a real tmpfs state directory", () => {
  it.scopedLive(
    "full at start: exit 78 with one line naming the state directory and the cause",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startConfined(cp, host, FILL)
        const exited = yield* agent.awaitExit(60_000)
        expect(exited, tail(agent.stderr(), 40)).toStrictEqual({ code: 78, signal: null })
        const text = agent.stderr().join("\n")
        expect(text).toContain(host.stateDir)
        expect(text).toMatch(/ENOSPC|SQLITE_FULL|no space left/)
        expectNothingLost(agent)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "fills before the ack: nothing switches, one ERROR line; once space is freed the rollout converges, every event once",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startConfined(cp, host)
        yield* convergeFirst(cp, agent)
        yield* fill(agent, host)
        const { rolloutId } = yield* publish(cp, SECOND, 0.05)
        yield* awaitLine(agent, "refuses writes")
        const refusal = lines(agent, "refuses writes")[0] ?? ""
        expect(refusal).toContain(host.stateDir)
        expect(refusal).toContain("ENOSPC")
        expect(refusal).toContain("\"level\":\"ERROR\"")
        // Held, not switched, and the control plane has heard nothing.
        yield* Effect.sleep("3 seconds")
        expect(switchesTo(agent, SECOND), tail(agent.stderr(), 40)).toStrictEqual([])
        expect(lines(agent, "not activating yet").length).toBeGreaterThan(0)
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({ state: "Pending", lastEventSeq: 0 })
        const status = yield* inNamespace(agent, `cat "$STATE_DIR/status.json"`, { STATE_DIR: host.stateDir })
        expect(status.status).toBe(0)

        yield* free(agent, host)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 60_000)
        const kinds = expectOncePerSeq(yield* events(cp), rolloutId)
        expect(kinds).toStrictEqual(["DispatchAck", "ActivationStarted", "ActivationCompleted", "Converged"])
        expect(switchesTo(agent, SECOND)).toHaveLength(1)
        expect(logged(agent, "accepts writes again")).toBe(true)
        expectNothingLost(agent)
        // Failed writes left no temporary file behind.
        const listing = yield* inNamespace(agent, `ls -A "$STATE_DIR"`, { STATE_DIR: host.stateDir })
        expect(listing.stdout.split("\n").filter((name) => name.endsWith(".tmp"))).toStrictEqual([])
      }),
    TIMEOUT
  )

  it.scopedLive(
    "fills mid-soak: Converged waits for the disk and arrives once space returns",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startConfined(cp, host)
        yield* awaitReady(agent)
        const { rolloutId } = yield* publish(cp, TARGET, 0.15)
        yield* awaitState(cp, rolloutId, "Soaking", () => agent, 45_000)
        yield* fill(agent, host)
        yield* awaitLine(agent, "refuses writes", 45_000)
        expect((yield* hostRecord(cp, rolloutId))?.state).toBe("Soaking")
        yield* free(agent, host)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 60_000)
        expect(expectOncePerSeq(yield* events(cp), rolloutId)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "Converged"
        ])
        expectNothingLost(agent)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "fills at Failed before the rollback: the rollback waits for the Failed record, then runs once",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const marker = Path.join(dir, "unhealthy")
        const healthChecksFile = Path.join(dir, "health-checks.json")
        Fs.writeFileSync(
          healthChecksFile,
          JSON.stringify({
            web: { kind: "exec", mode: "enforce", command: ["sh", "-c", `test ! -e ${marker}`], intervalSeconds: 1 }
          })
        )
        const host = { ...testModeHost(dir), healthChecksFile, extraFlags: ["--sustained-failure-secs", "2"] }
        const agent = yield* startConfined(cp, host, "", { NIXFLEET_AGENT_ACTIVATION_TEST_MODE: "1" })
        yield* awaitReady(agent)
        const { rolloutId } = yield* operator(cp, "/v1/operator/rollouts", Published, {
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 1,
          onHealthFailure: "rollback-and-halt"
        })
        yield* awaitState(cp, rolloutId, "Soaking", () => agent, 45_000)
        yield* fill(agent, host)
        Fs.writeFileSync(marker, "")
        yield* awaitLine(agent, "not activating yet: the rollback", 45_000)
        yield* Effect.sleep("2 seconds")
        const rollbacks = () => lines(agent, SWITCHED).filter((line) => line.includes(`"rollback":true`))
        expect(rollbacks(), tail(agent.stderr(), 40)).toStrictEqual([])
        expect((yield* hostRecord(cp, rolloutId))?.state).toBe("Soaking")
        yield* free(agent, host)
        yield* awaitState(cp, rolloutId, "Reverted", () => agent, 60_000)
        const kinds = expectOncePerSeq(yield* events(cp), rolloutId).filter((kind) => !kind.startsWith("Probe"))
        expect(kinds).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "Failed",
          "RollbackComplete"
        ])
        expect(rollbacks()).toHaveLength(1)
        expectNothingLost(agent)
      }),
    TIMEOUT
  )

  it.scopedLive("read-only at start: exit 78 with one line that says read-only", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      const cp = yield* startControlPlane(Path.join(dir, "cp"))
      const host = testModeHost(dir)
      const agent = yield* startConfined(cp, host, `mount -o remount,ro "$STATE_DIR";`)
      const exited = yield* agent.awaitExit(60_000)
      expect(exited, tail(agent.stderr(), 40)).toStrictEqual({ code: 78, signal: null })
      const text = agent.stderr().join("\n")
      expect(text).toContain(host.stateDir)
      expect(text).toMatch(/read-only/)
      expectNothingLost(agent)
    }), TIMEOUT)

  it.scopedLive(
    "read-only mid-run: the switch record is refused (EROFS, read-only), nothing switches until it is writable again",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startConfined(cp, host)
        yield* convergeFirst(cp, agent)
        const ro = yield* readOnly(agent, host)
        expect(ro.status, ro.stderr).toBe(0)
        const { rolloutId } = yield* publish(cp, SECOND, 0.05)
        yield* awaitLine(agent, "refuses writes")
        const refusal = lines(agent, "refuses writes")[0] ?? ""
        expect(refusal).toContain("EROFS")
        expect(refusal).toMatch(/read-only/)
        expect(refusal).toContain(host.stateDir)
        yield* Effect.sleep("2 seconds")
        expect(switchesTo(agent, SECOND)).toStrictEqual([])
        const before = (yield* events(cp)).filter((entry) => entry.envelope.rolloutId === rolloutId)
        expect(before.map((entry) => entry.envelope.event.kind)).not.toContain("ActivationStarted")
        const rw = yield* writable(agent, host)
        expect(rw.status, rw.stderr).toBe(0)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 60_000)
        expect(expectOncePerSeq(yield* events(cp), rolloutId)).toHaveLength(4)
        expect(switchesTo(agent, SECOND)).toHaveLength(1)
        expectNothingLost(agent)
      }),
    TIMEOUT
  )

  it.scopedLive("files are private whatever the umask: 0600 files, 0700 directories", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      const cp = yield* startControlPlane(Path.join(dir, "cp"))
      const host = testModeHost(dir)
      const agent = yield* startConfined(cp, host, "umask 022;")
      yield* awaitReady(agent)
      const { rolloutId } = yield* publish(cp, TARGET, 0.05)
      yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)
      const modes = yield* inNamespace(
        agent,
        `cd "$STATE_DIR" && find . -mindepth 1 ! -name fill -printf '%y %m %p\\n'`,
        { STATE_DIR: host.stateDir }
      )
      const entries = modes.stdout.trim().split("\n").map((line) => line.split(" "))
      expect(entries.map(([, , path]) => path)).toContain("./outbox.sqlite")
      for (const [type, mode, path] of entries) {
        expect(`${path} ${mode}`).toBe(`${path} ${type === "d" ? "700" : "600"}`)
      }
    }), TIMEOUT)

  it.scopedLive(
    "corrupt database at start: moved aside, the agent goes on and converges a rollout",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startConfined(
          cp,
          host,
          `head -c 8192 /dev/urandom > "$STATE_DIR/outbox.sqlite";`
        )
        yield* awaitReady(agent)
        expect(logged(agent, "outbox database is corrupt: moved it aside")).toBe(true)
        const { rolloutId } = yield* publish(cp, TARGET, 0.05)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)
        expect(expectOncePerSeq(yield* events(cp), rolloutId)).toHaveLength(4)
        expectNothingLost(agent)
      }),
    TIMEOUT
  )
})
