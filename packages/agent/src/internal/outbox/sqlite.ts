/**
 * Opening the outbox's SQLite file: a raw better-sqlite3 health check (run before the
 * Effect client, which dies instead of failing when the driver throws on open), and the
 * client layer with its pragmas and migrations.
 *
 * @since 0.1.0
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import * as Migrator from "@effect/sql/Migrator"
import Database from "better-sqlite3"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { OutboxError } from "../../Outbox.js"
import { guard, guardLayer } from "./errors.js"
import { migrations } from "./migrations.js"

/**
 * How long a statement waits for a lock held by another connection (an operator's
 * `sqlite3` shell, a backup) before failing with SQLITE_BUSY.
 *
 * @since 0.1.0
 */
export const BUSY_TIMEOUT_MS = 5_000

/**
 * What a check of the file found.
 *
 * @since 0.1.0
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
 *
 * @since 0.1.0
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
 * The SQLite client on `filename` (WAL, the client's default), with `synchronous = FULL`
 * (in WAL mode better-sqlite3's build defaults to NORMAL, where the last commits can be
 * lost on power failure: an acknowledged enqueue must survive it), a busy timeout, and the
 * migrations applied. The client has a single connection, so per-connection pragmas set
 * once hold for every later statement.
 *
 * @since 0.1.0
 */
export const layerDatabase = (filename: string) =>
  SqliteMigrator.layer({ loader: Migrator.fromRecord(migrations) }).pipe(
    Layer.provideMerge(
      SqliteClient.layer({ filename }).pipe(
        Layer.tap((context) => {
          const sql = Context.get(context, SqliteClient.SqliteClient)
          return Effect.zipRight(sql`PRAGMA synchronous = FULL`, sql.unsafe(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`))
        })
      )
    ),
    guardLayer("open", filename)
  )
