/**
 * What an embedding program observes of the runtime: the events the reducer stored in the
 * outbox, the state machine's transitions, and how far the sender has delivered the outbox.
 *
 * Observing never slows the agent: each feed is a sliding `PubSub`, so a subscriber that
 * falls more than its capacity behind loses its oldest items (and only its own), while the
 * reducer's publish never waits. What a subscriber loses is still in the outbox: the feed is
 * a view of durable data, never its only copy.
 *
 * @internal
 */
import type { AgentEvent, AgentEventKind } from "@nixfleet/proto"
import type { HostState, LocalEvent } from "@nixfleet/state-machine"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { Outbox } from "../outbox/Outbox.js"

/**
 * An event the reducer stored in the outbox (published once its row is committed): its
 * rollout, its seq, its kind (`DispatchAck`, …, `Converged`) and the event itself, the
 * value whose wire JSON goes to the control plane.
 *
 * @internal
 */
export interface RecordedEvent {
  readonly rolloutId: string
  readonly seq: number
  readonly kind: AgentEventKind
  readonly body: AgentEvent
}

/**
 * A change of a rollout's state by the state machine: from, the event that caused it, to,
 * and the event's own timestamp. Published once the step's commands are applied (its
 * event stored, or held while the disk refuses writes). A record rehydrated from the
 * control plane's snapshot is not a transition.
 *
 * @internal
 */
export interface Transition {
  readonly rolloutId: string
  readonly from: HostState
  readonly event: LocalEvent["_tag"]
  readonly to: HostState
  readonly at: Date
}

/**
 * Items a subscriber may fall behind by before it loses the oldest: a rollout is about 32
 * events and a handful of transitions, a probe result comes every interval per probe, so
 * this covers minutes of a busy host for a subscriber that reads in bursts, for a few
 * hundred kilobytes at most (nothing is kept while no one subscribes).
 *
 * @internal
 */
export const DEFAULT_OBSERVED_CAPACITY = 1024

/**
 * @internal
 */
export interface ObservationService {
  /** Publishes an event whose row is committed. Never waits. */
  readonly recorded: (event: RecordedEvent) => Effect.Effect<void>
  /** Publishes a transition. Never waits. */
  readonly transitioned: (transition: Transition) => Effect.Effect<void>
  /**
   * The sender settled (acknowledged in the outbox, or dead-lettered) every row up to this
   * id. Ids only grow: a lower one is ignored.
   */
  readonly settled: (throughId: number) => Effect.Effect<void>
  /** Events recorded from the moment the stream runs; it ends when the runtime stops. */
  readonly events: Stream.Stream<RecordedEvent>
  /** Transitions from the moment the stream runs; it ends when the runtime stops. */
  readonly transitions: Stream.Stream<Transition>
  /** The highest settled id (0 until the sender settles a row), then each new one. */
  readonly settledThrough: Stream.Stream<number>
}

/**
 * Outside a runtime (a reducer or sender built on its own, in a test) nobody observes:
 * publishing does nothing and the feeds are empty.
 */
const unobserved: ObservationService = {
  recorded: () => Effect.void,
  transitioned: () => Effect.void,
  settled: () => Effect.void,
  events: Stream.empty,
  transitions: Stream.empty,
  // Never a claim of delivery it cannot see.
  settledThrough: Stream.concat(Stream.make(0), Stream.never)
}

/**
 * @internal
 */
export class Observation extends Context.Reference<Observation>()("@nixfleet/agent/Observation", {
  defaultValue: () => unobserved
}) {
  /** One agent's feeds, closed (their streams ended) with the layer's scope. */
  static readonly layer = (capacity: number = DEFAULT_OBSERVED_CAPACITY): Layer.Layer<Observation> =>
    Layer.scoped(
      Observation,
      Effect.gen(function*() {
        const events = yield* Effect.acquireRelease(PubSub.sliding<RecordedEvent>(capacity), PubSub.shutdown)
        const transitions = yield* Effect.acquireRelease(PubSub.sliding<Transition>(capacity), PubSub.shutdown)
        const settledThrough = yield* SubscriptionRef.make(0)
        return {
          recorded: (event) => Effect.asVoid(PubSub.publish(events, event)),
          transitioned: (transition) => Effect.asVoid(PubSub.publish(transitions, transition)),
          settled: (throughId) => SubscriptionRef.update(settledThrough, (previous) => Math.max(previous, throughId)),
          events: Stream.fromPubSub(events),
          transitions: Stream.fromPubSub(transitions),
          settledThrough: settledThrough.changes
        }
      })
    )
}

/** A read of the outbox that failed is tried again, for as long as the caller waits. */
const readRetry = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))

/**
 * Completes once every event stored in the outbox before the call is settled: acknowledged
 * by the control plane (a 2xx) or refused by it for good (dead-lettered), that is once no
 * row pending at the call is pending any more (probe chatter the outbox's cap dropped
 * counts as gone). Rows stored after the call are not waited for. It waits as long as
 * delivery takes (a control plane down, a blocked agent): bound it with `Effect.timeout`.
 *
 * It only watches the sender's progress (no polling, nothing taken from the sender's
 * wake-ups): the sender delivers rows in id order and reports the last id it settled.
 *
 * @internal
 */
export const awaitDelivered: Effect.Effect<void, never, Outbox | Observation> = Effect.gen(function*() {
  const outbox = yield* Outbox
  const observation = yield* Observation
  const mark = yield* outbox.newestId.pipe(
    Effect.tapError((error) =>
      Effect.logWarning("awaitDelivered: cannot read the outbox; trying again").pipe(
        Effect.annotateLogs({ error: error.message })
      )
    ),
    Effect.retry(readRetry),
    Effect.orDie
  )
  if (mark === 0) return
  yield* observation.settledThrough.pipe(
    Stream.takeUntil((through) => through >= mark),
    Stream.runDrain
  )
}).pipe(Effect.withSpan("AgentRuntime.awaitDelivered"))
