/**
 * The outbound sender fiber: delivers the outbox to `POST /v1/agent/events`, oldest row
 * first, woken by every enqueue (with a periodic safety tick).
 *
 * Answers: 2xx acknowledges and deletes the row. 408, 429, 5xx and transport errors are
 * retried with capped exponential backoff. Any other 4xx dead-letters the row (kept and
 * visible, never retried) and delivery goes on with the next one; 401, 403 and 426 are
 * also logged as a misconfiguration of the agent (certificate, machine id, protocol).
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import { ControlPlaneClient } from "./ControlPlaneClient.js"
import { controlPlaneRetry } from "./internal/retry.js"
import { Outbox, type OutboxError, type OutboxRow } from "./Outbox.js"
import { Shutdown } from "./Shutdown.js"

/** Rows read per pass: the backlog is paged, never loaded whole. */
const PAGE = 100

/**
 * Retry delays for deliveries (the control-plane policy: 1 s doubling, 60 s cap, jitter).
 *
 * @since 0.1.0
 */
export const deliveryRetry = controlPlaneRetry

/** Wakes the sender even without an enqueue (e.g. rows left by a previous process). */
const SAFETY_TICK = "15 seconds"

/**
 * @since 0.1.0
 */
export const deliveries = Metric.counter("nixfleet_agent_outbox_deliveries_total", {
  description: "Outbox delivery attempts, by result (delivered, retried, dead_lettered)",
  incremental: true
})

/**
 * What an answer means for the row.
 *
 * @since 0.1.0
 */
export type Verdict = "delivered" | "retry" | "dead-letter"

/**
 * @since 0.1.0
 */
export const classify = (status: number): Verdict => {
  if (status >= 200 && status < 300) return "delivered"
  if (status === 408 || status === 429 || status >= 500) return "retry"
  if (status >= 400) return "dead-letter"
  return "retry"
}

class Retry extends Data.TaggedError("Retry")<{ readonly reason: string }> {
  // What the retry log line and the outbox's last error say.
  override get message(): string {
    return this.reason
  }
}

/**
 * One attempt: POST the row and act on the answer. A dead-lettered row is moved at once; a
 * delivered one is left to the caller's batched acknowledgement.
 */
const attempt = (row: OutboxRow) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox
    const client = yield* ControlPlaneClient
    const answer = yield* client.postEvent({ hostname: row.hostname, rolloutId: row.rolloutId, eventJson: row.body })
      .pipe(
        Effect.catchTag("TransportError", (error) => Effect.fail(new Retry({ reason: error.message })))
      )
    const verdict = classify(answer.status)
    const reason = `HTTP ${answer.status}${answer.body === "" ? "" : `: ${answer.body}`}`
    switch (verdict) {
      case "delivered":
        yield* Metric.increment(Metric.tagged(deliveries, "result", "delivered"))
        return "delivered" as const
      case "dead-letter":
        if (answer.status === 401 || answer.status === 403 || answer.status === 426) {
          yield* Effect.logError("the control plane refuses this agent; check its certificate, machine id and URL")
            .pipe(Effect.annotateLogs("reason", reason))
        }
        yield* outbox.deadLetter(row.id, answer.status, reason)
        yield* Metric.increment(Metric.tagged(deliveries, "result", "dead_lettered"))
        yield* Effect.logError("the control plane refused an event for good; moved to the dead letters").pipe(
          Effect.annotateLogs("reason", reason)
        )
        return "dead-lettered" as const
      case "retry":
        return yield* Effect.fail(new Retry({ reason }))
    }
  })

/**
 * Delivers one row, retrying until the control plane settles it. Before each retry wait
 * the rows already delivered are acknowledged, so a long outage does not keep them.
 */
const deliver = (row: OutboxRow, flushAcknowledged: Effect.Effect<void, OutboxError>) =>
  attempt(row).pipe(
    Effect.tapError((error) =>
      Effect.all([
        Effect.logWarning("event delivery failed; will retry").pipe(Effect.annotateLogs("reason", error.message)),
        Effect.flatMap(Outbox, (outbox) => Effect.ignore(outbox.recordFailure(row.id, error.message))),
        Metric.increment(Metric.tagged(deliveries, "result", "retried")),
        Effect.ignore(flushAcknowledged)
      ], { discard: true })
    ),
    Effect.retry(deliveryRetry),
    Effect.annotateLogs({ rolloutId: row.rolloutId, seq: row.seq, kind: row.kind }),
    Effect.withSpan("OutboundSender.deliver", {
      attributes: { rolloutId: row.rolloutId, seq: row.seq, kind: row.kind }
    })
  )

/**
 * Delivers pages until the outbox is empty. Delivered rows are acknowledged per page in one
 * commit (one fsync per page instead of one per event).
 */
const drain = Effect.gen(function*() {
  const outbox = yield* Outbox
  const acknowledged: Array<number> = []
  // A failed flush puts its ids back, so the next flush tries them again.
  const flush = Effect.suspend(() => {
    const ids = acknowledged.splice(0)
    return outbox.acknowledgeMany(ids).pipe(Effect.tapError(() => Effect.sync(() => acknowledged.unshift(...ids))))
  })
  while (true) {
    const rows = yield* outbox.head(PAGE).pipe(Effect.retry(deliveryRetry))
    if (rows.length === 0) return
    for (const row of rows) {
      if ((yield* deliver(row, flush)) === "delivered") acknowledged.push(row.id)
    }
    yield* Effect.retry(flush, deliveryRetry)
  }
})

/**
 * Forks the sender in the runtime's scope.
 *
 * @since 0.1.0
 */
export const OutboundSender = Layer.scopedDiscard(
  Effect.gen(function*() {
    const shutdown = yield* Shutdown
    const outbox = yield* Outbox
    const context = yield* Effect.context<Outbox | ControlPlaneClient>()
    const stopped = Deferred.await(shutdown)
    const loop = Effect.gen(function*() {
      while (!(yield* Deferred.isDone(shutdown))) {
        yield* Effect.raceFirst(Effect.asVoid(drain), stopped)
        yield* Effect.raceAll([outbox.awaitEnqueued, Effect.sleep(SAFETY_TICK), stopped])
      }
    })
    yield* Effect.forkScoped(loop.pipe(Effect.provide(context)))
  })
)
