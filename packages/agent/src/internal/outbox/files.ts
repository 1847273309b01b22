/**
 * File names for what the outbox keeps aside (a corrupt database, an invalid legacy
 * file): never over an existing file, so setting aside never loses an earlier one.
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"

/**
 * The first of `base`, `base-1`, `base-2`, … that names no file.
 *
 * @since 0.1.0
 */
export const freeName = (fs: FileSystem.FileSystem, base: string): Effect.Effect<string, PlatformError> => {
  const attempt = (n: number): Effect.Effect<string, PlatformError> => {
    const candidate = n === 0 ? base : `${base}-${n}`
    return Effect.flatMap(fs.exists(candidate), (taken) => taken ? attempt(n + 1) : Effect.succeed(candidate))
  }
  return attempt(0)
}
