/**
 * Opening the outbox's SQLite file: a raw better-sqlite3 health check (run before the
 * client, so that a corrupt file is told from a transient error), and the client layer with
 * its pragmas and migrations.
 *
 * The client is an `@effect/sql` client over one better-sqlite3 connection, built here
 * rather than by `@effect/sql-sqlite-node` so that the durable enqueue can run its prepared
 * statement on that connection directly: the client's statement path (span, scope, lock,
 * statement cache) costs more than SQLite's own insert, and the enqueue runs once per event.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import Database from "better-sqlite3"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { guard, guardLayer } from "./errors.js"
import type { OutboxError } from "./errors.js"
import { migrations } from "./migrations.js"

/**
 * How long a statement waits for a lock held by another connection (an operator's
 * `sqlite3` shell, a backup) before failing with SQLITE_BUSY.
 */
export const BUSY_TIMEOUT_MS = 5_000

/**
 * What a check of the file found.
 */
export type FileHealth =
  | { readonly _tag: "Healthy" }
  | { readonly _tag: "Corrupt"; readonly reason: string }

const corruptCodes = new Set(["SQLITE_NOTADB", "SQLITE_CORRUPT"])

const isCorruption = (error: unknown): error is Error & { readonly code: string } =>
  error instanceof Error && "code" in error && typeof error.code === "string" &&
  (corruptCodes.has(error.code) || error.code.startsWith("SQLITE_CORRUPT_"))

/**
 * Runs `PRAGMA quick_check` (or `integrity_check`) on an existing file through a
 * read-only connection of its own (a read-write one deletes a `-wal` file it cannot use
 * when it closes: evidence an operator may need). "file is not a database" and SQLITE_CORRUPT* errors mean
 * `Corrupt`; any other error (permissions, I/O, a lock) is an `OutboxError`, so a
 * transient problem never makes the caller move a good database aside.
 */
export const checkFile = (
  filename: string,
  pragma: "quick_check" | "integrity_check" = "quick_check"
): Effect.Effect<FileHealth, OutboxError> =>
  Effect.try({
    try: (): FileHealth => {
      const db = new Database(filename, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS })
      try {
        const rows = db.pragma(pragma) as ReadonlyArray<Record<string, unknown>>
        const messages = rows.map((row) => String(Object.values(row)[0]))
        return messages.length === 1 && messages[0] === "ok"
          ? { _tag: "Healthy" }
          : { _tag: "Corrupt", reason: `${pragma}: ${messages.join("; ")}` }
      } finally {
        db.close()
      }
    },
    catch: (error) => error
  }).pipe(
    Effect.catchIf(
      isCorruption,
      (error) => Effect.succeed<FileHealth>({ _tag: "Corrupt", reason: `${error.code}: ${error.message}` })
    ),
    guard("open", `checking ${filename}`)
  )

/**
 * The connection's own statements, next to its `SqlClient`.
 */
