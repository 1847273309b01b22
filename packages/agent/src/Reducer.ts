/**
 * The reducer fiber: the only caller of `step()`, the only owner of the per-rollout
 * records and of their seq numbers. It consumes one bounded queue and applies each
 * transition's commands in order (the applier runs inside this fiber).
 *
 * @since 0.1.0
 */
import { rolloutChannel } from "@nixfleet/proto"
import {
  type Command,
  type HostRolloutState,
  type LocalEvent,
  newPending,
  rehydrationEffects,
  step
} from "@nixfleet/state-machine"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AgentConfig } from "./AgentConfig.js"
import { failGate, passGate, type SynthesisedEvent } from "./internal/reducer/advanceGates.js"
import { entryOf, type RolloutEntry } from "./internal/reducer/entry.js"
import { nextFailureWindows } from "./internal/reducer/failureWindows.js"
import { withSeq } from "./internal/reducer/seq.js"
import { mergeSnapshot } from "./internal/reducer/snapshotMerge.js"
import { type ManifestSet, resolvePolicy } from "./ManifestSet.js"
import { Outbox } from "./Outbox.js"
import type { ReducerInput } from "./ReducerInput.js"
import { type ActivationIntent, RuntimeChannels } from "./RuntimeChannels.js"
import { drainUntilShutdown } from "./Shutdown.js"

/**
 * Events held while the rollout policy is not cached yet. A dispatch was popped from the
 * control plane's queue when it was delivered, so its `LocalActivate` must wait for the
 * policy rather than be dropped; a few hundred covers any burst before the first
 * manifest poll.
 */
const HELD_CAPACITY = 256

/**
 * Events the reducer refused, by reason (`unknown_rollout`, `IllegalForState`,
 * `SeqRegression`, `Invariant`, `held_overflow`, `foreign_snapshot`).
 *
 * @since 0.1.0
 */
export const droppedEvents = Metric.counter("nixfleet_agent_reducer_dropped_events_total", {
  description: "Events the reducer refused, by reason",
  incremental: true
})

/**
 * Outbound events that could not be stored (the storage kept failing): lost.
 *
 * @since 0.1.0
 */
export const lostEvents = Metric.counter("nixfleet_agent_outbox_lost_events_total", {
  description: "Outbound events lost because the outbox could not store them",
  incremental: true
})

/**
 * @since 0.1.0
 */
export interface ReducerService {
  /** Sends an input to the reducer; suspends while its queue is full. */
  readonly offer: (input: ReducerInput) => Effect.Effect<void>
  /** Sends an input and waits until the reducer has handled it (and applied its commands). */
  readonly submit: (input: ReducerInput) => Effect.Effect<void>
  /** The records as of the last handled input. */
  readonly records: SubscriptionRef.SubscriptionRef<ReadonlyMap<string, HostRolloutState>>
}

/**
 * @since 0.1.0
 */
export class Reducer extends Context.Tag("@nixfleet/agent/Reducer")<Reducer, ReducerService>() {
  static readonly layer = Layer.scoped(
    Reducer,
    Effect.gen(function*() {
      const channels = yield* RuntimeChannels
      const records = yield* SubscriptionRef.make<ReadonlyMap<string, HostRolloutState>>(new Map())
      const loop = yield* makeLoop(records)
      yield* Effect.forkScoped(
        drainUntilShutdown(channels.reducerInput, ({ handled, input }) =>
          Effect.ensuring(
            loop.handle(input),
            handled === null ? Effect.void : Deferred.succeed(handled, undefined)
          ))
      )
      return {
        offer: (input) => Effect.asVoid(Queue.offer(channels.reducerInput, { input, handled: null })),
        submit: (input) =>
          Effect.flatMap(
            Deferred.make<void>(),
            (handled) =>
              Effect.zipRight(Queue.offer(channels.reducerInput, { input, handled }), Deferred.await(handled))
          ),
        records
      }
    })
  )
}

const logLevels = {
  Trace: LogLevel.Trace,
  Debug: LogLevel.Debug,
  Info: LogLevel.Info,
  Warn: LogLevel.Warning,
  Error: LogLevel.Error
} as const

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

const drop = (reason: string, event: string, message: string) =>
  Effect.zipRight(
    Effect.logWarning(`event dropped: ${message}`).pipe(Effect.annotateLogs({ reason, event })),
    Metric.increment(Metric.tagged(droppedEvents, "reason", reason))
  )

