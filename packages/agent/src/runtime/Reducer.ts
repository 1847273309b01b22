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
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AgentConfig } from "../config/AgentConfig.js"
import { Outbox, type OutboxEntry } from "../outbox/Outbox.js"
import { describeError, errnoOf } from "../support/describeError.js"
import { HostLedger, type SwitchRecord } from "./HostLedger.js"
import { type ManifestSet, resolvePolicy } from "./ManifestSet.js"
import { Observation } from "./Observation.js"
import { failGate, passGate, type SynthesisedEvent } from "./reducer/advanceGates.js"
import { entryOf, type RolloutEntry } from "./reducer/entry.js"
import { nextFailureWindows } from "./reducer/failureWindows.js"
import { withSeq } from "./reducer/seq.js"
import { snapshotRefusal } from "./reducer/snapshotCheck.js"
import { mergeSnapshot } from "./reducer/snapshotMerge.js"
import { wedgeOnPingForTests } from "./reducer/testWedge.js"
import type { ReducerInput } from "./ReducerInput.js"
import { type ActivationIntent, RuntimeChannels } from "./RuntimeChannels.js"
import { drainUntilShutdown } from "./Shutdown.js"
import { forkWorker } from "./Workers.js"

/**
 * Events held while the rollout policy is not cached yet. A dispatch was popped from the
 * control plane's queue when it was delivered, so its `LocalActivate` must wait for the
 * policy rather than be dropped; a few hundred covers any burst before the first
 * manifest poll.
 */
const HELD_CAPACITY = 256

/**
 * Writes the state directory refused, kept in memory in order until they are durable. Past
 * it probe chatter is dropped (oldest first); durable events and activations are always
 * kept: the reducer makes a handful per rollout and keeps at most 64 rollouts.
 */
const DISK_BACKLOG_CAPACITY = 1024
/** The first retry of a refused write, doubled after each failure up to the cap. */
const DISK_RETRY_FIRST_MS = 1_000
const DISK_RETRY_MAX_MS = 10_000

/**
 * Rollouts the reducer keeps. A host runs one rollout per channel at a time; the bound
 * only matters against a control plane that invents records in its snapshots, which are
 * refused beyond it (a signed dispatch is always taken).
 */
const MAX_ROLLOUTS = 64
/** Finished (Converged, Reverted) rollouts kept for `status`; older ones are evicted. */
const MAX_FINISHED_KEPT = 16
/** Ids of evicted rollouts remembered, so that neither a dispatch nor a snapshot revives one. */
const MAX_FINISHED_IDS = 1024

/**
 * How far the control plane's soak deadline may stray from the signed soak time counted
 * from the dispatch's arrival: it counts from when it opened the host's record and the
 * signed policy has whole minutes.
 */
const SOAK_TOLERANCE_MS = 60_000
/** The control plane's own default soak when a host's wave has no soak time. */
const DEFAULT_SOAK_MINUTES = 60

/**
 * Events the reducer refused, by reason (`unknown_rollout`, `IllegalForState`,
 * `SeqRegression`, `Invariant`, `held_overflow`, `foreign_snapshot`, `snapshot_refused`,
 * `finished`, `seq_taken`).
 *
 * @since 0.1.0
 */
export const droppedEvents = Metric.counter("nixfleet_agent_reducer_dropped_events_total", {
  description: "Events the reducer refused, by reason",
  incremental: true
})

/**
 * Outbound events that were never stored: held in memory while the disk refused them when
 * the agent stopped.
 *
 * @since 0.1.0
 */
export const lostEvents = Metric.counter("nixfleet_agent_outbox_lost_events_total", {
  description: "Outbound events lost because the outbox could not store them before the agent stopped",
  incremental: true
})

/**
 * Writes (events, switch records, and the activations behind them) held in memory because
 * the state directory refused them; retried until it accepts them.
 *
 * @since 0.1.0
 */
export const waitingForDisk = Metric.gauge("nixfleet_agent_outbox_waiting_for_disk", {
  description: "Events and switch records waiting for the state directory to accept writes"
})

/**
 * What is held because the state directory refuses writes.
 *
 * @since 0.1.0
 */