export interface OutboxDatabaseService {
  /**
   * Runs one constant statement as its own autocommit transaction and returns its rows.
   * It runs at once unless a client transaction is open on the connection, and then waits
   * for it, as the client's own statements do. Never call it inside a client transaction
   * (it would wait for itself).
   */
  readonly autocommit: (text: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<unknown>, SqlError>
}

export class OutboxDatabase extends Context.Tag("@nixfleet/agent/OutboxDatabase")<
  OutboxDatabase,
  OutboxDatabaseService
>() {}

/** Prepared statements kept per connection (the outbox has a few dozen texts). */
const STATEMENT_CACHE = 200

const executeFailed = (cause: unknown) => new SqlError({ cause, message: "Failed to execute statement" })

const openConnection = (filename: string) =>
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new Database(filename),
        catch: (cause) => new SqlError({ cause, message: `Failed to open ${filename}` })
      }),
      (db) => Effect.sync(() => db.close())
    )
    // Least recently used first (a Map keeps insertion order; a hit moves to the end).
    const prepared = new Map<string, Database.Statement>()
    const prepare = (text: string): Database.Statement => {
      const hit = prepared.get(text)
      if (hit !== undefined) {
        prepared.delete(text)
        prepared.set(text, hit)
        return hit
      }
      const statement = db.prepare(text)
      prepared.set(text, statement)
      if (prepared.size > STATEMENT_CACHE) prepared.delete(prepared.keys().next().value!)
      return statement
    }
    // Rows come as objects unless a statement is switched to raw (executeValues only).
    const rows = (statement: Database.Statement, params: ReadonlyArray<unknown>): ReadonlyArray<object> => {
      if (statement.reader) return statement.all(...params) as ReadonlyArray<object>
      statement.run(...params)
      return []
    }
    const execute = (text: string, params: ReadonlyArray<unknown>) =>
      Effect.try({ try: () => rows(prepare(text), params), catch: executeFailed })
    const connection: Connection = {
      execute: (text, params, transformRows) =>
        Effect.map(execute(text, params), (result) => transformRows === undefined ? result : transformRows(result)),
      executeRaw: (text, params) =>
        Effect.try({
          try: () => {
            const statement = prepare(text)
            return statement.reader ? statement.all(...params) : statement.run(...params)
          },
          catch: executeFailed
        }),
      executeValues: (text, params) =>
        Effect.try({
          try: () => {
            const statement = prepare(text)
            if (!statement.reader) {
              statement.run(...params)
              return []
            }
            statement.raw(true)
            try {
              return statement.all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
            } finally {
              statement.raw(false)
            }
          },
          catch: executeFailed
        }),
      executeUnprepared: (text, params, transformRows) =>
        Effect.map(
          Effect.try({ try: () => rows(db.prepare(text), params), catch: executeFailed }),
          (result) => transformRows === undefined ? result : transformRows(result)
        ),
      executeStream: () => Stream.dieMessage("the outbox's SQLite client does not stream")
    }
    return { db, connection, execute }
  })

/**
 * The client and the connection's own statements on `filename` (WAL). One connection:
 * statements and transactions take turns on one lock, as `@effect/sql-sqlite-node`'s do.
 */
const layerConnection = (filename: string) =>
  Layer.scopedContext(Effect.gen(function*() {
    const { connection, db, execute } = yield* openConnection(filename)
    db.pragma("journal_mode = WAL")
    const lock = yield* Effect.makeSemaphore(1)
    const sql = yield* SqlClient.make({
      acquirer: lock.withPermits(1)(Effect.succeed(connection)),
      transactionAcquirer: Effect.uninterruptibleMask((restore) =>
        Effect.as(
          Effect.zipRight(
            restore(lock.take(1)),
            Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, lock.release(1)))
          ),
          connection
        )
      ),
      compiler: Statement.makeCompilerSqlite(),
      spanAttributes: [["db.system.name", "sqlite"]]
    })
    const database: OutboxDatabaseService = {
      // A plain statement needs the lock only against an open transaction (the client's
      // own statements release it before they run): outside one it runs as its own
      // transaction, and JavaScript runs the check and the statement without a gap.
      autocommit: (text, params) =>
        Effect.suspend(() => db.inTransaction ? lock.withPermits(1)(execute(text, params)) : execute(text, params))
    }
    return Context.make(SqlClient.SqlClient, sql).pipe(Context.add(OutboxDatabase, database))
  })).pipe(Layer.provide(Reactivity.layer))

/**
 * The SQLite client on `filename` (WAL, the client's default), with `synchronous = FULL`
 * (in WAL mode better-sqlite3's build defaults to NORMAL, where the last commits can be
 * lost on power failure: an acknowledged enqueue must survive it), a busy timeout, and the
 * migrations applied. The client has a single connection, so per-connection pragmas set
 * once hold for every later statement.
 */
export const layerDatabase = (filename: string) =>
  Layer.effectDiscard(Migrator.make({})({ loader: Migrator.fromRecord(migrations) })).pipe(
    Layer.provideMerge(
      layerConnection(filename).pipe(
        Layer.tap((context) => {
          const sql = Context.get(context, SqlClient.SqlClient)
          return Effect.zipRight(sql`PRAGMA synchronous = FULL`, sql.unsafe(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`))
        })
      )
    ),
    guardLayer("open", filename)
  )
