/**
 * The outbox as `status` reports it: its depth, its oldest pending event and its latest dead
 * letters. The running agent and `status` (reading the file when the agent is down) build it
 * the same way.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * @since 0.1.0
 */
export const DeadLetterSummary = Schema.Struct({
  rolloutId: Schema.String,
  seq: Schema.Int,
  kind: Schema.String,
  status: Schema.NullOr(Schema.Int),
  reason: Schema.String,
  deadAt: Schema.Date
})

/**
 * @since 0.1.0
 */
export const OutboxSummary = Schema.Struct({
  /** Events waiting for the control plane. */
  depth: Schema.Int,
  /** Of those, probe chatter (dropped first when the cap is reached). */
  nonDurable: Schema.Int,
  oldestPendingAt: Schema.NullOr(Schema.Date),
  deadLetters: Schema.Int,
  /** The most recent dead letters, newest first. */
  recentDeadLetters: Schema.Array(DeadLetterSummary)
})

/**
 * @since 0.1.0
 */
export type OutboxSummary = typeof OutboxSummary.Type

/**
 * How many of the latest dead letters a report lists (its count covers all of them).
 *
 * @since 0.1.0
 */
export const RECENT_DEAD_LETTERS = 5

/**
 * The outbox part of a report, from the outbox's counts, its oldest pending row and its
 * latest dead letters.
 *
 * @since 0.1.0
 */
export const summariseOutbox = (
  counts: { readonly pending: number; readonly nonDurable: number; readonly deadLetters: number },
  oldestPendingAt: Date | null,
  recent: ReadonlyArray<typeof DeadLetterSummary.Type>
): OutboxSummary => ({
  depth: counts.pending,
  nonDurable: counts.nonDurable,
  oldestPendingAt,
  deadLetters: counts.deadLetters,
  recentDeadLetters: recent.map(({ deadAt, kind, reason, rolloutId, seq, status }) => ({
    rolloutId,
    seq,
    kind,
    status,
    reason,
    deadAt
  }))
})
