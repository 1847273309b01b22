import { NodeContext } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { openOutbox, tempStateDir, withCapturedLogs } from "./fixtures/outbox/support.js"

const HOST = "web-01"
const STABLE = "stable@deadbeef"
const CANARY = "canary@cafe01"

/** Spec §4.1: every character outside `[A-Za-z0-9-@.]` becomes `_`. */
const sanitise = (part: string) => part.replace(/[^A-Za-z0-9\-@.]/g, "_")

interface Queued {
  readonly seq: number
  readonly hostname: string
  readonly rollout_id: string
  readonly event_kind: string
  readonly created_at: string
  readonly payload: Record<string, unknown>
}

/** `{seq:020}-{host}-{rollout}-{kind}.json`, as the reference agent names its files. */
const fileName = (queued: Pick<Queued, "seq" | "hostname" | "rollout_id" | "event_kind">) =>
  `${String(queued.seq).padStart(20, "0")}-${sanitise(queued.hostname)}-${sanitise(queued.rollout_id)}-${
    sanitise(queued.event_kind)
  }.json`

const queued = (rolloutId: string, seq: number, createdAt: string, payload: Record<string, unknown>): Queued => ({
  seq,
  hostname: HOST,
  rollout_id: rolloutId,
  event_kind: String(payload["kind"]),
  created_at: createdAt,
  payload: { ...payload, seq }
})

const ack = { kind: "DispatchAck", currentClosureAtDispatch: "abc-nixos-system", receivedAt: "2026-05-17T11:49:00Z" }
const started = { kind: "ActivationStarted", startedAt: "2026-05-17T11:50:03Z", switchMethod: "switch" }
const probe = {
  kind: "ProbeResult",
  probeName: "nginx",
  mode: "enforce",
  status: "fail",
  observedAt: "2026-05-17T11:52:00Z",
  failureReason: "HTTP 502"
}

/** Two rollouts with interleaved seqs; the two seq-1 events are ordered by created_at. */
const events: ReadonlyArray<Queued> = [
  queued(STABLE, 1, "2026-05-17T11:50:05.250Z", ack),
  queued(CANARY, 1, "2026-05-17T11:50:00Z", ack),
  queued(STABLE, 2, "2026-05-17T11:50:06Z", started),
  queued(CANARY, 3, "2026-05-17T11:51:00Z", started),
  queued(STABLE, 4, "2026-05-17T11:52:00Z", probe),
  queued(CANARY, 5, "2026-05-17T11:53:00+02:00", probe)
]
const expectedOrder = [`${CANARY}#1`, `${STABLE}#1`, `${STABLE}#2`, `${CANARY}#3`, `${STABLE}#4`, `${CANARY}#5`]

const corruptName = fileName({ seq: 6, hostname: HOST, rollout_id: STABLE, event_kind: "Converged" })
const mismatchName = fileName({ seq: 7, hostname: HOST, rollout_id: STABLE, event_kind: "Converged" })
const tmpName = `${fileName({ seq: 8, hostname: HOST, rollout_id: STABLE, event_kind: "Converged" })}.tmp`

const writeQueue = (directory: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    yield* fs.makeDirectory(directory, { recursive: true })
    for (const event of events) {
      yield* fs.writeFileString(`${directory}/${fileName(event)}`, JSON.stringify(event, null, 2))
    }
    yield* fs.writeFileString(`${directory}/${corruptName}`, "{\n  \"seq\": 6,\n  \"hostname\": ")
    // The file's seq disagrees with its payload's: not what the reference writes.
    const mismatch = queued(STABLE, 7, "2026-05-17T12:00:00Z", ack)
    yield* fs.writeFileString(
      `${directory}/${mismatchName}`,
      JSON.stringify({ ...mismatch, payload: { ...mismatch.payload, seq: 70 } }, null, 2)
    )
    // Set aside by an earlier start: a new invalid file of the same name must not replace it.
    yield* fs.writeFileString(`${directory}/${mismatchName}.invalid`, "set aside earlier")
    yield* fs.writeFileString(`${directory}/${tmpName}`, "half-written")
    yield* fs.writeFileString(`${directory}/notes.txt`, "not a queue file")
  })

const keys = (rows: ReadonlyArray<{ readonly rolloutId: string; readonly seq: number }>) =>
  rows.map((row) => `${row.rolloutId}#${row.seq}`)

