/**
 * The `OutboxService` over an open, migrated SQLite client.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { AgentEvent } from "@nixfleet/proto"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { guard as guardAs } from "./errors.js"
import { OutboxError } from "./errors.js"
import type { OutboxEntry, OutboxService } from "./Outbox.js"
import { OutboxDatabase } from "./sqlite.js"
import * as store from "./store.js"

const encodeEvent = Schema.encodeEither(AgentEvent)

/** A `LIMIT` SQLite accepts: whole and not negative (a bad page size reads nothing). */
const pageSize = (limit: number): number => Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : 0

/**
 * The wire JSON of an event. The event is typed, so a ParseError here means a caller
 * built an invalid value (a bug, e.g. a seq above 2^53 or an invalid date).
 */
const wireBody = (entry: OutboxEntry): Either.Either<string, OutboxError> =>
  encodeEvent(entry.event).pipe(
    Either.map((wire) => JSON.stringify(wire)),
    Either.mapLeft((error) =>
      new OutboxError({
        operation: "enqueue",
        message:
          `outbox enqueue refused an event that does not encode to wire JSON (a bug in its producer): ${error.message}`,
        cause: error
      })
    )
  )

/** What the enqueue's own lines name (its callers annotate no more than their own lines). */
const annotations = (entry: OutboxEntry) => ({ rolloutId: entry.rolloutId, seq: entry.seq, kind: entry.event._tag })

/**
 * Builds the service. Rows left by a previous run are announced to the sender once, so it
 * does not wait for the next enqueue to deliver them.
 */
export const make = (options: {
  readonly nonDurableCap: number
  /** The database file, named in every error. */
  readonly filename?: string
}): Effect.Effect<OutboxService, OutboxError, SqlClient.SqlClient | OutboxDatabase | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const database = yield* OutboxDatabase
    const guard = (operation: string, context?: string) =>
      guardAs(
        operation,
        options.filename === undefined
          ? context
          : context === undefined
          ? options.filename
          : `${options.filename}, ${context}`
      )
    const cap = options.nonDurableCap
    // Capacity 1, sliding: the sender only needs "something arrived since you last
    // looked", so one pending token is enough, a burst of enqueues coalesces into it, and
    // an offer never waits for the sender.
    const enqueued = yield* Queue.sliding<void>(1)
    yield* Effect.addFinalizer(() => Queue.shutdown(enqueued))
    const dropped = yield* Ref.make(0)

    // Untraced: it runs once per event, and its span (with the call site it captures) cost
    // as much as the reducer's own step; its failures are typed and logged by its callers.
    const enqueue = Effect.fnUntraced(
      function*(entry: OutboxEntry) {
        const body = yield* wireBody(entry)
        const now = yield* Clock.currentTimeMillis
        const row = {
          rolloutId: entry.rolloutId,
          seq: entry.seq,
          hostname: entry.hostname,
          kind: entry.event._tag,
          durable: entry.durable,
          body,
          createdAtMillis: now
        }
        // A durable row is one autocommit INSERT (atomic, one fsync), run on the connection
        // directly (the client's path costs more than the insert); a non-durable one also
        // trims the oldest probe chatter, in the same transaction.
        const { inserted, trimmed } = yield* (entry.durable
          ? Effect.map(
            database.autocommit(store.INSERT_PENDING, store.insertParams(row)),
            (rows) => ({ inserted: rows.length === 1, trimmed: 0 })
          )
          : Effect.gen(function*() {
            const inserted = yield* store.insertPending(sql, row)
            const trimmed = inserted ? yield* store.trimNonDurable(sql, cap) : 0
            return { inserted, trimmed }
          }).pipe(sql.withTransaction)).pipe(guard("enqueue", `rollout ${entry.rolloutId} seq ${entry.seq}`))
        if (trimmed > 0) {
          const before = yield* Ref.getAndUpdate(dropped, (n) => n + trimmed)
          // Once per process at warning level: under sustained pressure every enqueue drops one.
          yield* (before === 0 ? Effect.logWarning : Effect.logDebug)(
            "outbox holds more probe events than its cap: dropped the oldest non-durable ones"
          ).pipe(Effect.annotateLogs({ dropped: trimmed, cap, ...annotations(entry) }))
        }
        if (inserted) {
          yield* Queue.offer(enqueued, undefined)
        } else {
          yield* Effect.logDebug("event already in the outbox: kept the stored row").pipe(
            Effect.annotateLogs(annotations(entry))
          )
        }
        return inserted
      }
    )

    const head = Effect.fn("Outbox.head")(function*(limit: number) {
      return yield* store.selectHead(sql, pageSize(limit)).pipe(guard("head"))
    })

    const acknowledge = Effect.fn("Outbox.acknowledge")(function*(id: number) {
      yield* store.deletePending(sql, id).pipe(guard("acknowledge", `row ${id}`))
    })

    const acknowledgeMany = Effect.fn("Outbox.acknowledgeMany")(function*(ids: ReadonlyArray<number>) {
      if (ids.length === 0) return
      yield* store.deletePendingMany(sql, ids).pipe(guard("acknowledge", `${ids.length} rows`))
    })

    const recordFailure = Effect.fn("Outbox.recordFailure")(function*(id: number, reason: string) {
      yield* store.countFailure(sql, id, reason).pipe(guard("recordFailure", `row ${id}`))
    })

    const deadLetter = Effect.fn("Outbox.deadLetter")(function*(id: number, status: number | null, reason: string) {
      const now = yield* Clock.currentTimeMillis
      const moved = yield* store.moveToDeadLetters(sql, id, now, status, reason).pipe(
        sql.withTransaction,
        guard("deadLetter", `row ${id}`)
      )
      if (moved !== undefined) {
        yield* Effect.logWarning("control plane refused an event for good: moved it to the dead letters").pipe(
          Effect.annotateLogs({ rolloutId: moved.rolloutId, seq: moved.seq, status: status ?? "none", reason })
        )
      }
    })

    const pendingCount = Effect.fn("Outbox.pendingCount")(function*(rolloutId?: string) {
      return yield* store.countPending(sql, rolloutId).pipe(guard("pendingCount"))
    })

    const maxSeq = Effect.fn("Outbox.maxSeq")(function*(rolloutId: string) {
      return yield* store.selectMaxSeq(sql, rolloutId).pipe(guard("maxSeq", `rollout ${rolloutId}`))
    })

    const newestId = store.selectNewestId(sql).pipe(guard("newestId"), Effect.withSpan("Outbox.newestId"))

    const deadLetters = Effect.fn("Outbox.deadLetters")(function*(limit: number) {
      return yield* store.selectDeadLetters(sql, pageSize(limit)).pipe(guard("deadLetters"))
    })

    const stats = Effect.gen(function*() {
      const counts = yield* store.selectCounts(sql).pipe(guard("stats"))
      return {
        pending: counts.pending,
        pendingDurable: counts.pending - counts.nonDurable,
        deadLetters: counts.deadLetters,
        droppedNonDurable: yield* Ref.get(dropped)
      }
    }).pipe(Effect.withSpan("Outbox.stats"))

    if ((yield* store.countPending(sql, undefined).pipe(guard("open"))) > 0) {
      yield* Queue.offer(enqueued, undefined)
    }

    return {
      enqueue,
      head,
      acknowledge,
      acknowledgeMany,
      recordFailure,
      deadLetter,
      pendingCount,
      maxSeq,
      newestId,
      deadLetters,
      stats,
      awaitEnqueued: Queue.take(enqueued)
    }
  })
