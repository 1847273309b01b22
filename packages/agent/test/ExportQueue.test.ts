/**
 * `nixfleet-agent export-queue`, as a separate process: the undelivered outbox written as
 * the reference agent's `outbound-queue/*.json` files, which our importer (and so the
 * reference agent's format) reads back as the same rows; refused while an agent runs on
 * the state directory, for bad arguments and for a state directory it cannot use.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { dispatchAck, HOST, openOutbox, probeResult, ROLLOUT_A, ROLLOUT_B } from "./fixtures/outbox/support.js"
import {
  AGENT,
  eventually,
  spawnScript,
  startAgent,
  startControlPlane,
  tail,
  tempDirectory,
  TEST_MODES,
  testModeHost
} from "./support/processes.js"
import { upstreamFileName } from "./support/upstreamQueue.js"

const TIMEOUT = 120_000

/** Runs `export-queue` to its end: exit code, stdout and stderr. */
const exportQueue = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const spawned = yield* spawnScript("export-queue", AGENT, ["export-queue", ...args], {})
    const exit = yield* spawned.awaitExit(60_000)
    return { code: exit?.code, stdout: spawned.stdout().join("\n"), stderr: spawned.stderr().join("\n") }
  }).pipe(Effect.scoped)

/** The rows of an outbox, as what identifies and makes an event (ids and counters aside). */
const pendingRows = (stateDir: string) =>
  Effect.scoped(Effect.gen(function*() {
    const { outbox } = yield* openOutbox(stateDir)
    const rows = yield* outbox.head(1000)
    const stats = yield* outbox.stats
    return {
      rows: rows.map(({ body, createdAt, hostname, kind, rolloutId, seq }) => ({
        rolloutId,
        seq,
        hostname,
        kind,
        body,
        createdAt
      })),
      deadLetters: stats.deadLetters
    }
  })).pipe(Effect.provide(NodeContext.layer))