describe("legacy outbound-queue import", () => {
  it.scoped("imports the reference agent's files in seq order as durable rows, once", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const stateDir = yield* tempStateDir
      const directory = `${stateDir}/outbound-queue`
      yield* writeQueue(directory)

      const first = yield* withCapturedLogs(
        Effect.scoped(Effect.flatMap(openOutbox(stateDir), ({ outbox }) => outbox.head(100)))
      )
      const rows = first.value
      expect(keys(rows)).toStrictEqual(expectedOrder)
      for (const row of rows) {
        const source = events.find((event) => event.rollout_id === row.rolloutId && event.seq === row.seq)!
        expect(row).toMatchObject({
          hostname: HOST,
          kind: source.event_kind,
          durable: true,
          attempts: 0,
          lastError: null,
          createdAt: new Date(source.created_at)
        })
        expect(JSON.parse(row.body)).toStrictEqual(source.payload)
      }

      expect((yield* fs.readDirectory(directory)).sort()).toStrictEqual(
        [`${corruptName}.invalid`, `${mismatchName}.invalid`, `${mismatchName}.invalid-1`, "notes.txt", tmpName].sort()
      )
      expect(yield* fs.readFileString(`${directory}/${mismatchName}.invalid`)).toBe("set aside earlier")
      const warnings = first.lines.filter((line) => line.level === "WARN")
      expect(warnings.map((line) => line.annotations["file"]).sort()).toStrictEqual(
        [`${directory}/${corruptName}`, `${directory}/${mismatchName}`].sort()
      )
      expect(String(
        warnings.find((line) => line.annotations["file"] === `${directory}/${mismatchName}`)
          ?.annotations["reason"]
      )).toContain("differs from the payload's seq 70")
      const summary = first.lines.find((line) => line.message.startsWith("imported "))
      expect(summary?.annotations).toMatchObject({ imported: 6, alreadyPresent: 0, invalid: 2, unreadable: 0 })

      // A crash between the commit and the deletions leaves a file behind: importing it
      // again adds nothing, and the file goes.
      const leftOver = events[2]!
      yield* fs.writeFileString(`${directory}/${fileName(leftOver)}`, JSON.stringify(leftOver, null, 2))
      const second = yield* withCapturedLogs(
        Effect.scoped(Effect.flatMap(openOutbox(stateDir), ({ outbox }) => outbox.head(100)))
      )
      expect(keys(second.value)).toStrictEqual(expectedOrder)
      expect(second.value.map((row) => row.id)).toStrictEqual(rows.map((row) => row.id))
      expect(yield* fs.exists(`${directory}/${fileName(leftOver)}`)).toBe(false)
      expect(second.lines.find((line) => line.message.startsWith("imported "))?.annotations).toMatchObject({
        imported: 0,
        alreadyPresent: 1,
        invalid: 0
      })
      expect(second.lines.filter((line) => line.level === "WARN")).toStrictEqual([])

      // Nothing left to import: no log at all, and the kept files are still there.
      const third = yield* withCapturedLogs(
        Effect.scoped(Effect.flatMap(openOutbox(stateDir), ({ outbox }) => outbox.pendingCount()))
      )
      expect(third.value).toBe(6)
      expect(third.lines.filter((line) => line.message.startsWith("imported "))).toStrictEqual([])
      expect(yield* fs.readFileString(`${directory}/${corruptName}.invalid`)).toBe("{\n  \"seq\": 6,\n  \"hostname\": ")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("imported rows come after the rows already in the outbox", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const stateDir = yield* tempStateDir
      yield* Effect.scoped(
        Effect.flatMap(openOutbox(stateDir), ({ outbox }) =>
          outbox.enqueue({
            rolloutId: STABLE,
            seq: 9,
            hostname: HOST,
            durable: false,
            event: {
              _tag: "Converged",
              convergedAt: new Date("2026-05-17T12:10:00Z"),
              currentClosure: "abc-nixos-system",
              seq: 9
            }
          }))
      )
      const event = events[0]!
      yield* fs.makeDirectory(`${stateDir}/outbound-queue`)
      yield* fs.writeFileString(`${stateDir}/outbound-queue/${fileName(event)}`, JSON.stringify(event, null, 2))
      const rows = yield* Effect.flatMap(openOutbox(stateDir), ({ outbox }) => outbox.head(10))
      expect(keys(rows)).toStrictEqual([`${STABLE}#9`, `${STABLE}#1`])
      expect(rows.map((row) => row.durable)).toStrictEqual([false, true])
    }).pipe(Effect.provide(NodeContext.layer)))
})
