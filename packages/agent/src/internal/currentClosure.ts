import * as Effect from "effect/Effect"
import { readClosure } from "../phases/Profile.js"

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