describe("nixfleet-agent export-queue", () => {
  it.scopedLive(
    "writes the undelivered events as the reference agent's files; importing them gives the same rows",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const from = Path.join(dir, "from")
        yield* Effect.scoped(Effect.gen(function*() {
          const { outbox } = yield* openOutbox(from)
          // In seq order, as the reference scans its queue: the import's order is then the outbox's.
          yield* outbox.enqueue({ rolloutId: ROLLOUT_A, seq: 1, hostname: HOST, durable: true, event: dispatchAck(1) })
          yield* outbox.enqueue({ rolloutId: ROLLOUT_B, seq: 2, hostname: HOST, durable: true, event: dispatchAck(2) })
          yield* outbox.enqueue({ rolloutId: ROLLOUT_A, seq: 3, hostname: HOST, durable: false, event: probeResult(3) })
          yield* outbox.enqueue({ rolloutId: ROLLOUT_A, seq: 4, hostname: HOST, durable: true, event: dispatchAck(4) })
          // Refused for good: a dead letter stays in the outbox.
          const [, , , fourth] = yield* outbox.head(10)
          yield* outbox.deadLetter(fourth!.id, 422, "HTTP 422")
        })).pipe(Effect.provide(NodeContext.layer))
        const before = yield* pendingRows(from)
        expect(before.rows).toHaveLength(3)

        const to = Path.join(dir, "to", "outbound-queue")
        const done = yield* exportQueue(["--state-dir", from, "--to", to])
        expect(done.code, done.stderr).toBe(0)
        expect(done.stdout).toBe(`exported 3 events to ${to}; 1 dead letters stay in the outbox`)

        // The reference agent's names and its QueuedEvent, the stored wire event as payload.
        expect(Fs.readdirSync(to).sort()).toStrictEqual(
          before.rows.map((row) =>
            upstreamFileName({ seq: row.seq, hostname: row.hostname, rollout_id: row.rolloutId, event_kind: row.kind })
          ).sort()
        )
        for (const row of before.rows) {
          const file = Path.join(
            to,
            upstreamFileName({ seq: row.seq, hostname: row.hostname, rollout_id: row.rolloutId, event_kind: row.kind })
          )
          expect((Fs.statSync(file).mode & 0o777).toString(8)).toBe("600")
          const queued = JSON.parse(Fs.readFileSync(file, "utf8")) as Record<string, unknown>
          expect(Object.keys(queued)).toStrictEqual([
            "seq",
            "hostname",
            "rollout_id",
            "event_kind",
            "created_at",
            "payload"
          ])
          expect(queued).toStrictEqual({
            seq: row.seq,
            hostname: HOST,
            rollout_id: row.rolloutId,
            event_kind: row.kind,
            created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/),
            payload: JSON.parse(row.body)
          })
        }
        // Handed over: gone from the outbox, but for the dead letter.
        expect(yield* pendingRows(from)).toStrictEqual({ rows: [], deadLetters: 1 })

        // Round trip: a fresh state directory imports them as the same rows (all durable, as
        // the reference's queue has no other kind), with the same bodies.
        const fresh = Path.dirname(to)
        const after = yield* pendingRows(fresh)
        expect(after.rows).toStrictEqual(before.rows)
        expect(Fs.readdirSync(to)).toStrictEqual([])
      }),
    TIMEOUT
  )

  it.scopedLive("without an outbox there is nothing to export: 0", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      const done = yield* exportQueue(["--state-dir", dir])
      expect(done.code, done.stderr).toBe(0)
      expect(done.stdout).toBe(`exported 0 events to ${Path.join(dir, "outbound-queue")}`)
    }), TIMEOUT)

  it.scopedLive(
    "bad arguments: 64; a state directory that is missing or corrupt: 78, nothing changed",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const help = yield* exportQueue(["--help"])
        expect(help.code).toBe(0)
        for (const flag of ["--state-dir", "--to", "--log-format"]) expect(help.stdout).toContain(flag)
        const bad = yield* exportQueue(["--state-dir", dir, "--bogus"])
        expect(bad.code).toBe(64)
        expect(bad.stderr.trim().split("\n")).toHaveLength(1)

        const missing = yield* exportQueue(["--state-dir", Path.join(dir, "nowhere")])
        expect(missing.code).toBe(78)
        expect(missing.stderr).toContain(`no agent state in ${Path.join(dir, "nowhere")}`)

        const garbage = "this is not a SQLite database, and must stay as it is"
        Fs.writeFileSync(Path.join(dir, "outbox.sqlite"), garbage)
        const corrupt = yield* exportQueue(["--state-dir", dir])
        expect(corrupt.code, corrupt.stderr).toBe(78)
        expect(corrupt.stderr).toContain("is corrupt")
        expect(Fs.readFileSync(Path.join(dir, "outbox.sqlite"), "utf8")).toBe(garbage)
        expect(Fs.existsSync(Path.join(dir, "outbound-queue"))).toBe(false)
        expect(Fs.existsSync(Path.join(dir, "agent.sock"))).toBe(false)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "refuses while an agent runs on the state directory: 75, its outbox untouched",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startAgent(cp, host, TEST_MODES)
        yield* eventually(
          "the agent's status socket",
          Effect.sync(() => Fs.existsSync(Path.join(host.stateDir, "agent.sock"))),
          30_000,
          Effect.sync(() => tail(agent.stderr()))
        )
        const refused = yield* exportQueue(["--state-dir", host.stateDir])
        expect(refused.code, refused.stderr).toBe(75)
        expect(refused.stderr).toContain("an agent is running on this state directory")
        expect(Fs.existsSync(Path.join(host.stateDir, "outbound-queue"))).toBe(false)
        // The agent's socket is still its own.
        expect(agent.exited()).toBeUndefined()
        expect(Fs.existsSync(Path.join(host.stateDir, "agent.sock"))).toBe(true)
      }),
    TIMEOUT
  )
})
