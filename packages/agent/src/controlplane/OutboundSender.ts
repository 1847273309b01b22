/**
 * The outbound sender fiber: delivers the outbox to `POST /v1/agent/events`, oldest row
 * first, woken by every enqueue (with a periodic safety tick).
 *
 * Answers: 2xx acknowledges and deletes the row. 400, 413, 415 and 422 condemn the body
 * itself: the row is dead-lettered (kept and visible, never retried) and delivery goes on
 * with the next one. 401, 403 and 426 speak of the agent (its certificate, its machine id,
 * its protocol), not of the event: delivery is blocked, the row stays at the head and is
 * retried with backoff, and the journal (one line per change, not per try), `status` and
 * the `nixfleet_agent_outbox_delivery_blocked` gauge say so until an answer shows the
 * control plane accepts the agent again. Anything else (408, 429, 5xx, other 4xx,
 * transport errors) is retried with backoff, as the reference agent retries every non-2xx.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import { AgentConfig } from "../config/AgentConfig.js"
import { Outbox, type OutboxError, type OutboxRow, type OutboxService } from "../outbox/Outbox.js"
import { Observation, type ObservationService } from "../runtime/Observation.js"
import { untilShutdown } from "../runtime/Shutdown.js"
import { StatusBoard, type StatusBoardService } from "../runtime/StatusBoard.js"
import { describeDeliveryBlocked } from "../runtime/StatusBoard.js"
import { forkWorker } from "../runtime/Workers.js"
import { annotateSpanAndLogs } from "../support/annotate.js"
import { ControlPlaneClient, type ControlPlaneClientService } from "./ControlPlaneClient.js"
import { controlPlaneRetry } from "./retry.js"

/**
 * 1 while the control plane refuses the agent's events for its identity, labelled with the
 * refusal's `status` (401, 403, 426); 0 otherwise. Set by the outbound sender when the state
 * changes (every status starts at 0), so an alert needs no log query.
 *
 * @since 0.1.0
 */
export const deliveryBlocked = Metric.gauge("nixfleet_agent_outbox_delivery_blocked", {
  description: "1 while the control plane refuses this agent's events (401, 403, 426), by status; 0 otherwise"
})

/**
 * The statuses that block delivery rather than condemn an event.
 *
 * @since 0.1.0
 */
export const BLOCKING_STATUSES: ReadonlyArray<number> = [401, 403, 426]

/**
 * Sets the gauge: 1 for `status` (when blocked), 0 for the others.
 *
 * @since 0.1.0
 */
export const setDeliveryBlocked = (status: number | null): Effect.Effect<void> =>
  Effect.forEach(
    BLOCKING_STATUSES,
    (each) => Metric.set(Metric.tagged(deliveryBlocked, "status", String(each)), each === status ? 1 : 0),
    { discard: true }
  )

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
  description: "Outbox delivery attempts, by result (delivered, retried, blocked, dead_lettered)",
  incremental: true
})

/**
 * What an answer means for the row.
 *
 * @since 0.1.0
 */
export type Verdict = "delivered" | "retry" | "blocked" | "dead-letter"

/** Answers about the body itself: sending it again cannot succeed. */
const CONDEMNING_STATUSES: ReadonlyArray<number> = [400, 413, 415, 422]

/**
 * @since 0.1.0
 */
export const classify = (status: number): Verdict => {
  if (status >= 200 && status < 300) return "delivered"
  if (CONDEMNING_STATUSES.includes(status)) return "dead-letter"
  if (BLOCKING_STATUSES.includes(status)) return "blocked"
  return "retry"
}

/** What an operator can do about each blocking answer. */
const blockingHint: Readonly<Record<number, string>> = {
  401:
    "the control plane does not accept this agent's client certificate (missing, expired, revoked or from another CA)",
  403: "the control plane's name for this certificate is not --machine-id",
  426: "the control plane speaks another protocol version than this agent"
}

class Retry extends Data.TaggedError("Retry")<{ readonly reason: string }> {
  // What the retry log line and the outbox's last error say.
  override get message(): string {
    return this.reason
  }
}

