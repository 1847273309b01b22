/**
 * One agent per state directory: an exclusive lock on `<state-dir>/agent.lock`, taken before
 * anything else is written there and held for the scope. It is SQLite's own file lock (an
 * exclusive transaction on a one-page database): the kernel drops it when the process dies,
 * so a killed agent never leaves a stale lock behind, and SQLite refuses a second holder in
 * the same process as well as in another one. Before it, two agents started at the same
 * moment could both pass the status-socket check (the socket is bound only once the runtime
 * is up) and one could delete the other's socket; a state directory whose socket path is
 * too long for a Unix socket had no check at all.
 *
 * @internal
 */
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describeError } from "./describeError.js"

/** @internal */
export const LOCK_FILE = "agent.lock"

/**
 * Holds the state directory's lock for the current scope. Fails at once (no waiting) with
 * a line for the operator when another agent holds it.
 *
 * @internal
 */
export const lockStateDir = (stateDir: string): Effect.Effect<void, string, Scope.Scope> => {
  const file = Path.join(stateDir, LOCK_FILE)
  return Effect.acquireRelease(
    Effect.try({
      try: () => {
        // Made here, 0600 and never through a symlink, so that a full or read-only state
        // directory fails with its errno, not SQLite's "unable to open database file".
        Fs.closeSync(Fs.openSync(file, Fs.constants.O_RDWR | Fs.constants.O_CREAT | Fs.constants.O_NOFOLLOW, 0o600))
        const db = new Database(file, { timeout: 0 })
        try {
          // Nothing is ever written: no journal file next to the lock.
          db.pragma("journal_mode = MEMORY")
          db.pragma("locking_mode = EXCLUSIVE")
          db.exec("BEGIN EXCLUSIVE")
          return db
        } catch (error) {
          db.close()
          throw error
        }
      },
      catch: (error) =>
        error instanceof Error && "code" in error && (error.code === "SQLITE_BUSY" || error.code === "SQLITE_LOCKED")
          ? `another agent is running on this state directory (${stateDir}: it holds ${file})`
          : `cannot lock ${file}: ${describeError(error)}`
    }),
    (db) => Effect.sync(() => db.close())
  ).pipe(Effect.asVoid)
}
