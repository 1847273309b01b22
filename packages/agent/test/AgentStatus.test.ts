/**
 * The agent's report on itself: the phase line, the problems its fibers log, the status
 * file it keeps, and the human table.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Ref, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { AgentRuntime } from "../src/AgentRuntime.js"
import { renderStatus } from "../src/cli/StatusTable.js"
import { StatusBoard } from "../src/runtime/StatusBoard.js"
import { AgentStatus, statusFile } from "../src/status/AgentStatus.js"
import { describePhase, type RolloutSummary, type StatusReport, StatusReportJson } from "../src/status/StatusReport.js"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { unusedPort } from "./support/ports.js"

const at = (iso: string) => new Date(iso)

const rollout = (overrides: Partial<RolloutSummary>): RolloutSummary => ({
  rolloutId: "stable@abc123",
  channel: "stable",
  state: "Converged",
  targetClosure: "abc-nixos-system-web-01",
  currentClosure: "abc-nixos-system-web-01",
  lastEventSeq: 4,
  dispatchedAt: at("2026-11-27T10:00:00Z"),
  soakDueAt: at("2026-11-27T10:05:00Z"),
  failingProbes: [],
  ...overrides
})

describe("describePhase", () => {
  it("follows the lifecycle, then the most advanced rollout in flight, then the latest one", () => {
    expect(describePhase("starting", [])).toBe("starting: boot recovery")
    expect(describePhase("stopping", [rollout({ state: "Soaking" })])).toBe("stopping: draining")
    expect(describePhase("running", [])).toBe("idle: no rollout yet")
    expect(describePhase("running", [
      rollout({ rolloutId: "a@1", state: "Pending" }),
      rollout({ rolloutId: "b@2", state: "Activating" })
    ])).toBe("activating b@2")
    expect(describePhase("running", [rollout({ state: "Soaking", failingProbes: ["web", "db"] })]))
      .toBe("soaking stable@abc123 until 2026-11-27T10:05:00.000Z, failing: web, db")
    expect(describePhase("running", [rollout({ state: "Deferred" })]))
      .toBe("activated stable@abc123; reboot pending")
    expect(describePhase("running", [
      rollout({ rolloutId: "old@1", state: "Reverted", dispatchedAt: at("2026-11-26T00:00:00Z") }),
      rollout({ rolloutId: "new@2", state: "Converged" })
    ])).toBe("idle: new@2 Converged")
  })
})

describe("renderStatus", () => {
  const report: StatusReport = {
    source: "live",
    agent: {
      version: "0.1.0",
      running: true,
      pid: 42,
      startedAt: at("2026-11-27T09:00:00Z"),
      lifecycle: "running",
      phase: "idle: stable@abc123 Converged",
      reportedAt: at("2026-11-27T10:10:00Z")
    },
    machineId: "web-01",
    controlPlaneUrl: "https://cp.example:8443",
    stateDir: "/var/lib/nixfleet-agent",
    currentSystemPath: "/run/current-system",
    currentClosure: "abc-nixos-system-web-01",
    rollouts: [rollout({})],
    outbox: {
      depth: 2,
      nonDurable: 1,
      oldestPendingAt: at("2026-11-27T10:09:00Z"),
      deadLetters: 1,
      recentDeadLetters: [{
        rolloutId: "stable@abc123",
        seq: 3,
        kind: "ProbeResult",
        status: 403,
        reason: "HTTP 403",
        deadAt: at("2026-11-27T10:08:00Z")
      }]
    },
    lastError: {
      at: at("2026-11-27T10:08:00Z"),
      message: "the control plane refused an event for good",
      rolloutId: "stable@abc123",
      detail: "reason=HTTP 403"
    },
    lastWarning: null
  }

  it("shows the agent, the outbox, the problems, the rollouts and the dead letters", () => {
    expect(renderStatus(report, []).split("\n")).toStrictEqual([
      "nixfleet-agent 0.1.0: running (pid 42, since 2026-11-27T09:00:00Z)",
      "phase:            idle: stable@abc123 Converged",
      "machine:          web-01",
      "control plane:    https://cp.example:8443",
      "current closure:  abc-nixos-system-web-01",
      "state dir:        /var/lib/nixfleet-agent",
      "outbox:           2 pending (1 probe results), oldest from 2026-11-27T10:09:00Z, 1 dead letters",
      "last error:       2026-11-27T10:08:00Z the control plane refused an event for good (stable@abc123) reason=HTTP 403",
      "last warning:     none",
      "",
      "ROLLOUT        STATE      SEQ  DISPATCHED            SOAK DUE              FAILING  TARGET",
      "stable@abc123  Converged  4    2026-11-27T10:00:00Z  2026-11-27T10:05:00Z  -        abc-nixos-system-web-01",
      "",
      "dead letters (newest 1 of 1):",
      "ROLLOUT        SEQ  KIND         STATUS  AT                    REASON",
      "stable@abc123  3    ProbeResult  403     2026-11-27T10:08:00Z  HTTP 403",
      ""
    ])
  })

  it("round-trips through its JSON form", () => {
    const text = Schema.encodeSync(StatusReportJson)(report)
    expect(Schema.decodeSync(StatusReportJson)(text)).toStrictEqual(report)
  })
})

describe("StatusBoard.logger", () => {
  it.effect("keeps the last error and warning with their annotations, whatever the values", () =>
    Effect.gen(function*() {
      const board = yield* StatusBoard
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      yield* Effect.logError("disk full").pipe(
        Effect.annotateLogs({ rolloutId: "stable@abc123", big: 10n, cyclic, reason: "ENOSPC" })
      )
      yield* Effect.logWarning("slow").pipe(Effect.annotateLogs("seq", 3))
      yield* Effect.logInfo("fine")
      const problems = yield* Ref.get(board.problems)
      expect(problems.lastError).toMatchObject({
        message: "disk full",
        rolloutId: "stable@abc123",
        detail: "big=10 cyclic=[object Object] reason=ENOSPC"
      })
      expect(problems.lastWarning).toMatchObject({ message: "slow", rolloutId: null, detail: "seq=3" })
    }).pipe(Effect.provide(StatusBoard.logger.pipe(Layer.provideMerge(StatusBoard.layer)))))
})

describe("AgentStatus", () => {
  it.scopedLive(
    "keeps the last warning any fiber logged, and the status file; the last write says stopped",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        const port = yield* unusedPort
        const agent = yield* startAgent({
          machineId: "web-01",
          stateDir: dir,
          controlPlaneUrl: `http://127.0.0.1:${port}`
        })
        const status = yield* Effect.provide(AgentStatus, agent.context)
        yield* eventually(
          "a warning on the report",
          Effect.map(status.report, (report) => report.lastWarning !== null),
          20_000
        )
        const report = yield* status.report
        expect(report.agent).toMatchObject({ running: true, lifecycle: "running", pid: process.pid })
        const logs = yield* agent.logs
        expect(logs.some((line) => line.includes(report.lastWarning!.message))).toBe(true)
        expect(report.lastError).toBeNull()

        yield* eventually("the status file", Effect.sync(() => Fs.existsSync(statusFile(dir))), 20_000)
        yield* agent.stop
        const written = Schema.decodeUnknownSync(StatusReportJson)(Fs.readFileSync(statusFile(dir), "utf8"))
        expect(written.agent).toMatchObject({ running: false, lifecycle: "stopped", pid: null, phase: "stopped" })
        // Boot recovery, the heartbeat and the manifest poll all warn: the last one is kept.
        const warned = yield* agent.logs
        expect(warned.some((line) => line.includes(written.lastWarning!.message))).toBe(true)
        expect((Fs.statSync(statusFile(dir)).mode & 0o777).toString(8)).toBe("600")
        expect(Fs.readdirSync(dir).filter((name) => name.endsWith(".tmp"))).toStrictEqual([])
        expect(Path.basename(statusFile(dir))).toBe("status.json")
      }),
    60_000
  )

  it.scopedLive(
    "a clean stop always leaves `stopped` in the status file, never a late `stopping`",
    () =>
      Effect.gen(function*() {
        for (let round = 0; round < 12; round++) {
          const dir = yield* stateDirectory
          const port = yield* unusedPort
          const agent = yield* startAgent({
            machineId: "web-01",
            stateDir: dir,
            controlPlaneUrl: `http://127.0.0.1:${port}`
          })
          yield* eventually("the status file", Effect.sync(() => Fs.existsSync(statusFile(dir))), 20_000)
          // As `run` stops: the shutdown request (lifecycle `stopping`), then the scope closes.
          yield* Effect.flatMap(Effect.provide(AgentRuntime, agent.context), (runtime) => runtime.shutdown)
          yield* agent.stop
          const written = Schema.decodeUnknownSync(StatusReportJson)(Fs.readFileSync(statusFile(dir), "utf8"))
          expect(written.agent.lifecycle, `round ${round}`).toBe("stopped")
        }
      }),
    120_000
  )
})
