/**
 * A corrupt outbox database is moved aside, never deleted and never silently replaced:
 * the agent starts with an empty outbox (it must keep reporting) and the error log names
 * the file an operator can inspect or salvage.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { guard } from "./errors.js"
import type { OutboxError } from "./errors.js"
import { freeName } from "./files.js"
import { checkFile } from "./sqlite.js"

/** SQLite's companions of a database file in WAL mode; they belong to the moved file. */
const companions = ["-wal", "-shm"] as const

/** `2026-05-17T11:50:00.123Z` → `20260517T115000.123Z`: sortable and free of `:`. */
const utcStamp = (millis: number): string => new Date(millis).toISOString().replace(/[-:]/g, "")

/**
 * Checks `filename` when it exists; when it is corrupt, renames it (and its `-wal` and
 * `-shm` files, which SQLite would otherwise apply to the fresh database) to
 * `<filename>.corrupt-<UTC timestamp>` and logs an error. Returns the new name, if any.
 */
export const quarantineIfCorrupt: (
  filename: string
) => Effect.Effect<string | undefined, OutboxError, FileSystem.FileSystem> = Effect.fn("Outbox.quarantineIfCorrupt")(
  function*(filename: string) {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(filename).pipe(guard("open", `checking ${filename}`)))) return undefined
    const health = yield* checkFile(filename)
    if (health._tag === "Healthy") return undefined
    const now = yield* Clock.currentTimeMillis
    const target = yield* freeName(fs, `${filename}.corrupt-${utcStamp(now)}`).pipe(
      guard("open", `naming the copy of ${filename}`)
    )
    yield* fs.rename(filename, target).pipe(guard("open", `moving ${filename} to ${target}`))
    for (const suffix of companions) {
      const companion = `${filename}${suffix}`
      if (yield* fs.exists(companion).pipe(guard("open", `checking ${companion}`))) {
        yield* fs.rename(companion, `${target}${suffix}`).pipe(guard("open", `moving ${companion}`))
      }
    }
    yield* Effect.logError("outbox database is corrupt: moved it aside and started an empty outbox").pipe(
      Effect.annotateLogs({ file: filename, movedTo: target, reason: health.reason })
    )
    return target
  }
)
