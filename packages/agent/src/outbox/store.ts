/**
 * The outbox's SQL statements and the schemas that decode its rows (snake_case columns,
 * 0/1 booleans and Unix milliseconds in SQLite; the `Outbox.ts` shapes in memory).
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { OutboxRow } from "./Outbox.js"

const SqliteBoolean = Schema.transform(Schema.Literal(0, 1), Schema.Boolean, {
  strict: true,
  decode: (flag) => flag === 1,
  encode: (value) => (value ? 1 : 0)
})

const column = <S extends Schema.Schema.Any>(schema: S, key: string) =>
  Schema.propertySignature(schema).pipe(Schema.fromKey(key))

/**
 * A row of `outbox`.
 */
export const PendingRow = Schema.Struct({
  id: Schema.Int,
  rolloutId: column(Schema.String, "rollout_id"),
  seq: Schema.Int,
  hostname: Schema.String,
  kind: Schema.String,
  durable: SqliteBoolean,
  body: Schema.String,
  createdAt: column(Schema.DateFromNumber, "created_at"),
  attempts: Schema.Int,
  lastError: column(Schema.NullOr(Schema.String), "last_error")
})

/**
 * A row of `outbox_dead_letter`.
 */
export const DeadLetterRow = Schema.Struct({
  rolloutId: column(Schema.String, "rollout_id"),
  seq: Schema.Int,
  hostname: Schema.String,
  kind: Schema.String,
  body: Schema.String,
  createdAt: column(Schema.DateFromNumber, "created_at"),
  deadAt: column(Schema.DateFromNumber, "dead_at"),
  status: Schema.NullOr(Schema.Int),
  reason: Schema.String
})

const Count = Schema.Struct({ n: Schema.Int })

const decodeRows = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknown(Schema.Array(schema))

const count = (rows: ReadonlyArray<unknown>) => Effect.map(decodeRows(Count)(rows), (decoded) => decoded[0]?.n ?? 0)

/**
 * What is inserted: the identifying columns and the wire JSON of the event.
 */
export interface NewRow extends Pick<OutboxRow, "rolloutId" | "seq" | "hostname" | "kind" | "durable" | "body"> {
  readonly createdAtMillis: number
}

/**
 * The enqueue statement, as one constant text: every enqueue runs it, and a template would
 * be compiled again on each (a third of the client's cost per statement, measured).
 */
export const INSERT_PENDING = "INSERT INTO outbox (rollout_id, seq, hostname, kind, durable, body, created_at) " +
  "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rollout_id, seq) DO NOTHING RETURNING id"

/**
 * Inserts a pending row unless `(rollout_id, seq)` is taken; `true` when inserted.
 */
export const insertPending = (sql: SqlClient.SqlClient, row: NewRow): Effect.Effect<boolean, SqlError> =>
  // Parameters bound by SQLite, as a template's are.
  Effect.map(sql.unsafe(INSERT_PENDING, insertParams(row)), (rows) => rows.length === 1)

/**
 * The parameters of `INSERT_PENDING`, in its order.
 */
export const insertParams = (row: NewRow): ReadonlyArray<unknown> => [
  row.rolloutId,
  row.seq,
  row.hostname,
  row.kind,
  row.durable ? 1 : 0,
  row.body,
  row.createdAtMillis
]

/**
 * Deletes the oldest non-durable rows beyond the newest `cap`; returns how many. The
 * OFFSET walk runs on the partial index and stops after `cap` entries.
 */
export const trimNonDurable = (sql: SqlClient.SqlClient, cap: number): Effect.Effect<number, SqlError> =>
  Effect.map(
    sql`DELETE FROM outbox
      WHERE durable = 0
        AND id <= (SELECT id FROM outbox WHERE durable = 0 ORDER BY id DESC LIMIT 1 OFFSET ${cap})
      RETURNING id`,
    (rows) => rows.length
  )

/**
 * The oldest `limit` pending rows, in insertion order.
 */
export const selectHead = (
  sql: SqlClient.SqlClient,
  limit: number
): Effect.Effect<ReadonlyArray<typeof PendingRow.Type>, SqlError | ParseResult.ParseError> =>
  Effect.flatMap(
    sql`SELECT id, rollout_id, seq, hostname, kind, durable, body, created_at, attempts, last_error
      FROM outbox ORDER BY id LIMIT ${limit}`,
    decodeRows(PendingRow)
  )

/**
 * Up to `limit` pending rows whose id is above `afterId`, in insertion order: a walk over
 * the whole table one page at a time.
 */
export const selectPendingAfter = (
  sql: SqlClient.SqlClient,
  afterId: number,
  limit: number
): Effect.Effect<ReadonlyArray<typeof PendingRow.Type>, SqlError | ParseResult.ParseError> =>
  Effect.flatMap(
    sql`SELECT id, rollout_id, seq, hostname, kind, durable, body, created_at, attempts, last_error
      FROM outbox WHERE id > ${afterId} ORDER BY id LIMIT ${limit}`,
    decodeRows(PendingRow)
  )

/**
 * The highest seq of a rollout among the pending rows and the dead letters, 0 when it has
 * none (both tables' `(rollout_id, seq)` indexes answer it).
 */
