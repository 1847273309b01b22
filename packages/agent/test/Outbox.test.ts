import { NodeContext } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import { AgentEvent } from "@nixfleet/proto"
import { Deferred, Effect, Fiber, Option, Schema, TestClock } from "effect"
import { OutboxError } from "../src/outbox/Outbox.js"
import {
  dispatchAck,
  entry,
  HOST,
  openOutbox,
  ROLLOUT_A,
  ROLLOUT_B,
  tempStateDir,
  withCapturedLogs
} from "./fixtures/outbox/support.js"

const keys = (rows: ReadonlyArray<{ readonly rolloutId: string; readonly seq: number }>) =>
  rows.map((row) => `${row.rolloutId}#${row.seq}`)

/** Lets forked fibers run as far as they can without time passing. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const withFs = <A, E>(f: (fs: FileSystem.FileSystem) => Effect.Effect<A, E>) =>
  Effect.flatMap(FileSystem.FileSystem, f).pipe(Effect.provide(NodeContext.layer))

describe("Outbox", () => {
  it.scoped("delivers in insertion order across rollouts, not in seq order", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      for (const [rollout, seq] of [[ROLLOUT_A, 5], [ROLLOUT_B, 1], [ROLLOUT_A, 2], [ROLLOUT_B, 7]] as const) {
        expect(yield* outbox.enqueue(entry(rollout, seq))).toBe(true)
      }
      const all = yield* outbox.head(10)
      expect(keys(all)).toStrictEqual([`${ROLLOUT_A}#5`, `${ROLLOUT_B}#1`, `${ROLLOUT_A}#2`, `${ROLLOUT_B}#7`])
      expect(all.map((row) => row.id)).toStrictEqual([...all.map((row) => row.id)].sort((a, b) => a - b))
      expect(keys(yield* outbox.head(2))).toStrictEqual([`${ROLLOUT_A}#5`, `${ROLLOUT_B}#1`])

      const first = all[0]!
      expect(first).toMatchObject({
        hostname: HOST,
        kind: "DispatchAck",
        durable: true,
        attempts: 0,
        lastError: null,
        createdAt: new Date(0)
      })
      // The body is the wire JSON: `kind`, camelCase, RFC 3339 strings.
      expect(JSON.parse(first.body)).toStrictEqual(Schema.encodeSync(AgentEvent)(dispatchAck(5)))
      expect(JSON.parse(first.body)).toMatchObject({ kind: "DispatchAck", receivedAt: "2026-05-17T11:50:00Z", seq: 5 })

      yield* outbox.acknowledge(first.id)
      yield* outbox.acknowledge(first.id)
      yield* outbox.acknowledge(123_456)
      expect(keys(yield* outbox.head(10))).toStrictEqual([`${ROLLOUT_B}#1`, `${ROLLOUT_A}#2`, `${ROLLOUT_B}#7`])
      expect(yield* outbox.head(0)).toStrictEqual([])
      expect(yield* outbox.head(-1)).toStrictEqual([])
    }))

  it.scoped("(rolloutId, seq) is unique: a second enqueue returns false and keeps the first row", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      expect(yield* outbox.enqueue(entry(ROLLOUT_A, 1))).toBe(true)
      expect(yield* outbox.enqueue(entry(ROLLOUT_A, 1, false))).toBe(false)
      expect(yield* outbox.enqueue(entry(ROLLOUT_B, 1))).toBe(true)
      const rows = yield* outbox.head(10)
      expect(keys(rows)).toStrictEqual([`${ROLLOUT_A}#1`, `${ROLLOUT_B}#1`])
      expect(rows[0]).toMatchObject({ kind: "DispatchAck", durable: true })
    }))

  it.scoped("counts pending rows per rollout and in total", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      for (const seq of [1, 2, 3]) yield* outbox.enqueue(entry(ROLLOUT_A, seq))
      for (const seq of [1, 2]) yield* outbox.enqueue(entry(ROLLOUT_B, seq))
      expect(yield* outbox.pendingCount(ROLLOUT_A)).toBe(3)
      expect(yield* outbox.pendingCount(ROLLOUT_B)).toBe(2)
      expect(yield* outbox.pendingCount("other@1")).toBe(0)
      expect(yield* outbox.pendingCount()).toBe(5)
      yield* outbox.acknowledge((yield* outbox.head(1))[0]!.id)
      expect(yield* outbox.pendingCount(ROLLOUT_A)).toBe(2)
      expect(yield* outbox.pendingCount()).toBe(4)
    }))

  it.scoped("recordFailure counts attempts and keeps the latest reason", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      yield* outbox.enqueue(entry(ROLLOUT_A, 1))
      yield* outbox.enqueue(entry(ROLLOUT_A, 2))
      const [row] = yield* outbox.head(1)
      yield* outbox.recordFailure(row!.id, "connection refused")
      yield* outbox.recordFailure(row!.id, "HTTP 503")
      yield* outbox.recordFailure(999_999, "nobody")
      const [first, second] = yield* outbox.head(10)
      expect(first).toMatchObject({ id: row!.id, attempts: 2, lastError: "HTTP 503" })
      expect(second).toMatchObject({ attempts: 0, lastError: null })
    }))

  it.scoped("deadLetter moves the row out of the pending rows; stats count everything", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      for (const seq of [1, 2, 3]) yield* outbox.enqueue(entry(ROLLOUT_A, seq))
      yield* outbox.enqueue(entry(ROLLOUT_B, 1, false))
      const [one, two] = yield* outbox.head(2)

      yield* TestClock.adjust("1 second")
      yield* outbox.deadLetter(one!.id, 422, "unknown rollout")
      yield* TestClock.adjust("1 second")
      yield* outbox.deadLetter(two!.id, null, "refused")
      yield* outbox.deadLetter(one!.id, 400, "already moved")

      expect(keys(yield* outbox.head(10))).toStrictEqual([`${ROLLOUT_A}#3`, `${ROLLOUT_B}#1`])
      expect(yield* outbox.pendingCount(ROLLOUT_A)).toBe(1)
      const dead = yield* outbox.deadLetters(10)
      expect(keys(dead)).toStrictEqual([`${ROLLOUT_A}#2`, `${ROLLOUT_A}#1`])
      expect(dead[1]).toStrictEqual({
        rolloutId: ROLLOUT_A,
        seq: 1,
        hostname: HOST,
        kind: "DispatchAck",
        body: one!.body,
        createdAt: new Date(0),
        deadAt: new Date(1000),
        status: 422,
        reason: "unknown rollout"
      })
      expect(dead[0]).toMatchObject({ status: null, reason: "refused", deadAt: new Date(2000) })
      expect(keys(yield* outbox.deadLetters(1))).toStrictEqual([`${ROLLOUT_A}#2`])
      expect(yield* outbox.stats).toStrictEqual({
        pending: 2,
        pendingDurable: 1,
        deadLetters: 2,
        droppedNonDurable: 0
      })
    }))

  it.scoped("the database is in WAL mode with synchronous = FULL and a busy timeout", () =>
    Effect.gen(function*() {
      const { sql } = yield* openOutbox(yield* tempStateDir)
      expect(yield* sql`PRAGMA journal_mode`).toStrictEqual([{ journal_mode: "wal" }])
      // 2 = FULL; this build of SQLite would give 1 (NORMAL) in WAL mode by default.
      expect(yield* sql`PRAGMA synchronous`).toStrictEqual([{ synchronous: 2 }])
      expect(yield* sql`PRAGMA busy_timeout`).toStrictEqual([{ timeout: 5000 }])
    }))

  it.scoped("a durable enqueue never joins another fiber's open transaction (its rollback keeps the event)", () =>
    Effect.gen(function*() {
      const { outbox, sql } = yield* openOutbox(yield* tempStateDir)
      const opened = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const other = yield* sql`SELECT 1`.pipe(
        Effect.zipRight(Deferred.succeed(opened, undefined)),
        Effect.zipRight(Deferred.await(release)),
        Effect.zipRight(Effect.fail("rolled back")),
        sql.withTransaction,
        Effect.either,
        Effect.fork
      )
      yield* Deferred.await(opened)
      const enqueue = yield* Effect.fork(outbox.enqueue(entry(ROLLOUT_A, 1)))
      yield* settle
      // It waits for the transaction rather than writing into it.
      expect(enqueue.unsafePoll()).toBeNull()
      yield* Deferred.succeed(release, undefined)
      expect((yield* Fiber.join(other))._tag).toBe("Left")
      expect(yield* Fiber.join(enqueue)).toBe(true)
      expect(keys(yield* outbox.head(10))).toStrictEqual([`${ROLLOUT_A}#1`])
    }))

  it.scoped("keeps the durable rows and the newest non-durable ones within the cap", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir, 3)
      const order: Array<[number, boolean]> = [[1, false], [2, true], [3, false], [4, false], [5, true], [6, false], [
        7,
        false
      ]]
      for (const [seq, durable] of order) yield* outbox.enqueue(entry(ROLLOUT_A, seq, durable))
      const rows = yield* outbox.head(10)
      expect(rows.map((row) => [row.seq, row.durable])).toStrictEqual([[2, true], [4, false], [5, true], [6, false], [
        7,
        false
      ]])
      expect(yield* outbox.stats).toStrictEqual({
        pending: 5,
        pendingDurable: 2,
        deadLetters: 0,
        droppedNonDurable: 2
      })
    }))

  it.scoped("awaitEnqueued wakes after an enqueue and coalesces a burst", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      const waiting = yield* Effect.fork(outbox.awaitEnqueued)
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* outbox.enqueue(entry(ROLLOUT_A, 1))
      yield* Fiber.join(waiting)

      for (const seq of [2, 3, 4]) yield* outbox.enqueue(entry(ROLLOUT_A, seq))
      yield* outbox.awaitEnqueued
      const next = yield* Effect.fork(outbox.awaitEnqueued)
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(next))).toBe(true)
      // A duplicate stores nothing, so it wakes nobody.
      yield* outbox.enqueue(entry(ROLLOUT_A, 4))
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(next))).toBe(true)
      yield* outbox.enqueue(entry(ROLLOUT_A, 5))
      yield* Fiber.join(next)
    }))

  it.scoped("rows survive a restart, and the sender is woken for them", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempStateDir
      yield* Effect.scoped(Effect.flatMap(openOutbox(stateDir), ({ outbox }) => outbox.enqueue(entry(ROLLOUT_A, 1))))
      const { outbox } = yield* openOutbox(stateDir)
      expect(keys(yield* outbox.head(10))).toStrictEqual([`${ROLLOUT_A}#1`])
      yield* outbox.awaitEnqueued
      const names = yield* withFs((fs) => fs.readDirectory(stateDir))
      expect(names.filter((name) => name.includes("corrupt"))).toStrictEqual([])
    }))

  it.scoped("creates a missing state directory with mode 0700", () =>
    Effect.gen(function*() {
      const stateDir = `${yield* tempStateDir}/nested/state`
      const { outbox } = yield* openOutbox(stateDir)
      expect(yield* outbox.enqueue(entry(ROLLOUT_A, 1))).toBe(true)
      const info = yield* withFs((fs) => fs.stat(stateDir))
      expect(info.mode & 0o777).toBe(0o700)
    }))

  it.scoped("an event that does not encode is an OutboxError, not a defect", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      const bad = { ...entry(ROLLOUT_A, 1), event: { ...dispatchAck(1), receivedAt: new Date(Number.NaN) } }
      const error = yield* Effect.flip(outbox.enqueue(bad))
      expect(error).toBeInstanceOf(OutboxError)
      expect(error.operation).toBe("enqueue")
      expect(error.message).toContain("does not encode to wire JSON")
      expect(yield* outbox.pendingCount()).toBe(0)
    }))

  it.scoped("a storage failure is an OutboxError carrying SQLite's reason", () =>
    Effect.gen(function*() {
      const { outbox, sql } = yield* openOutbox(yield* tempStateDir)
      yield* sql`DROP TABLE outbox`
      const error = yield* Effect.flip(outbox.enqueue(entry(ROLLOUT_A, 1)))
      expect(error).toMatchObject({ _tag: "OutboxError", operation: "enqueue" })
      expect(error.message).toContain("no such table: outbox")
      expect((yield* Effect.flip(outbox.head(1))).operation).toBe("head")
      expect((yield* Effect.flip(outbox.stats)).operation).toBe("stats")
    }))

  it.scoped("a state directory that cannot be created fails the layer with an OutboxError", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempStateDir
      yield* withFs((fs) => fs.writeFileString(`${stateDir}/file`, "not a directory"))
      const error = yield* Effect.flip(openOutbox(`${stateDir}/file/state`))
      expect(error).toMatchObject({ _tag: "OutboxError", operation: "open" })
    }))
})

describe("Outbox on a corrupt database", () => {
  const garbage = "this is not an SQLite database\n".repeat(200)

  it.scoped("moves a file that is not a database aside, intact, and starts empty", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempStateDir
      yield* withFs((fs) =>
        Effect.all([
          fs.writeFileString(`${stateDir}/outbox.sqlite`, garbage),
          fs.writeFileString(`${stateDir}/outbox.sqlite-wal`, "stale wal")
        ])
      )
      const { lines, value: { outbox } } = yield* withCapturedLogs(openOutbox(stateDir))

      const names = yield* withFs((fs) => fs.readDirectory(stateDir))
      const moved = names.filter((name) => /^outbox\.sqlite\.corrupt-\d{8}T\d{6}\.\d{3}Z$/.test(name))
      expect(moved).toHaveLength(1)
      expect(yield* withFs((fs) => fs.readFileString(`${stateDir}/${moved[0]}`))).toBe(garbage)
      expect(yield* withFs((fs) => fs.readFileString(`${stateDir}/${moved[0]}-wal`))).toBe("stale wal")

      expect(yield* outbox.enqueue(entry(ROLLOUT_A, 1))).toBe(true)
      expect(keys(yield* outbox.head(10))).toStrictEqual([`${ROLLOUT_A}#1`])

      const logged = lines.filter((line) => line.level === "ERROR")
      expect(logged).toHaveLength(1)
      expect(logged[0]!.message).toContain("corrupt")
      expect(logged[0]!.annotations).toMatchObject({
        file: `${stateDir}/outbox.sqlite`,
        movedTo: `${stateDir}/${moved[0]}`
      })
      expect(String(logged[0]!.annotations["reason"])).toContain("SQLITE_NOTADB")
    }))

  it.scoped("moves aside a database whose pages are damaged", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempStateDir
      const file = `${stateDir}/outbox.sqlite`
      yield* Effect.scoped(
        Effect.flatMap(openOutbox(stateDir), ({ outbox }) =>
          Effect.forEach([1, 2, 3], (seq) => outbox.enqueue(entry(ROLLOUT_A, seq))))
      )
      // Closing the last connection checkpointed the WAL: the rows are in the main file.
      const bytes = yield* withFs((fs) =>
        fs.readFile(file)
      )
      const pageSize = (bytes[16]! << 8) | bytes[17]!
      const damaged = Uint8Array.from(bytes)
      damaged.fill(0xa5, pageSize + 8, pageSize * 3)
      yield* withFs((fs) => fs.writeFile(file, damaged))

      const { outbox } = yield* openOutbox(stateDir)
      const names = yield* withFs((fs) => fs.readDirectory(stateDir))
      const moved = names.filter((name) => /^outbox\.sqlite\.corrupt-\d{8}T\d{6}\.\d{3}Z$/.test(name))
      expect(moved).toHaveLength(1)
      expect(Uint8Array.from(yield* withFs((fs) => fs.readFile(`${stateDir}/${moved[0]}`)))).toStrictEqual(damaged)
      expect(yield* outbox.pendingCount()).toBe(0)
      expect(yield* outbox.enqueue(entry(ROLLOUT_A, 1))).toBe(true)
    }))

  it.scoped("an unopenable path is an OutboxError and is not moved aside", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempStateDir
      yield* withFs((fs) => fs.makeDirectory(`${stateDir}/outbox.sqlite`))
      const error = yield* Effect.flip(openOutbox(stateDir))
      expect(error).toMatchObject({ _tag: "OutboxError", operation: "open" })
      const names = yield* withFs((fs) => fs.readDirectory(stateDir))
      expect(names).toStrictEqual(["outbox.sqlite"])
    }))
})
