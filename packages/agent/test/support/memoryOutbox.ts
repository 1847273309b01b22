/**
 * An in-memory `Outbox` for tests of the reducer and the sender, with the same contract as
 * the SQLite one (insertion order, unique (rolloutId, seq), dead letters, the highest seq
 * of a rollout, wake-ups).
 */
import { AgentEvent } from "@nixfleet/proto"
import { Context, Effect, Layer, Queue, Ref, Schema } from "effect"
import { type DeadLetter, Outbox, OutboxError, type OutboxRow } from "../../src/outbox/Outbox.js"

export interface MemoryOutbox {
  readonly rows: Ref.Ref<ReadonlyArray<OutboxRow>>
  readonly dead: Ref.Ref<ReadonlyArray<DeadLetter>>
  /** When set, `enqueue` fails with this message (a broken disk). */
  readonly failEnqueue: Ref.Ref<string | null>
}

export class MemoryOutboxHandle extends Effect.Tag("test/MemoryOutboxHandle")<MemoryOutboxHandle, MemoryOutbox>() {}

export const memoryOutboxLayer = Layer.effectContext(
  Effect.gen(function*() {
    const rows = yield* Ref.make<ReadonlyArray<OutboxRow>>([])
    const dead = yield* Ref.make<ReadonlyArray<DeadLetter>>([])
    const failEnqueue = yield* Ref.make<string | null>(null)
    const wake = yield* Queue.sliding<void>(1)
    let nextId = 1
    const encode = Schema.encodeSync(AgentEvent)
    const service = Outbox.of({
      enqueue: (entry) =>
        Effect.gen(function*() {
          const failure = yield* Ref.get(failEnqueue)
          if (failure !== null) return yield* Effect.fail(new OutboxError({ operation: "enqueue", message: failure }))
          const current = yield* Ref.get(rows)
          if (current.some((row) => row.rolloutId === entry.rolloutId && row.seq === entry.seq)) return false
          yield* Ref.set(rows, [...current, {
            id: nextId++,
            rolloutId: entry.rolloutId,
            seq: entry.seq,
            hostname: entry.hostname,
            kind: entry.event._tag,
            durable: entry.durable,
            body: JSON.stringify(encode(entry.event)),
            createdAt: new Date(0),
            attempts: 0,
            lastError: null
          }])
          yield* Queue.offer(wake, undefined)
          return true
        }),
      head: (limit) => Effect.map(Ref.get(rows), (all) => all.slice(0, limit)),
      acknowledge: (id) => Ref.update(rows, (all) => all.filter((row) => row.id !== id)),
      acknowledgeMany: (ids) => Ref.update(rows, (all) => all.filter((row) => !ids.includes(row.id))),
      recordFailure: (id, reason) =>
        Ref.update(
          rows,
          (all) => all.map((row) => row.id === id ? { ...row, attempts: row.attempts + 1, lastError: reason } : row)
        ),
      deadLetter: (id, status, reason) =>
        Effect.gen(function*() {
          const row = (yield* Ref.get(rows)).find((r) => r.id === id)
          if (row === undefined) return
          yield* Ref.update(rows, (all) => all.filter((r) => r.id !== id))
          yield* Ref.update(dead, (all) => [{ ...row, deadAt: new Date(0), status, reason }, ...all])
        }),
      pendingCount: (rolloutId) =>
        Effect.map(
          Ref.get(rows),
          (all) => all.filter((row) => rolloutId === undefined || row.rolloutId === rolloutId).length
        ),
      maxSeq: (rolloutId) =>
        Effect.map(
          Effect.all([Ref.get(rows), Ref.get(dead)]),
          ([all, d]) =>
            [...all, ...d].filter((row) => row.rolloutId === rolloutId).reduce((max, row) => Math.max(max, row.seq), 0)
        ),
      newestId: Effect.map(Ref.get(rows), (all) => all.at(-1)?.id ?? 0),
      deadLetters: (limit) => Effect.map(Ref.get(dead), (all) => all.slice(0, limit)),
      stats: Effect.map(Effect.all([Ref.get(rows), Ref.get(dead)]), ([all, d]) => ({
        pending: all.length,
        pendingDurable: all.filter((row) => row.durable).length,
        deadLetters: d.length,
        droppedNonDurable: 0
      })),
      awaitEnqueued: Queue.take(wake)
    })
    return Context.make(Outbox, service).pipe(Context.add(MemoryOutboxHandle, { rows, dead, failEnqueue }))
  })
)