export interface DiskBacklog {
  /** Events waiting to be stored in the outbox. */
  readonly events: number
  /** Switches and rollbacks held until the writes before them are stored. */
  readonly activations: number
  /** Since when, and why (the path and the system's error). */
  readonly since: Date | null
  readonly error: string | null
}

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
  /** What waits for the disk (all zero and null while it accepts writes). */
  readonly diskBacklog: Ref.Ref<DiskBacklog>
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
      const diskBacklog = yield* Ref.make<DiskBacklog>(noBacklog)
      const loop = yield* makeLoop(records, diskBacklog)
      // Runs after the reducer fiber stops (finalizers run in reverse): what is still held
      // was never stored and goes with the process; boot recovery and the control plane's
      // snapshot converge the record after a restart.
      yield* Effect.addFinalizer(() =>
        Effect.flatMap(Ref.get(diskBacklog), (held) =>
          held.events === 0 ? Effect.void : Effect.zipRight(
            Effect.logError(
              `stopping with ${held.events} events held in memory for the disk: they are lost with this process`
            ).pipe(Effect.annotateLogs({ since: held.since?.toISOString() ?? "", error: held.error ?? "" })),
            Metric.incrementBy(lostEvents, held.events)
          ))
      )
      yield* forkWorker(
        "Reducer",
        drainUntilShutdown(
          channels.reducerInput,
          ({ handled, input }) =>
            handled === null
              ? loop.handle(input)
              : Effect.ensuring(loop.handle(input), Deferred.succeed(handled, undefined))
        )
      )
      return {
        offer: (input) => Effect.asVoid(Queue.offer(channels.reducerInput, { input, handled: null })),
        submit: (input) =>
          Effect.flatMap(
            Deferred.make<void>(),
            (handled) =>
              Effect.zipRight(Queue.offer(channels.reducerInput, { input, handled }), Deferred.await(handled))
          ),
        records,
        diskBacklog
      }
    })
  )
}

const noBacklog: DiskBacklog = { events: 0, activations: 0, since: null, error: null }

/** A write the state directory refused, or an activation waiting behind one. */
type HeldWrite =
  | { readonly _tag: "Event"; readonly entry: OutboxEntry }
  | { readonly _tag: "Switch"; readonly record: SwitchRecord; readonly intent: ActivationIntent }
  | { readonly _tag: "Rollback"; readonly intent: ActivationIntent }

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

/** Reads of the outbox are retried briefly (4 attempts in all): the reducer must move on. */
const readRetry = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(3)))

const isFinished = (record: HostRolloutState) => record.state === "Converged" || record.state === "Reverted"

/**
 * The soak deadline of an accepted dispatch, bounded by the signed policy: this host's
 * wave's soak time counted from now, give or take the tolerance. The dispatch's deadline
 * is unsigned: unbounded, a control plane could skip the soak (and with it the health
 * checks that roll a bad closure back) or stretch it for ever.
 */
const boundedSoakDueAt = (
  requested: Date | null,
  soakMinutes: number,
  at: Date
): { readonly soakDueAt: Date; readonly adjusted: boolean } => {
  const signed = at.getTime() + soakMinutes * 60_000
  const lower = Math.max(at.getTime(), signed - SOAK_TOLERANCE_MS)
  const upper = signed + SOAK_TOLERANCE_MS
  const wanted = requested?.getTime() ?? signed
  const bounded = Math.min(upper, Math.max(lower, wanted))
  return { soakDueAt: new Date(bounded), adjusted: bounded !== wanted }
}

/** The soak time of a wave: the fleet's waves for the channel, else the policy's. */
const waveSoakMinutes = (set: ManifestSet, channel: string, waveIndex: number): number => {
  const waves = Object.hasOwn(set.fleet.waves, channel) ? set.fleet.waves[channel] : undefined
  const policy = resolvePolicy(set, channel)
  return waves?.[waveIndex]?.soakMinutes ?? policy?.waves[waveIndex]?.soakMinutes ?? DEFAULT_SOAK_MINUTES
}

