/**
 * Which closure a link names: the running one (`/run/current-system`), or a profile
 * generation's. Read by the pipeline, the control-plane workers (heartbeat, long-poll) and
 * `status`.
 *
 * @internal
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

/** A link could not be read. @since 0.1.0 */
export class LinkUnreadable
  extends Data.TaggedError("LinkUnreadable")<{ readonly path: string; readonly detail: string }>
{
  override get message(): string {
    return `${this.path}: ${this.detail}`
  }
}

/** The last path component of a link target: a closure's store basename. */
export const closureBasename = (target: string) => target.replace(/\/+$/, "").split("/").pop() ?? ""

/**
 * The basename of what `link` points at (one level, as the reference agent reads
 * `/run/current-system`).
 *
 * @since 0.1.0
 */
export const readClosure = (link: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    fs.readLink(link).pipe(
      Effect.map(closureBasename),
      Effect.mapError((error) => new LinkUnreadable({ path: link, detail: error.message }))
    ))

/**
 * The basename of the running closure, or null when the link is missing or unreadable (a
 * fresh host, a test sandbox).
 *
 * @internal
 */
export const currentClosure = (link: string) =>
  readClosure(link).pipe(
    Effect.map((closure): string | null => closure === "" ? null : closure),
    Effect.orElseSucceed(() => null)
  )
