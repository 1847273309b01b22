/**
 * Export of the pending outbox as the reference agent's file queue (spec agent-runtime
 * §4.1), so that going back to the Rust agent loses no event: one
 * `{seq:020}-{host}-{rollout}-{kind}.json` file per pending row, holding the pretty-printed
 * `QueuedEvent` (snake_case keys) with the row's wire event as its payload, byte for byte.
 * Each file is written as the reference writes its own (temporary file, fsync, rename),
 * then the directory is synced; only then are the rows deleted, one page per commit. A
 * crash in between leaves an event both as a file and as a row: whichever agent starts
 * next delivers it, and the control plane keeps one copy per `(rolloutId, seq)`.
 *
 * Every file is checked with the importer's own decoder before it is written, so what this
 * writes is exactly what `legacyImport.ts` (and the reference agent) reads.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as SqlClient from "@effect/sql/SqlClient"
import { Timestamp } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Path from "node:path"
import { writeFileAtomic } from "../support/atomicFile.js"
import { guard } from "./errors.js"
import { OutboxError } from "./errors.js"
import { QueuedEvent } from "./legacyImport.js"
import { checkFile, layerDatabase } from "./sqlite.js"
import { deletePendingMany, type PendingRow, selectCounts, selectPendingAfter } from "./store.js"

/** Rows per page: one commit deletes a page once its files are on disk. */
const PAGE = 500

/** Spec §4.1: every character outside `[A-Za-z0-9-@.]` becomes `_`. */
const sanitise = (part: string) => part.replace(/[^A-Za-z0-9\-@.]/g, "_")

/**
 * The reference agent's name for a queued event's file.
 */
export const legacyFileName = (row: {
  readonly seq: number
  readonly hostname: string
  readonly rolloutId: string
  readonly kind: string
}): string =>
  `${String(row.seq).padStart(20, "0")}-${sanitise(row.hostname)}-${sanitise(row.rolloutId)}-${sanitise(row.kind)}.json`

const encodeTimestamp = Schema.encode(Timestamp)
const decodeFile = Schema.decode(Schema.parseJson(QueuedEvent))

/**
 * The file's text for a row: the `QueuedEvent` the reference agent would have written
 * (pretty-printed, as serde_json's `to_vec_pretty`), or why it cannot be one.
 */
export const legacyFileText = (row: typeof PendingRow.Type): Effect.Effect<string, string> =>
  Effect.gen(function*() {
    const payload = yield* Effect.try({ try: (): unknown => JSON.parse(row.body), catch: () => "its body is not JSON" })
    const text = JSON.stringify(
      {
        seq: row.seq,
        hostname: row.hostname,
        rollout_id: row.rolloutId,
        event_kind: row.kind,
        created_at: yield* encodeTimestamp(row.createdAt).pipe(Effect.mapError((error) => error.message)),
        payload
      },
      null,
      2
    )
    yield* decodeFile(text).pipe(Effect.mapError((error) => `the reference agent could not read it: ${error.message}`))
    return text
  })

/**
 * What one export did.
 */
export interface ExportSummary {
  readonly directory: string
  /** Events written as files and removed from the outbox. */
  readonly exported: number
  /** Rows that cannot be written in the reference's format: kept in the outbox. */
  readonly kept: number
  /** Dead letters stay in the outbox: the control plane refused them for good. */
  readonly deadLetters: number
}

/**
 * Writes every pending row into `directory` (created, mode 0700) and removes it from the
 * outbox. A row that cannot be written in the reference's format is logged and kept.
 */
export const exportLegacyQueue: (
  sql: SqlClient.SqlClient,
  directory: string
) => Effect.Effect<ExportSummary, OutboxError> = Effect.fn("Outbox.exportLegacyQueue")(
  function*(sql: SqlClient.SqlClient, directory: string) {
    let afterId = 0
    let exported = 0
    let kept = 0
    while (true) {
      const rows = yield* selectPendingAfter(sql, afterId, PAGE).pipe(guard("export", "reading the pending rows"))
      if (rows.length === 0) break
      const written: Array<number> = []
      for (const row of rows) {
        const text = yield* Effect.either(legacyFileText(row))
        if (text._tag === "Left") {
          kept++
          yield* Effect.logError("cannot export this event in the reference agent's format; kept in the outbox").pipe(
            Effect.annotateLogs({ rolloutId: row.rolloutId, seq: row.seq, kind: row.kind, reason: text.left })
          )
          continue
        }
        const file = Path.join(directory, legacyFileName(row))
        yield* Effect.tryPromise({
          try: () => writeFileAtomic(file, `${text.right}\n`, 0o600),
          catch: (error) => error
        }).pipe(guard("export", `writing ${file}`))
        written.push(row.id)
      }
      // The files are synced (each rename and its directory): only now may the rows go.
      yield* deletePendingMany(sql, written).pipe(
        Effect.when(() => written.length > 0),
        guard("export", `removing ${written.length} exported rows`)
      )
      exported += written.length
      afterId = rows[rows.length - 1]!.id
    }
    const counts = yield* selectCounts(sql).pipe(guard("export", "counting the dead letters"))
    return { directory, exported, kept, deadLetters: counts.deadLetters }
  }
)

/**
 * Exports the outbox database `filename` (which must exist) into `directory`. A corrupt
 * database is an `OutboxError` and nothing is exported (the agent sets such a file aside
 * when it starts; an export must not guess).
 */
export const exportOutboxFile = (filename: string, directory: string): Effect.Effect<ExportSummary, OutboxError> =>
  Effect.gen(function*() {
    const health = yield* checkFile(filename)
    if (health._tag === "Corrupt") {
      return yield* new OutboxError({
        operation: "export",
        message: `the outbox ${filename} is corrupt (${health.reason}); nothing was exported`
      })
    }
    return yield* Effect.flatMap(SqlClient.SqlClient, (sql) => exportLegacyQueue(sql, directory)).pipe(
      Effect.provide(layerDatabase(filename).pipe(Layer.provide(NodeContext.layer)))
    )
  })
