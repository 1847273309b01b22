/**
 * The durable outbox: every outbound agent event is stored here, in a committed SQLite
 * transaction, before anything that depends on it is reported done; the outbound sender
 * delivers rows in insertion order, at least once.
 *
 * @since 0.1.0
 */
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import type { FileSystem } from "@effect/platform/FileSystem"
import type { Path } from "@effect/platform/Path"
import type { AgentEvent } from "@nixfleet/proto"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type { AgentConfig } from "../config/AgentConfig.js"
import type { OutboxError } from "./errors.js"
import * as internal from "./layer.js"

/**
 * What the applier hands the outbox: one event of one rollout, with the seq the reducer
 * gave it. `durable: false` marks probe chatter that may be dropped under pressure.
 *
 * @since 0.1.0
 */
export interface OutboxEntry {
  readonly rolloutId: string
  readonly seq: number
  readonly hostname: string
  readonly durable: boolean
  readonly event: AgentEvent
}

/**
 * A stored event waiting for delivery. `body` is the wire JSON of the event (`kind`,
 * camelCase fields), exactly what goes into the envelope's `event`.
 *
 * @since 0.1.0
 */
export interface OutboxRow {
  readonly id: number
  readonly rolloutId: string
  readonly seq: number
  readonly hostname: string
  readonly kind: string
  readonly durable: boolean
  readonly body: string
  readonly createdAt: Date
  readonly attempts: number
  readonly lastError: string | null
}

/**
 * An event the control plane refused for good (a 4xx other than 408 and 429). Kept for
 * operators, never retried, never blocking later rows.
 *
 * @since 0.1.0
 */
export interface DeadLetter {
  readonly rolloutId: string
  readonly seq: number
  readonly hostname: string
  readonly kind: string
  readonly body: string
  readonly createdAt: Date
  readonly deadAt: Date
  readonly status: number | null
  readonly reason: string
}

/**
 * @since 0.1.0
 */
export interface OutboxStats {
  readonly pending: number
  readonly pendingDurable: number
  readonly deadLetters: number
  /** Non-durable rows dropped to respect the cap since this process started. */
  readonly droppedNonDurable: number
}

/**
 * A storage failure (disk full, read-only file system, I/O error).
 *
 * @since 0.1.0
 */
export { OutboxError } from "./errors.js"

/**
 * @since 0.1.0
 */
export interface OutboxService {
  /**
   * Stores an event; returns once the row is committed. `false` when a row with the same
   * `(rolloutId, seq)` already exists (the stored row is kept). Wakes the sender.
   */
  readonly enqueue: (entry: OutboxEntry) => Effect.Effect<boolean, OutboxError>
  /** The oldest pending rows, in insertion order (a page, never the whole table). */
  readonly head: (limit: number) => Effect.Effect<ReadonlyArray<OutboxRow>, OutboxError>
  /** The control plane accepted the row: delete it. Deleting a missing row is fine. */
  readonly acknowledge: (id: number) => Effect.Effect<void, OutboxError>
  /**
   * Deletes several delivered rows in one commit. The sender batches its acknowledgements:
   * a crash before the commit only makes it deliver those rows again, and the control
   * plane deduplicates on (hostname, rolloutId, seq).
   */
  readonly acknowledgeMany: (ids: ReadonlyArray<number>) => Effect.Effect<void, OutboxError>
  /** A delivery attempt failed and will be retried: count it and keep the reason. */
  readonly recordFailure: (id: number, reason: string) => Effect.Effect<void, OutboxError>
  /** The control plane refused the row for good: move it to the dead letters. */
  readonly deadLetter: (id: number, status: number | null, reason: string) => Effect.Effect<void, OutboxError>
  /** Pending rows, of one rollout or of all. */
  readonly pendingCount: (rolloutId?: string) => Effect.Effect<number, OutboxError>
  /**
   * The highest seq stored for a rollout, pending or dead-lettered (0 when none): the
   * reducer numbers new events above it, so an event imported from the reference agent's
   * queue is never shadowed by a new one with the same seq.
   */
  readonly maxSeq: (rolloutId: string) => Effect.Effect<number, OutboxError>
  /**
   * The id of the newest pending row, 0 when none is pending. Ids grow with every row and
   * are never reused: the rows pending now are those whose id is at most this one.
   */
  readonly newestId: Effect.Effect<number, OutboxError>
  /** The most recent dead letters, newest first. */
  readonly deadLetters: (limit: number) => Effect.Effect<ReadonlyArray<DeadLetter>, OutboxError>
  readonly stats: Effect.Effect<OutboxStats, OutboxError>
  /**
   * Completes when something was enqueued since the last call (a wake-up for the sender;
   * a burst of enqueues coalesces into one).
   */
  readonly awaitEnqueued: Effect.Effect<void>
}

/**
 * @since 0.1.0
 */
export class Outbox extends Context.Tag("@nixfleet/agent/Outbox")<Outbox, OutboxService>() {
  /**
   * The outbox in `${stateDir}/outbox.sqlite` (SQLite, WAL, `synchronous = FULL`). On open
   * it moves a corrupt file aside and imports the reference agent's `outbound-queue/`.
   */
  static readonly layer: Layer.Layer<Outbox, OutboxError, AgentConfig | FileSystem | Path | CommandExecutor> = internal
    .layer(Outbox)
}

/**
 * The outbox in the state directory: `Outbox.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = Outbox.layer