export const selectMaxSeq = (
  sql: SqlClient.SqlClient,
  rolloutId: string
): Effect.Effect<number, SqlError | ParseResult.ParseError> =>
  Effect.flatMap(
    sql`SELECT max(
        coalesce((SELECT max(seq) FROM outbox WHERE rollout_id = ${rolloutId}), 0),
        coalesce((SELECT max(seq) FROM outbox_dead_letter WHERE rollout_id = ${rolloutId}), 0)
      ) AS n`,
    count
  )

export const deletePending = (sql: SqlClient.SqlClient, id: number): Effect.Effect<void, SqlError> =>
  Effect.asVoid(sql`DELETE FROM outbox WHERE id = ${id}`)

/**
 * Deletes several pending rows in one statement (one commit, one fsync).
 */
export const deletePendingMany = (
  sql: SqlClient.SqlClient,
  ids: ReadonlyArray<number>
): Effect.Effect<void, SqlError> => Effect.asVoid(sql`DELETE FROM outbox WHERE ${sql.in("id", ids)}`)

export const countFailure = (sql: SqlClient.SqlClient, id: number, reason: string): Effect.Effect<void, SqlError> =>
  Effect.asVoid(sql`UPDATE outbox SET attempts = attempts + 1, last_error = ${reason} WHERE id = ${id}`)

/**
 * Copies pending row `id` into the dead letters (a second refusal of the same
 * `(rollout_id, seq)` replaces the first: the latest reason is what an operator needs)
 * and deletes it. Returns the moved row's key, or `undefined` when `id` is not pending.
 * Run it in a transaction.
 */
export const moveToDeadLetters = (
  sql: SqlClient.SqlClient,
  id: number,
  deadAtMillis: number,
  status: number | null,
  reason: string
): Effect.Effect<{ readonly rolloutId: string; readonly seq: number } | undefined, SqlError | ParseResult.ParseError> =>
  Effect.gen(function*() {
    const moved = yield* sql`INSERT INTO outbox_dead_letter
        (rollout_id, seq, hostname, kind, body, created_at, dead_at, status, reason)
      SELECT rollout_id, seq, hostname, kind, body, created_at, ${deadAtMillis}, ${status}, ${reason}
        FROM outbox WHERE id = ${id}
      ON CONFLICT (rollout_id, seq) DO UPDATE SET
        hostname = excluded.hostname, kind = excluded.kind, body = excluded.body,
        created_at = excluded.created_at, dead_at = excluded.dead_at,
        status = excluded.status, reason = excluded.reason
      RETURNING rollout_id, seq`.pipe(
      Effect.flatMap(decodeRows(Schema.Struct({ rolloutId: column(Schema.String, "rollout_id"), seq: Schema.Int })))
    )
    yield* deletePending(sql, id)
    return moved[0]
  })

/**
 * Pending rows of one rollout (served by the `(rollout_id, seq)` index) or of all.
 */
export const countPending = (
  sql: SqlClient.SqlClient,
  rolloutId: string | undefined
): Effect.Effect<number, SqlError | ParseResult.ParseError> =>
  Effect.flatMap(
    rolloutId === undefined
      ? sql`SELECT count(*) AS n FROM outbox`
      : sql`SELECT count(*) AS n FROM outbox WHERE rollout_id = ${rolloutId}`,
    count
  )

/**
 * The id of the newest pending row, 0 when none is pending (the primary key answers it).
 */
export const selectNewestId = (sql: SqlClient.SqlClient): Effect.Effect<number, SqlError | ParseResult.ParseError> =>
  Effect.flatMap(sql`SELECT coalesce(max(id), 0) AS n FROM outbox`, count)

/**
 * The most recent `limit` dead letters, newest first.
 */
export const selectDeadLetters = (
  sql: SqlClient.SqlClient,
  limit: number
): Effect.Effect<ReadonlyArray<typeof DeadLetterRow.Type>, SqlError | ParseResult.ParseError> =>
  Effect.flatMap(
    sql`SELECT rollout_id, seq, hostname, kind, body, created_at, dead_at, status, reason
      FROM outbox_dead_letter ORDER BY dead_at DESC, id DESC LIMIT ${limit}`,
    decodeRows(DeadLetterRow)
  )

/**
 * The counters of `stats` (all but the in-memory drop count), in one read.
 */
export const selectCounts = (
  sql: SqlClient.SqlClient
): Effect.Effect<
  { readonly pending: number; readonly nonDurable: number; readonly deadLetters: number },
  SqlError | ParseResult.ParseError
> =>
  Effect.flatMap(
    sql`SELECT
        (SELECT count(*) FROM outbox) AS pending,
        (SELECT count(*) FROM outbox WHERE durable = 0) AS nonDurable,
        (SELECT count(*) FROM outbox_dead_letter) AS deadLetters`,
    (rows) =>
      Effect.map(
        decodeRows(Schema.Struct({ pending: Schema.Int, nonDurable: Schema.Int, deadLetters: Schema.Int }))(rows),
        (decoded) => decoded[0] ?? { pending: 0, nonDurable: 0, deadLetters: 0 }
      )
  )