/** Storage failures are retried briefly (5 attempts in all): the reducer must move on, and a lost event is logged in full. */
const enqueueRetry = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(3)))

const makeLoop = (records: SubscriptionRef.SubscriptionRef<ReadonlyMap<string, HostRolloutState>>) =>
  Effect.gen(function*() {
    const config = yield* AgentConfig
    const outbox = yield* Outbox
    const channels = yield* RuntimeChannels

    const rollouts = new Map<string, RolloutEntry>()
    let manifests: ManifestSet | null = null
    let held: Array<{ readonly rolloutId: string; readonly event: LocalEvent }> = []
    // Intents beyond the queue's free space wait here, so the reducer never blocks on the
    // activation worker (which blocks on the reducer's own queue).
    const pendingIntents: Array<ActivationIntent> = []

    const flushIntents = Effect.gen(function*() {
      while (pendingIntents.length > 0) {
        // The reducer is the queue's only producer, so a free slot seen here stays free.
        if ((yield* Queue.size(channels.activationIntents)) >= channels.capacities.activationIntents) {
          yield* Effect.logWarning("activation intents waiting behind a running activation").pipe(
            Effect.annotateLogs({ waiting: pendingIntents.length })
          )
          return
        }
        yield* Queue.offer(channels.activationIntents, pendingIntents.shift()!)
      }
    })

    const apply = (command: Command): Effect.Effect<void> => {
      switch (command._tag) {
        case "LocalFireSwitch":
          pendingIntents.push({ rolloutId: command.rolloutId, closure: command.target, rollback: false })
          return flushIntents
        case "LocalFireRollbackTo":
          pendingIntents.push({ rolloutId: command.rolloutId, closure: command.closure, rollback: true })
          return flushIntents
        case "LocalResetProbeCache":
          return Effect.asVoid(Queue.offer(channels.probeResets, { rolloutId: command.rolloutId }))
        case "LocalEmitEvent": {
          const entry = {
            rolloutId: command.rolloutId,
            seq: command.payload.seq,
            hostname: config.machineId,
            durable: command.durable,
            event: command.payload
          }
          return outbox.enqueue(entry).pipe(
            // The retry schedule is only built once a first attempt has failed.
            Effect.catchAll(() => Effect.retry(outbox.enqueue(entry), enqueueRetry)),
            Effect.flatMap((inserted) =>
              inserted ? Effect.void : Effect.logWarning("an event with this seq is already queued; kept the first")
            ),
            Effect.catchAll((error) =>
              Effect.zipRight(
                Effect.logError("event LOST: the outbox could not store it; check the state directory's disk").pipe(
                  Effect.annotateLogs({ error: error.message, payload: JSON.stringify(command.payload) })
                ),
                Metric.increment(lostEvents)
              )
            ),
            Effect.annotateLogs({ kind: command.payload._tag })
          )
        }
        case "RecordTransition":
          return Effect.logInfo(`rollout ${command.from} → ${command.to}`).pipe(
            Effect.annotateLogs({ from: command.from, to: command.to, at: command.at.toISOString() })
          )
        case "EmitMetric":
          return Effect.logDebug(`metric ${command.name} ${command.value}`)
        case "EmitLog":
          return Effect.logWithLevel(logLevels[command.level], command.message).pipe(
            Effect.annotateLogs(Object.fromEntries(command.fields)),
            Effect.annotateLogs("target", command.target)
          )
        default:
          return Effect.logError(`${command._tag} reached the agent's applier: a state-machine defect; dropped`)
      }
    }

    const handleHostEvent = (rolloutId: string, event: LocalEvent): Effect.Effect<void> =>
      Effect.gen(function*() {
        const at = yield* now
        const existing = rollouts.get(rolloutId)
        if (existing === undefined && event._tag !== "LocalActivate") {
          return yield* drop("unknown_rollout", event._tag, "no dispatch seen for this rollout")
        }
        const record = existing?.record ?? newPending({
          rolloutId,
          hostname: config.machineId,
          channel: rolloutChannel(rolloutId),
          targetClosure: event._tag === "LocalActivate" ? event.targetClosure : "",
          dispatchedAt: at,
          soakDueAt: event._tag === "LocalActivate" ? event.soakDueAt : null
        })
        const policy = manifests === null ? undefined : resolvePolicy(manifests, record.channel)
        if (policy === undefined) {
          if (held.length >= HELD_CAPACITY) {
            return yield* drop("held_overflow", event._tag, "too many events waiting for a rollout policy")
          }
          held.push({ rolloutId, event })
          return yield* Effect.logInfo("rollout policy not cached yet; holding the event until it is").pipe(
            Effect.annotateLogs({ channel: record.channel, held: held.length })
          )
        }
        const numbered = withSeq(event, record.lastEventSeq + 1)
        const result = step(record, numbered, at, policy)
        if (result._tag === "Left") {
          return yield* drop(result.left._tag, event._tag, result.left.message).pipe(
            Effect.annotateLogs({ seq: numbered.seq, state: record.state })
          )
        }
        const next = result.right.state
        rollouts.set(rolloutId, {
          record: next,
          failingSince: nextFailureWindows((existing ?? entryOf(record)).failingSince, next, numbered)
        })
        yield* Effect.logDebug(`applied ${event._tag}`).pipe(Effect.annotateLogs({ seq: numbered.seq }))
        for (const command of result.right.effects) yield* apply(command)
      }).pipe(Effect.annotateLogs({ rolloutId, event: event._tag }))

    const handleTick = Effect.gen(function*() {
      const at = yield* now
      const synthesised: Array<SynthesisedEvent> = []
      for (const [rolloutId, entry] of rollouts) {
        const policy = manifests === null ? undefined : resolvePolicy(manifests, entry.record.channel)
        const failed = failGate(rolloutId, entry, at, config.sustainedFailureSecs, policy?.onHealthFailure ?? "halt")
        const converged = failed === undefined ? passGate(rolloutId, entry, at) : undefined
        if (failed !== undefined) synthesised.push(failed)
        if (converged !== undefined) synthesised.push(converged)
      }
      for (const { event, rolloutId } of synthesised) yield* handleHostEvent(rolloutId, event)
    })

    const handleManifests = (set: ManifestSet) =>
      Effect.gen(function*() {
        manifests = set
        const replay = held
        held = []
        yield* Effect.logInfo("manifest cache refreshed").pipe(Effect.annotateLogs({ replayed: replay.length }))
        for (const { event, rolloutId } of replay) yield* handleHostEvent(rolloutId, event)
      })

    const handleSnapshot = (input: Extract<ReducerInput, { readonly _tag: "BootstrapHost" }>) =>
      Effect.gen(function*() {
        const snapshot = input.snapshot
        if (snapshot.hostname !== config.machineId) {
          return yield* drop("foreign_snapshot", "BootstrapHost", `snapshot is for host ${snapshot.hostname}`)
        }
        // If the outbox cannot be read, assume events are queued: never regress on doubt.
        const queued = yield* outbox.pendingCount(snapshot.rolloutId).pipe(
          Effect.map((n) => n > 0),
          Effect.orElseSucceed(() => true)
        )
        const existing = rollouts.get(snapshot.rolloutId)
        const merged = mergeSnapshot(existing, snapshot, queued)
        rollouts.set(snapshot.rolloutId, merged.entry)
        yield* Effect.logInfo("rollout rehydrated from the control plane").pipe(
          Effect.annotateLogs({
            state: merged.entry.record.state,
            snapshotState: snapshot.state,
            warm: existing !== undefined,
            keptLocalState: merged.keptLocalState,
            lastEventSeq: merged.entry.record.lastEventSeq
          })
        )
        if (merged.changed) {
          for (const command of rehydrationEffects(merged.entry.record)) yield* apply(command)
        }
      }).pipe(Effect.annotateLogs({ rolloutId: input.snapshot.rolloutId }))

    const publish = Effect.suspend(() =>
      SubscriptionRef.set(records, new Map([...rollouts].map(([id, entry]) => [id, entry.record])))
    )

    const handle = (input: ReducerInput): Effect.Effect<void> =>
      Effect.gen(function*() {
        switch (input._tag) {
          case "HostEvent":
            yield* handleHostEvent(input.rolloutId, input.event)
            break
          case "AdvanceTick":
            yield* handleTick
            break
          case "ManifestSetUpdated":
            yield* handleManifests(input.set)
            break
          case "BootstrapHost":
            yield* handleSnapshot(input)
            break
          case "Ping":
            return
        }
        yield* flushIntents
        yield* publish
      })

    return { handle }
  })
