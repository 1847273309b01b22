/**
 * The outbox as `status` sees it when the agent is not running: opened read-only, no
 * migration, no import, no setting a corrupt file aside. Nothing in the state directory
 * changes.
 *
 * @internal
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import { guard } from "./errors.js"
import type { OutboxError } from "./errors.js"
import { type OutboxSummary, summariseOutbox } from "./OutboxSummary.js"
import { BUSY_TIMEOUT_MS } from "./sqlite.js"
import { selectCounts, selectDeadLetters, selectHead } from "./store.js"

/**
 * @internal
 */
export const readOutboxSummary = (filename: string, recentDeadLetters: number): Effect.Effect<
  OutboxSummary,
  OutboxError
> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
    const counts = yield* selectCounts(sql)
    const head = yield* selectHead(sql, 1)
    const dead = yield* selectDeadLetters(sql, recentDeadLetters)
    return summariseOutbox(counts, head[0]?.createdAt ?? null, dead)
  }).pipe(
    // WAL stays as the agent set it; a read-only connection must not try to change it.
    Effect.provide(SqliteClient.layer({ filename, readonly: true, disableWAL: true })),
    // Opening dies when the driver throws (not a database, no such table): an error here.
    guard("read", filename)
  )
