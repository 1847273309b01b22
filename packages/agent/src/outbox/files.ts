/**
 * File names for what the outbox keeps aside (a corrupt database, an invalid legacy
 * file): never over an existing file, so setting aside never loses an earlier one.
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import { symlinkRefused } from "../support/atomicFile.js"
import { errnoOf } from "../support/describeError.js"

/**
 * The first of `base`, `base-1`, `base-2`, … that names no file.
 */
export const freeName = (fs: FileSystem.FileSystem, base: string): Effect.Effect<string, PlatformError> => {
  const attempt = (n: number): Effect.Effect<string, PlatformError> => {
    const candidate = n === 0 ? base : `${base}-${n}`
    return Effect.flatMap(fs.exists(candidate), (taken) => taken ? attempt(n + 1) : Effect.succeed(candidate))
  }
  return attempt(0)
}

/**
 * Makes the database file private before SQLite opens it: created 0600 when missing (SQLite
 * would create it with the process umask, 0644 under the usual 022), and an existing file
 * and its `-wal`/`-shm` set to 0600. SQLite gives the `-wal` and `-shm` files it creates
 * the database file's mode, so they follow. A mode already right is not touched, so a
 * read-only state directory fails here only when something needs changing.
 */
export const makePrivate = (filename: string): Effect.Effect<void, unknown> =>
  Effect.tryPromise({
    try: async () => {
      // SQLite follows symlinks: one planted at the database or its companions is refused first.
      for (const file of [filename, `${filename}-wal`, `${filename}-shm`, `${filename}-journal`]) {
        const stat = await Fs.lstat(file).catch(() => null)
        if (stat?.isSymbolicLink() === true) throw symlinkRefused(file)
      }
      const flags = Fs.constants.O_RDWR | Fs.constants.O_CREAT | Fs.constants.O_NOFOLLOW
      const handle = await Fs.open(filename, flags, 0o600).catch(
        async (error: unknown) => {
          // A read-only file system still lets an existing file be checked (and refused later);
          // a missing one cannot be created, which is said here, with the file's name.
          if (errnoOf(error) === "EROFS" && (await Fs.stat(filename).then(() => true, () => false))) return null
          throw error
        }
      )
      await handle?.close()
      for (const file of [filename, `${filename}-wal`, `${filename}-shm`]) {
        const stat = await Fs.lstat(file).catch(() => null)
        if (stat?.isSymbolicLink() === true) throw symlinkRefused(file)
        if (stat !== null && (stat.mode & 0o777) !== 0o600) await Fs.chmod(file, 0o600)
      }
    },
    catch: (error) => error
  })
