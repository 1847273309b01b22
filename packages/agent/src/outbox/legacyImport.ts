/**
 * Import of the reference agent's file queue (`{stateDir}/outbound-queue/`, spec §4.1), so
 * that an upgrade loses no pending event. It runs on every start: when the directory is
 * missing or holds no `*.json` file it costs one `stat` and one listing.
 *
 * Valid files are inserted as durable rows in one transaction, in seq order (across
 * rollouts, as the reference delivered them), and only then deleted: a crash in between
 * re-imports them on the next start, where `UNIQUE (rollout_id, seq)` makes the insert a
 * no-op. Files that do not decode are renamed `<name>.invalid` (kept for an operator, not
 * retried on every start); files that cannot be read are left as they are for the next start.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type * as SqlClient from "@effect/sql/SqlClient"
import { AgentEvent, Timestamp, U64 } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Order from "effect/Order"
import * as Schema from "effect/Schema"
import { describeError, guard } from "./errors.js"
import type { OutboxError } from "./errors.js"
import { freeName } from "./files.js"
import { insertPending } from "./store.js"

/**
 * The reference agent's `QueuedEvent` (snake_case keys), with the consistency its writer
 * guarantees: the file's seq and kind are the payload's.
 */
export const QueuedEvent = Schema.Struct({
  seq: U64,
  hostname: Schema.String,
  rollout_id: Schema.String,
  event_kind: Schema.String,
  created_at: Timestamp,
  payload: AgentEvent
}).pipe(
  Schema.filter((queued) => {
    if (queued.payload.seq !== queued.seq) {
      return `seq ${queued.seq} differs from the payload's seq ${queued.payload.seq}`
    }
    if (queued.payload._tag !== queued.event_kind) {
      return `event_kind ${queued.event_kind} differs from the payload's kind ${queued.payload._tag}`
    }
    return true
  })
).annotations({ identifier: "QueuedEvent" })

export type QueuedEvent = typeof QueuedEvent.Type

/**
 * The reference agent's queue directory under `stateDir`.
 */
export const LEGACY_QUEUE_DIRECTORY = "outbound-queue"

interface Candidate {
  readonly file: string
  readonly name: string
  readonly queued: QueuedEvent
  readonly body: string
}

/** What became of one `*.json` file before the insert. */
type FileOutcome =
  | { readonly _tag: "Valid"; readonly candidate: Candidate }
  | { readonly _tag: "Invalid" }
  | { readonly _tag: "Unreadable" }

/** Seq order, as the reference scanned; created_at, then the file name, break ties. */
const candidateOrder: Order.Order<Candidate> = Order.combineAll([
  Order.mapInput(Order.number, (c: Candidate) => c.queued.seq),
  Order.mapInput(Order.number, (c: Candidate) => c.queued.created_at.getTime()),
  Order.mapInput(Order.string, (c: Candidate) => c.name)
])

const decodeFile = Schema.decode(Schema.parseJson(QueuedEvent))
const encodeEvent = Schema.encode(AgentEvent)

/**
 * What one import did.
 */
export interface ImportSummary {
  readonly imported: number
  readonly alreadyPresent: number
  readonly invalid: number
  readonly unreadable: number
}

const nothing: ImportSummary = { imported: 0, alreadyPresent: 0, invalid: 0, unreadable: 0 }

/**
 * Imports `{stateDir}/outbound-queue/*.json`. Problems with the files are logged and
 * skipped; a failure of the outbox itself is an `OutboxError`.
 */
export const importLegacyQueue: (
  sql: SqlClient.SqlClient,
  stateDir: string
) => Effect.Effect<ImportSummary, OutboxError, FileSystem.FileSystem | Path.Path> = Effect.fn(
  "Outbox.importLegacyQueue"
)(
  function*(sql: SqlClient.SqlClient, stateDir: string) {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const directory = path.join(stateDir, LEGACY_QUEUE_DIRECTORY)

    const listing = yield* fs.exists(directory).pipe(
      Effect.flatMap((exists) => exists ? fs.readDirectory(directory) : Effect.succeed([])),
      Effect.map((names) => names.filter((name) => name.endsWith(".json")).sort()),
      Effect.catchAll((error) =>
        Effect.as(
          Effect.logWarning("cannot list the reference agent's queue; will retry on the next start").pipe(
            Effect.annotateLogs({ directory, reason: describeError(error) })
          ),
          []
        )
      )
    )
    if (listing.length === 0) return nothing

    /** Keeps an undecodable file for an operator, under a name the next scan ignores. */
    const setAside = (file: string, reason: string): Effect.Effect<FileOutcome> =>
      freeName(fs, `${file}.invalid`).pipe(
        Effect.tap((keptAs) => fs.rename(file, keptAs)),
        Effect.matchEffect({
          onSuccess: (keptAs) =>
            Effect.logWarning("invalid queued event of the reference agent: not imported, kept under a new name")
              .pipe(Effect.annotateLogs({ file, keptAs, reason })),
          onFailure: (error) =>
            Effect.logWarning("invalid queued event of the reference agent: not imported, could not rename it")
              .pipe(Effect.annotateLogs({ file, reason, renameError: describeError(error) }))
        }),
        Effect.as<FileOutcome>({ _tag: "Invalid" })
      )

    const read = (name: string): Effect.Effect<FileOutcome> => {
      const file = path.join(directory, name)
      return fs.readFileString(file).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.logWarning("cannot read a queued event of the reference agent; will retry on the next start").pipe(
              Effect.annotateLogs({ file, reason: describeError(error) }),
              Effect.as<FileOutcome>({ _tag: "Unreadable" })
            ),
          onSuccess: (text) =>
            decodeFile(text).pipe(
              Effect.flatMap((queued) =>
                Effect.map(encodeEvent(queued.payload), (wire): FileOutcome => ({
                  _tag: "Valid",
                  candidate: { file, name, queued, body: JSON.stringify(wire) }
                }))
              ),
              Effect.catchTag("ParseError", (error) => setAside(file, error.message))
            )
        })
      )
    }

    const outcomes = yield* Effect.forEach(listing, read)
    const candidates = outcomes.flatMap((outcome) => outcome._tag === "Valid" ? [outcome.candidate] : [])
      .sort(candidateOrder)

    const inserted = yield* Effect.forEach(candidates, ({ body, queued }) =>
      insertPending(sql, {
        rolloutId: queued.rollout_id,
        seq: queued.seq,
        hostname: queued.hostname,
        kind: queued.payload._tag,
        durable: true,
        body,
        createdAtMillis: queued.created_at.getTime()
      })).pipe(sql.withTransaction, guard("legacy import", directory))

    yield* Effect.forEach(candidates, ({ file }) =>
      fs.remove(file).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning("imported a queued event but cannot delete its file; will retry on the next start").pipe(
            Effect.annotateLogs({ file, reason: describeError(error) })
          )
        )
      ), { discard: true })

    const imported = inserted.filter((wasInserted) => wasInserted).length
    const summary: ImportSummary = {
      imported,
      alreadyPresent: candidates.length - imported,
      invalid: outcomes.filter((outcome) => outcome._tag === "Invalid").length,
      unreadable: outcomes.filter((outcome) => outcome._tag === "Unreadable").length
    }
    yield* Effect.logInfo(`imported ${imported} events from the reference agent's queue`).pipe(
      Effect.annotateLogs({ directory, ...summary })
    )
    return summary
  }
)