class Blocked extends Data.TaggedError("Blocked")<{ readonly status: number; readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

interface Sender {
  readonly outbox: OutboxService
  readonly client: ControlPlaneClientService
  readonly board: StatusBoardService
  /** Told how far delivery has come (`awaitDelivered` watches it). */
  readonly observation: ObservationService
  /** The events endpoint, as the blocked line names it. */
  readonly url: string
}

/** Records a blocking answer; logs only when the block starts or its status changes. */
const block = (sender: Sender, status: number, reason: string) =>
  Effect.gen(function*() {
    const current = yield* Ref.get(sender.board.deliveryBlocked)
    if (current !== null && current.status === status) {
      if (current.reason !== reason) yield* Ref.set(sender.board.deliveryBlocked, { ...current, reason })
      return
    }
    const blocked = { status, url: sender.url, since: new Date(yield* Clock.currentTimeMillis), reason }
    yield* Ref.set(sender.board.deliveryBlocked, blocked)
    yield* setDeliveryBlocked(status)
    yield* Effect.logError(describeDeliveryBlocked(blocked)).pipe(
      Effect.annotateLogs({
        status,
        url: sender.url,
        reason,
        hint: `${
          blockingHint[status] ?? "the control plane refuses this agent"
        }; events are held, in order, until it clears`
      })
    )
  })

/** An answer that judged the event (not the agent) ends a block, with one line. */
const unblock = (sender: Sender) =>
  Effect.gen(function*() {
    const previous = yield* Ref.getAndSet(sender.board.deliveryBlocked, null)
    if (previous === null) return
    yield* setDeliveryBlocked(null)
    const seconds = Math.round(((yield* Clock.currentTimeMillis) - previous.since.getTime()) / 1000)
    yield* Effect.logInfo(`delivery unblocked: ${sender.url} accepts this agent's events again`).pipe(
      Effect.annotateLogs({ status: previous.status, blockedSecs: seconds })
    )
  })

/**
 * One attempt: POST the row and act on the answer. A dead-lettered row is moved at once; a
 * delivered one is left to the caller's batched acknowledgement.
 */
const attempt = (sender: Sender, row: OutboxRow) =>
  Effect.gen(function*() {
    const answer = yield* sender.client.postEvent({
      hostname: row.hostname,
      rolloutId: row.rolloutId,
      eventJson: row.body
    }).pipe(
      Effect.catchTag("TransportError", (error) => Effect.fail(new Retry({ reason: error.message })))
    )
    const reason = `HTTP ${answer.status}${answer.body === "" ? "" : `: ${answer.body}`}`
    switch (classify(answer.status)) {
      case "delivered":
        yield* unblock(sender)
        yield* Metric.increment(Metric.tagged(deliveries, "result", "delivered"))
        return "delivered" as const
      case "dead-letter":
        yield* unblock(sender)
        yield* sender.outbox.deadLetter(row.id, answer.status, reason)
        yield* Metric.increment(Metric.tagged(deliveries, "result", "dead_lettered"))
        yield* Effect.logError("the control plane refused an event for good; moved to the dead letters").pipe(
          Effect.annotateLogs("reason", reason)
        )
        return "dead-lettered" as const
      case "blocked":
        yield* block(sender, answer.status, answer.body)
        return yield* Effect.fail(new Blocked({ status: answer.status, reason }))
      case "retry":
        return yield* Effect.fail(new Retry({ reason }))
    }
  })

/**
 * Delivers one row, retrying until the control plane settles it. Before each retry wait
 * the rows already delivered are acknowledged, so a long outage does not keep them. While
 * delivery is blocked the tries are logged at debug level: the block has its own line.
 */
const deliver = Effect.fn("OutboundSender.deliver")(
  (sender: Sender, row: OutboxRow, flushAcknowledged: Effect.Effect<void, OutboxError>) =>
    attempt(sender, row).pipe(
      Effect.tapError((error) =>
        Effect.all([
          (error._tag === "Blocked" ? Effect.logDebug : Effect.logWarning)("event delivery failed; will retry").pipe(
            Effect.annotateLogs("reason", error.message)
          ),
          Effect.ignore(sender.outbox.recordFailure(row.id, error.message)),
          Metric.increment(Metric.tagged(deliveries, "result", error._tag === "Blocked" ? "blocked" : "retried")),
          Effect.ignore(flushAcknowledged)
        ], { discard: true })
      ),
      Effect.retry(deliveryRetry)
    ),
  (effect, _sender, row) => annotateSpanAndLogs(effect, { rolloutId: row.rolloutId, seq: row.seq, kind: row.kind })
)

/**
 * Delivers pages until the outbox is empty. Delivered rows are acknowledged per page in one
 * commit (one fsync per page instead of one per event). Once a commit is made, every row
 * up to the last one settled (delivered or dead-lettered) is settled: rows go in id order.
 */
const drain = (sender: Sender) =>
  Effect.gen(function*() {
    const acknowledged: Array<number> = []
    let settled = 0
    // A failed flush puts its ids back, so the next flush tries them again.
    const flush = Effect.suspend(() => {
      const ids = acknowledged.splice(0)
      const through = settled
      return sender.outbox.acknowledgeMany(ids).pipe(
        Effect.tapError(() => Effect.sync(() => acknowledged.unshift(...ids))),
        Effect.zipRight(through === 0 ? Effect.void : sender.observation.settled(through))
      )
    })
    while (true) {
      const rows = yield* sender.outbox.head(PAGE).pipe(Effect.retry(deliveryRetry))
      if (rows.length === 0) return
      for (const row of rows) {
        if ((yield* deliver(sender, row, flush)) === "delivered") acknowledged.push(row.id)
        settled = row.id
      }
      yield* Effect.retry(flush, deliveryRetry)
    }
  })

/**
 * Forks the sender in the runtime's scope.
 *
 * @since 0.1.0
 */
export const layer = Layer.scopedDiscard(
  Effect.gen(function*() {
    const config = yield* AgentConfig
    const sender: Sender = {
      outbox: yield* Outbox,
      client: yield* ControlPlaneClient,
      board: yield* StatusBoard,
      observation: yield* Observation,
      url: `${config.controlPlaneUrl.replace(/\/+$/, "")}/v1/agent/events`
    }
    // Every status starts at 0, so an alert on the gauge has a series to watch.
    yield* setDeliveryBlocked(null)
    // A drain ends at shutdown: a row it has not acknowledged stays and goes again on the next
    // start (the control plane deduplicates).
    const wake = Effect.raceFirst(sender.outbox.awaitEnqueued, Effect.sleep(SAFETY_TICK))
    yield* forkWorker("OutboundSender", untilShutdown(drain(sender), () => Effect.void, { pause: () => wake }))
  })
)