const makeLoop = (
  records: SubscriptionRef.SubscriptionRef<ReadonlyMap<string, HostRolloutState>>,
  backlogRef: Ref.Ref<DiskBacklog>
) =>
  Effect.gen(function*() {
    const config = yield* AgentConfig
    const outbox = yield* Outbox
    const ledger = yield* HostLedger
    const channels = yield* RuntimeChannels
    const observation = yield* Observation

    const rollouts = new Map<string, RolloutEntry>()
    // Evicted finished rollouts, oldest first (a set keeps insertion order).
    const finished = new Set<string>()
    let manifests: ManifestSet | null = null
    let held: Array<
      { readonly rolloutId: string; readonly event: LocalEvent; readonly waveIndex: number | undefined }
    > = []
    // Intents beyond the queue's free space wait here, so the reducer never blocks on the
    // activation worker (which blocks on the reducer's own queue).
    const pendingIntents: Array<ActivationIntent> = []
    // Rollouts whose switch or rollback this process released (or resumed): a record the
    // ledger says was released, and which is not here, was released by a run that died.
    const releasedHere = new Set<string>()
    const noteReleased = (rolloutId: string) => {
      releasedHere.delete(rolloutId)
      releasedHere.add(rolloutId)
      for (const oldest of releasedHere) {
        if (releasedHere.size <= MAX_FINISHED_IDS) break
        releasedHere.delete(oldest)
      }
    }

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

    // Writes the state directory refused, in order, with the activations behind them: an
    // activation is released only once everything before it is stored, so a switch never
    // runs without its DispatchAck in the outbox and its rollback target in the ledger.
    // Retried from the reducer's own inputs (the advance tick comes every 5 s), never by
    // blocking it.
    const diskHeld: Array<HeldWrite> = []
    let retryAt = 0
    let retryDelay = DISK_RETRY_FIRST_MS
    let heldSince: Date | null = null
    let heldError: string | null = null

    const publishBacklog = Effect.suspend(() => {
      const events = diskHeld.filter((write) => write._tag === "Event").length
      const activations = diskHeld.length - events
      return Effect.zipRight(
        Ref.set(
          backlogRef,
          diskHeld.length === 0 ? noBacklog : { events, activations, since: heldSince, error: heldError }
        ),
        Metric.set(waitingForDisk, diskHeld.length)
      )
    })

    interface WriteRefused {
      readonly detail: string
      readonly errno: string | null
    }

    const refused = (error: unknown): WriteRefused => ({ detail: describeError(error), errno: errnoOf(error) })

    /** Said only once the row is committed: an observer never sees an event that could be lost. */
    const recorded = (entry: OutboxEntry) =>
      observation.recorded({ rolloutId: entry.rolloutId, seq: entry.seq, kind: entry.event._tag, body: entry.event })

    /** One attempt at a held write; an activation is released to the worker's queue. */
    const attempt = (write: HeldWrite, first: boolean): Effect.Effect<void, WriteRefused> => {
      switch (write._tag) {
        case "Event":
          // Annotated only where a line is written (the outbox annotates its own): around
          // every enqueue the annotations cost more than the reducer's step.
          return outbox.enqueue(write.entry).pipe(
            Effect.mapError(refused),
            Effect.flatMap((inserted) =>
              inserted ? recorded(write.entry) : (first
                ? Effect.zipRight(
                  // Impossible while every record numbers above the outbox's highest seq (seqFloor).
                  Effect.logError("event NOT stored: its seq is already taken in the outbox (a seq numbering defect)")
                    .pipe(Effect.annotateLogs({ seq: write.entry.seq, payload: JSON.stringify(write.entry.event) })),
                  Metric.increment(Metric.tagged(droppedEvents, "reason", "seq_taken"))
                )
                // A retry of a write whose commit reached the disk though it was reported failed:
                // stored, and not yet said.
                : Effect.zipRight(
                  Effect.logDebug("held event already in the outbox: kept the stored row"),
                  recorded(write.entry)
                ))
                .pipe(Effect.annotateLogs({ rolloutId: write.entry.rolloutId, kind: write.entry.event._tag }))
            )
          )
        case "Switch":
          return ledger.recordSwitch(write.record).pipe(
            Effect.mapError(refused),
            Effect.zipRight(Effect.sync(() => pendingIntents.push(write.intent)))
          )
        case "Rollback":
          // Recorded before it runs, so that a rollback cut short by a crash is finished after a restart.
          return Effect.flatMap(now, (releasedAt) =>
            ledger.recordRollback({
              rolloutId: write.intent.rolloutId,
              closure: write.intent.closure,
              releasedAt,
              failedAt: null
            })).pipe(
              Effect.mapError(refused),
              Effect.zipRight(Effect.sync(() => pendingIntents.push(write.intent)))
            )
      }
    }

    const describeHeld = (write: HeldWrite) =>
      write._tag === "Event"
        ? `${write.entry.event._tag} (seq ${write.entry.seq})`
        : write._tag === "Switch"
        ? `the switch to ${write.intent.closure}`
        : `the rollback to ${write.intent.closure}`

    const hold = (write: HeldWrite) =>
      Effect.gen(function*() {
        if (diskHeld.length >= DISK_BACKLOG_CAPACITY) {
          // Probe chatter goes first, as the outbox's own cap drops it.
          const chatter = diskHeld.findIndex((held) => held._tag === "Event" && !held.entry.durable)
          if (chatter >= 0) {
            diskHeld.splice(chatter, 1)
            yield* Metric.increment(Metric.tagged(droppedEvents, "reason", "disk_backlog_full"))
          } else if (write._tag === "Event" && !write.entry.durable) {
            return yield* Metric.increment(Metric.tagged(droppedEvents, "reason", "disk_backlog_full"))
          }
        }
        diskHeld.push(write)
        if (write._tag !== "Event") {
          yield* Effect.logError(
            `not activating yet: ${describeHeld(write)} waits until the writes before it are stored in ` +
              `${config.stateDir} (${heldError ?? "the disk refuses writes"}); it runs once they are`
          ).pipe(Effect.annotateLogs({ rolloutId: write.intent.rolloutId, waiting: diskHeld.length }))
        }
      })

    /** Stores a write now, or holds it (behind any already held) until the disk accepts it. */
    const store = (write: HeldWrite): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (diskHeld.length > 0) {
          yield* hold(write)
          return yield* publishBacklog
        }
        const result = yield* Effect.either(attempt(write, true))
        if (result._tag === "Right") return
        const at = yield* now
        heldSince = at
        heldError = `${result.left.errno ?? "error"}: ${result.left.detail}`
        retryDelay = DISK_RETRY_FIRST_MS
        retryAt = at.getTime() + retryDelay
        yield* Effect.logError(
          `the state directory ${config.stateDir} refuses writes (${result.left.errno ?? "unknown errno"}): ` +
            `${describeHeld(write)} is held in memory and retried until it is stored; ` +
            "nothing is switched until then"
        ).pipe(
          Effect.annotateLogs({ error: result.left.detail }),
          Effect.annotateLogs(write._tag === "Event" ? { kind: write.entry.event._tag } : {})
        )
        yield* hold(write)
        yield* publishBacklog
      })

    /** Retries the held writes in order once their backoff is over; stops at the first refused. */
    const retryHeld = Effect.gen(function*() {
      if (diskHeld.length === 0) return
      const at = yield* Clock.currentTimeMillis
      if (at < retryAt) return
      const stored = diskHeld.length
      while (diskHeld.length > 0) {
        const result = yield* Effect.either(attempt(diskHeld[0]!, false))
        if (result._tag === "Left") {
          retryDelay = Math.min(retryDelay * 2, DISK_RETRY_MAX_MS)
          retryAt = at + retryDelay
          heldError = `${result.left.errno ?? "error"}: ${result.left.detail}`
          yield* Effect.logWarning(
            `the state directory ${config.stateDir} still refuses writes (${result.left.errno ?? "unknown errno"}); ` +
              `${diskHeld.length} writes held, retrying in ${retryDelay / 1000} s`
          ).pipe(Effect.annotateLogs({ error: result.left.detail }))
          return yield* publishBacklog
        }
        diskHeld.shift()
      }
      yield* Effect.logInfo(`the state directory ${config.stateDir} accepts writes again: stored what was held`).pipe(
        Effect.annotateLogs({ stored, heldSince: heldSince?.toISOString() ?? "" })
      )
      retryDelay = DISK_RETRY_FIRST_MS
      heldSince = null
      heldError = null
      yield* publishBacklog
    })

    /**
     * A switch goes only to the closure the signed manifest named for this rollout, and
     * only once the ledger holds it with the closure to come back to (the rollback target
     * this agent read itself), so that neither a snapshot nor a crash can make a rollback
     * go elsewhere.
     */
    const fireSwitch = (rolloutId: string, target: string) =>
      Effect.gen(function*() {
        const entry = rollouts.get(rolloutId)
        if (entry === undefined || entry.verifiedTarget !== target) {
          return yield* Effect.logError(
            `refusing to switch to ${target}: not the closure the signed manifest names for this rollout`
          ).pipe(Effect.annotateLogs({ rolloutId, verifiedTarget: entry?.verifiedTarget ?? "none" }))
        }
        const previous = entry.record.currentClosureAtDispatch
        noteReleased(rolloutId)
        yield* store({
          _tag: "Switch",
          record: {
            rolloutId,
            target,
            previous: previous === "" ? null : previous,
            soakDueAt: entry.record.soakDueAt,
            recordedAt: yield* now
          },
          intent: { rolloutId, closure: target, rollback: false }
        })
        yield* flushIntents
      })

    const apply = (command: Command): Effect.Effect<void> => {
      switch (command._tag) {
        case "LocalFireSwitch":
          return fireSwitch(command.rolloutId, command.target)
        case "LocalFireRollbackTo":
          // Behind the Failed decision's event: the rollback runs once that is recorded.
          return Effect.sync(() => noteReleased(command.rolloutId)).pipe(
            Effect.zipRight(store({
              _tag: "Rollback",
              intent: { rolloutId: command.rolloutId, closure: command.closure, rollback: true }
            })),
            Effect.zipRight(flushIntents)
          )
        case "LocalResetProbeCache":
          return Effect.asVoid(Queue.offer(channels.probeResets, { rolloutId: command.rolloutId }))
        case "LocalEmitEvent":
          return store({
            _tag: "Event",
            entry: {
              rolloutId: command.rolloutId,
              seq: command.payload.seq,
              hostname: config.machineId,
              durable: command.durable,
              event: command.payload
            }
          })
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

    /**
     * The seq a created or rehydrated record continues from: above every seq the outbox
     * holds for the rollout, so that events queued before this record existed (imported
     * from the reference agent's queue, or left by a previous run) keep their seqs and new
     * ones never collide with them.
     */
    const heldMaxSeq = (rolloutId: string) =>
      diskHeld.reduce(
        (max, write) =>
          write._tag === "Event" && write.entry.rolloutId === rolloutId ? Math.max(max, write.entry.seq) : max,
        0
      )

    const seqFloor = (rolloutId: string, local: number): Effect.Effect<number> =>
      outbox.maxSeq(rolloutId).pipe(
        Effect.catchAll(() => Effect.retry(outbox.maxSeq(rolloutId), readRetry)),
        // Events held for the disk are numbered too: above them as well.
        Effect.map((stored) => Math.max(local, stored, heldMaxSeq(rolloutId))),
        Effect.tap((floor) =>
          floor > local
            ? Effect.logInfo("numbering this rollout's events above those already in the outbox").pipe(
              Effect.annotateLogs({ lastEventSeq: floor, counted: local })
            )
            : Effect.void
        ),
        Effect.catchAll((error) =>
          Effect.as(
            Effect.logError("cannot read the outbox's highest seq for this rollout; numbering from the record's").pipe(
              Effect.annotateLogs({ error: error.message, lastEventSeq: local })
            ),
            local
          )
        )
      )

    const handleHostEvent = (rolloutId: string, event: LocalEvent, waveIndex?: number): Effect.Effect<void> =>
      Effect.gen(function*() {
        const at = yield* now
        const existing = rollouts.get(rolloutId)
        const activate = event._tag === "LocalActivate" ? event : null
        if (existing === undefined && activate === null) {
          return yield* drop("unknown_rollout", event._tag, "no dispatch seen for this rollout")
        }
        if (activate !== null && finished.has(rolloutId)) {
          return yield* drop("finished", event._tag, "this rollout already finished here")
        }
        const channel = existing?.record.channel ?? rolloutChannel(rolloutId)
        const policy = manifests === null ? undefined : resolvePolicy(manifests, channel)
        if (policy === undefined) {
          if (held.length >= HELD_CAPACITY) {
            return yield* drop("held_overflow", event._tag, "too many events waiting for a rollout policy")
          }
          held.push({ rolloutId, event, waveIndex })
          return yield* Effect.logInfo("rollout policy not cached yet; holding the event until it is").pipe(
            Effect.annotateLogs({ channel, held: held.length })
          )
        }
        // A dispatch starts from its own signed data: a Pending record that only the control
        // plane's snapshot gave us (its target unsigned) is replaced, keeping its seq.
        const fresh = activate !== null && (existing === undefined || existing.record.state === "Pending")
        let record = existing?.record ?? null
        if (activate !== null && fresh) {
          const soak = waveIndex === undefined || manifests === null
            ? { soakDueAt: activate.soakDueAt, adjusted: false }
            : boundedSoakDueAt(activate.soakDueAt, waveSoakMinutes(manifests, channel, waveIndex), at)
          if (soak.adjusted) {
            yield* Effect.logWarning("the dispatch's soak deadline is outside the signed policy's; bounded").pipe(
              Effect.annotateLogs({
                requested: activate.soakDueAt?.toISOString() ?? "none",
                soakDueAt: soak.soakDueAt?.toISOString() ?? "none"
              })
            )
          }
          record = {
            ...newPending({
              rolloutId,
              hostname: config.machineId,
              channel,
              targetClosure: activate.targetClosure,
              dispatchedAt: at,
              soakDueAt: soak.soakDueAt
            }),
            lastEventSeq: yield* seqFloor(rolloutId, existing?.record.lastEventSeq ?? 0)
          }
        }
        if (record === null) return
        const numbered = withSeq(
          activate !== null && fresh ? { ...activate, soakDueAt: record.soakDueAt ?? activate.soakDueAt } : event,
          record.lastEventSeq + 1
        )
        const result = step(record, numbered, at, policy)
        if (result._tag === "Left") {
          return yield* drop(result.left._tag, event._tag, result.left.message).pipe(
            Effect.annotateLogs({ seq: numbered.seq, state: record.state })
          )
        }
        const next = result.right.state
        const base = existing === undefined || fresh ? entryOf(record) : existing
        rollouts.set(rolloutId, {
          record: next,
          failingSince: nextFailureWindows(base.failingSince, next, numbered),
          verifiedTarget: activate !== null && fresh ? activate.targetClosure : base.verifiedTarget
        })
        // Checked first: the annotation alone costs more than the rest of a probe event's step.
        yield* Effect.whenLogLevel(
          Effect.logDebug(`applied ${event._tag}`).pipe(Effect.annotateLogs({ seq: numbered.seq })),
          LogLevel.Debug
        )
        for (const command of result.right.effects) yield* apply(command)
        // After the commands: the step's event is stored (or held for the disk) by now.
        for (const command of result.right.effects) {
          if (command._tag === "RecordTransition") {
            yield* observation.transitioned({
              rolloutId,
              from: command.from,
              event: event._tag,
              to: command.to,
              at: command.at
            })
          }
        }
      }).pipe(Effect.annotateLogs({ rolloutId, event: event._tag }))

    /** Finished rollouts beyond those kept for `status` leave the map; their ids are remembered. */
    const evictFinished = Effect.suspend(() => {
      const done = [...rollouts].filter(([, entry]) => isFinished(entry.record))
      if (done.length <= MAX_FINISHED_KEPT) return Effect.void
      const finishedAt = (record: HostRolloutState) =>
        (record.convergedAt ?? record.revertedAt ?? record.dispatchedAt).getTime()
      done.sort(([, a], [, b]) => finishedAt(a.record) - finishedAt(b.record))
      for (const [rolloutId] of done.slice(0, done.length - MAX_FINISHED_KEPT)) {
        rollouts.delete(rolloutId)
        finished.add(rolloutId)
      }
      for (const rolloutId of finished) {
        if (finished.size <= MAX_FINISHED_IDS) break
        finished.delete(rolloutId)
      }
      return Effect.void
    })

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
        for (const { event, rolloutId, waveIndex } of replay) yield* handleHostEvent(rolloutId, event, waveIndex)
      })

    /**
     * A switch or rollback that the ledger says a previous run released, and whose outcome
     * was never recorded (the run died), goes to the worker again as a resume: it reads the
     * host and finishes the work without repeating what happened. Only once the control
     * plane has every event of the rollout (its record, and whether the activation was
     * reported started, are then what happened), and never for what this process released.
     */
    const resumeInterrupted = (rolloutId: string, entry: RolloutEntry, eventsQueued: boolean) =>
      Effect.gen(function*() {
        if (releasedHere.has(rolloutId)) return
        const own = yield* ledger.switchOf(rolloutId)
        const rollback = entry.record.state === "Failed" ? yield* ledger.rollbackOf(rolloutId) : undefined
        const intent: ActivationIntent | null = entry.record.state === "Activating" && own !== undefined &&
            own.target === entry.record.targetClosure && own.target === entry.verifiedTarget
          ? { rolloutId, closure: own.target, rollback: false, resume: true }
          : rollback !== undefined && rollback.failedAt === null
          ? { rolloutId, closure: rollback.closure, rollback: true, resume: true }
          : null
        if (intent === null) return
        if (eventsQueued) {
          return yield* Effect.logInfo(
            `the ${intent.rollback ? "rollback" : "switch"} released before the restart is taken up once the ` +
              "control plane has this rollout's queued events"
          )
        }
        noteReleased(rolloutId)
        pendingIntents.push(intent)
        yield* Effect.logWarning(
          `the ${intent.rollback ? "rollback" : "switch"} to ${intent.closure} was released before the restart ` +
            "and its outcome never recorded: resuming it"
        )
      })

    const handleSnapshot = (input: Extract<ReducerInput, { readonly _tag: "BootstrapHost" }>) =>
      Effect.gen(function*() {
        const snapshot = input.snapshot
        const existing = rollouts.get(snapshot.rolloutId)
        const own = yield* ledger.switchOf(snapshot.rolloutId)
        const refusal = snapshotRefusal(snapshot, {
          machineId: config.machineId,
          knownChannels: manifests === null ? null : new Set(Object.keys(manifests.fleet.channels)),
          verifiedTarget: existing?.verifiedTarget ?? own?.target ?? null,
          finished: finished.has(snapshot.rolloutId)
        })
        if (refusal !== null) {
          const reason = snapshot.hostname === config.machineId ? "snapshot_refused" : "foreign_snapshot"
          return yield* drop(reason, "BootstrapHost", `snapshot refused, not merged: ${refusal}`)
        }
        if (existing === undefined && rollouts.size >= MAX_ROLLOUTS) {
          return yield* drop("snapshot_refused", "BootstrapHost", `snapshot refused: already ${MAX_ROLLOUTS} rollouts`)
        }
        // If the outbox cannot be read, assume events are queued: never regress on doubt.
        const queued = heldMaxSeq(snapshot.rolloutId) > 0 || (yield* outbox.pendingCount(snapshot.rolloutId).pipe(
          Effect.map((n) => n > 0),
          Effect.orElseSucceed(() => true)
        ))
        const merged = mergeSnapshot(existing, snapshot, queued, own ?? null)
        const lastEventSeq = yield* seqFloor(snapshot.rolloutId, merged.entry.record.lastEventSeq)
        const entry = lastEventSeq === merged.entry.record.lastEventSeq
          ? merged.entry
          : { ...merged.entry, record: { ...merged.entry.record, lastEventSeq } }
        rollouts.set(snapshot.rolloutId, entry)
        yield* Effect.logInfo("rollout rehydrated from the control plane").pipe(
          Effect.annotateLogs({
            state: entry.record.state,
            snapshotState: snapshot.state,
            warm: existing !== undefined,
            keptLocalState: merged.keptLocalState,
            lastEventSeq: entry.record.lastEventSeq
          })
        )
        if (merged.changed) {
          for (const command of rehydrationEffects(entry.record)) yield* apply(command)
        }
        yield* resumeInterrupted(snapshot.rolloutId, entry, queued)
      }).pipe(Effect.annotateLogs({ rolloutId: input.snapshot.rolloutId }))

    const publish = Effect.suspend(() =>
      SubscriptionRef.set(records, new Map([...rollouts].map(([id, entry]) => [id, entry.record])))
    )

    const handle = (input: ReducerInput): Effect.Effect<void> =>
      Effect.gen(function*() {
        switch (input._tag) {
          case "HostEvent":
            yield* handleHostEvent(input.rolloutId, input.event, input.waveIndex)
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
            // Off unless a test sets NIXFLEET_AGENT_TEST_WEDGE_REDUCER_AFTER_SECS.
            return yield* wedgeOnPingForTests
        }
        // Checked here: both are no-ops when empty, and this runs once per input.
        if (diskHeld.length > 0) yield* retryHeld
        if (pendingIntents.length > 0) yield* flushIntents
        yield* evictFinished
        yield* publish
      })

    return { handle }
  })

/**
 * The reducer and its fiber: `Reducer.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = Reducer.layer
