/**
 * What a traced operation says about its subject, said once for its span and its log lines.
 */
import * as Effect from "effect/Effect"

/**
 * Puts `attributes` on the current span (in an `Effect.fn`, the operation's own) and on
 * every log line of `effect`.
 */
export const annotateSpanAndLogs = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  attributes: Record<string, unknown>
): Effect.Effect<A, E, R> =>
  Effect.zipRight(Effect.annotateCurrentSpan(attributes), effect).pipe(Effect.annotateLogs(attributes))
