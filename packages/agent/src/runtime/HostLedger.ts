/**
 * What this host has done, kept durably apart from the control plane's view: the closure
 * it ran before each switch (the only closures a rollback may go to, besides the system
 * profile's generations), and per channel the newest signed rollout manifest it accepted
 * (so an older one, however fresh, cannot take the host back), and the newest fleet.
 *
 * One small JSON file under the state directory, rewritten atomically on every change;
 * every record is bounded.
 *
 * @since 0.1.0
 */
import { Timestamp } from "@nixfleet/proto"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { AgentConfig } from "../config/AgentConfig.js"
import { writeFileAtomicEffect } from "../support/atomicFile.js"
import { describeError } from "../support/describeError.js"

/**
 * The ledger could not be read or written (with the path and the system's reason).
 *
 * @since 0.1.0
 */
export class HostLedgerError extends Data.TaggedError("HostLedgerError")<{
  readonly operation: "read" | "write"
  readonly path: string
  readonly detail: string
}> {
  override get message(): string {
    return `cannot ${this.operation} the host ledger ${this.path}: ${this.detail}`
  }
}

/**
 * A switch this agent fired: recorded before the switch runs.
 *
 * @since 0.1.0
 */
export interface SwitchRecord {
  readonly rolloutId: string
  readonly target: string
  /** The closure the host ran when the dispatch arrived (read by the agent); null when unknown. */
  readonly previous: string | null
  /** The soak deadline the agent settled on (the dispatch's, bounded by the signed policy). */
  readonly soakDueAt: Date | null
  readonly recordedAt: Date
}

/**
 * A rollback this agent released: recorded before the rollback runs, so that an agent
 * killed while rolling back can finish it after a restart; `failedAt` is set when the
 * rollback ended without reaching its closure (a restart does not retry it).
 *
 * @since 0.1.0
 */
export interface RollbackRecord {
  readonly rolloutId: string
  readonly closure: string
  readonly releasedAt: Date
  readonly failedAt: Date | null
}

/**
 * The newest signed artifact accepted, by its `meta.signedAt`.
 *
 * @since 0.1.0
 */
export interface AcceptedArtifact {
  readonly id: string
  readonly signedAt: Date
}

/**
 * @since 0.1.0
 */
export interface HostLedgerService {
  /** Records a switch durably; returns once it is on disk. */
  readonly recordSwitch: (record: SwitchRecord) => Effect.Effect<void, HostLedgerError>
  /** The recorded switch of a rollout, if any. */
  readonly switchOf: (rolloutId: string) => Effect.Effect<SwitchRecord | undefined>
  /** Records, durably, that a rollback to `closure` is released for a rollout. */
  readonly recordRollback: (record: RollbackRecord) => Effect.Effect<void, HostLedgerError>
  /** Records that a released rollback ended without reaching its closure. */
  readonly recordRollbackFailed: (rolloutId: string, at: Date) => Effect.Effect<void, HostLedgerError>
  /** The released rollback of a rollout, if any. */
  readonly rollbackOf: (rolloutId: string) => Effect.Effect<RollbackRecord | undefined>
  /** The newest rollout manifest accepted on a channel. */
  readonly newestManifest: (channel: string) => Effect.Effect<AcceptedArtifact | undefined>
  /** Records an accepted rollout manifest when it is the channel's newest (durably). */
  readonly acceptManifest: (channel: string, accepted: AcceptedArtifact) => Effect.Effect<void, HostLedgerError>
  /** The newest fleet.resolved accepted. */
  readonly newestFleet: Effect.Effect<AcceptedArtifact | undefined>
  /** Records an accepted fleet when it is the newest (durably). */
  readonly acceptFleet: (accepted: AcceptedArtifact) => Effect.Effect<void, HostLedgerError>
}

/** Switches and released rollbacks kept: rollbacks concern the latest rollouts only. */
const MAX_SWITCHES = 64
/** Channels kept; a host follows one or a few. */
const MAX_CHANNELS = 256

/** @since 0.1.0 */
export const LEDGER_FILE = "ledger.json"

const Accepted = Schema.Struct({ id: Schema.String, signedAt: Timestamp })
/** A list rather than an object: a channel is any string, `__proto__` included. */
const ChannelAccepted = Schema.Struct({ channel: Schema.String, id: Schema.String, signedAt: Timestamp })

const LedgerFile = Schema.Struct({
  version: Schema.Literal(1),
  switches: Schema.Array(Schema.Struct({
    rolloutId: Schema.String,
    target: Schema.String,
    previous: Schema.NullOr(Schema.String),
    soakDueAt: Schema.NullOr(Timestamp),
    recordedAt: Timestamp
  })),
  manifests: Schema.Array(ChannelAccepted),
  fleet: Schema.NullOr(Accepted),
  // Absent from ledgers written before rollbacks were recorded.
  rollbacks: Schema.optionalWith(
    Schema.Array(Schema.Struct({
      rolloutId: Schema.String,
      closure: Schema.String,
      releasedAt: Timestamp,
      failedAt: Schema.NullOr(Timestamp)
    })),
    { default: () => [] }
  )
})
type LedgerFile = typeof LedgerFile.Type

const empty: LedgerFile = { version: 1, switches: [], manifests: [], fleet: null, rollbacks: [] }

const decodeLedger = Schema.decodeUnknownEither(Schema.parseJson(LedgerFile))
const encodeLedger = Schema.encodeSync(Schema.parseJson(LedgerFile))

const isMissing = (error: unknown) =>
  typeof error === "object" && error !== null && "code" in error && error.code === "ENOENT"

/** Reads the ledger; a file that is not a ledger is set aside (loudly) and an empty one starts. */
const load = (file: string) =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => Fs.readFile(file, "utf8"),
      catch: (error) => error
    }).pipe(
      Effect.catchIf(isMissing, () => Effect.succeed(null)),
      Effect.mapError((error) => new HostLedgerError({ operation: "read", path: file, detail: describeError(error) }))
    )
    if (text === null) return empty
    const decoded = decodeLedger(text)
    if (decoded._tag === "Right") return decoded.right
    const aside = `${file}.corrupt-${Date.now()}`
    yield* Effect.tryPromise(() => Fs.rename(file, aside)).pipe(Effect.ignore)
    yield* Effect.logError(
      `the host ledger ${file} is unreadable; moved to ${aside}: rollbacks go only to system profile generations ` +
        "and downgrade protection restarts from the next accepted manifest"
    )
    return empty
  })

const newer = (candidate: AcceptedArtifact, current: AcceptedArtifact | undefined | null) =>
  current === undefined || current === null || candidate.signedAt.getTime() > current.signedAt.getTime()

/** The service over a state and a way to persist it (the file, or nothing for the memory double). */
const make = (initial: LedgerFile, persist: (next: LedgerFile) => Effect.Effect<void, HostLedgerError>) =>
  Effect.gen(function*() {
    let state = initial
    // One writer at a time: each write is the whole file, so the last one must hold every change.
    const lock = yield* Effect.makeSemaphore(1)
    const update = (change: (current: LedgerFile) => LedgerFile | null) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const next = change(state)
        if (next === null) return
        yield* Effect.uninterruptible(persist(next))
        state = next
      }))
    const service: HostLedgerService = {
      recordSwitch: (record) =>
        update((current) => ({
          ...current,
          switches: [...current.switches.filter((s) => s.rolloutId !== record.rolloutId), record].slice(
            -MAX_SWITCHES
          )
        })),
      switchOf: (rolloutId) => Effect.sync(() => state.switches.findLast((s) => s.rolloutId === rolloutId)),
      recordRollback: (record) =>
        update((current) => ({
          ...current,
          rollbacks: [...current.rollbacks.filter((r) => r.rolloutId !== record.rolloutId), record].slice(
            -MAX_SWITCHES
          )
        })),
      recordRollbackFailed: (rolloutId, at) =>
        update((current) =>
          current.rollbacks.some((r) => r.rolloutId === rolloutId && r.failedAt === null)
            ? {
              ...current,
              rollbacks: current.rollbacks.map((r) => r.rolloutId === rolloutId ? { ...r, failedAt: at } : r)
            }
            : null
        ),
      rollbackOf: (rolloutId) => Effect.sync(() => state.rollbacks.findLast((r) => r.rolloutId === rolloutId)),
      newestManifest: (channel) => Effect.sync(() => state.manifests.find((m) => m.channel === channel)),
      acceptManifest: (channel, accepted) =>
        update((current) => {
          if (!newer(accepted, current.manifests.find((m) => m.channel === channel))) return null
          const manifests = [
            { channel, id: accepted.id, signedAt: accepted.signedAt },
            ...current.manifests.filter((m) => m.channel !== channel)
          ].sort((a, b) => b.signedAt.getTime() - a.signedAt.getTime()).slice(0, MAX_CHANNELS)
          return { ...current, manifests }
        }),
      newestFleet: Effect.sync(() => state.fleet ?? undefined),
      acceptFleet: (accepted) =>
        update((current) => newer(accepted, current.fleet) ? { ...current, fleet: accepted } : null)
    }
    return service
  })

/**
 * @since 0.1.0
 */
export class HostLedger extends Context.Tag("@nixfleet/agent/HostLedger")<HostLedger, HostLedgerService>() {
  /** The ledger in `${stateDir}/ledger.json`. */
  static readonly layer: Layer.Layer<HostLedger, HostLedgerError, AgentConfig> = Layer.effect(
    HostLedger,
    Effect.gen(function*() {
      const config = yield* AgentConfig
      const file = Path.join(config.stateDir, LEDGER_FILE)
      return yield* make(yield* load(file), (next) =>
        writeFileAtomicEffect(file, encodeLedger(next)).pipe(
          // The detail names the system's error code (ENOSPC, EROFS, …) and what it says.
          Effect.mapError((error) => new HostLedgerError({ operation: "write", path: file, detail: error.detail }))
        ))
    })
  )

  /** A ledger in memory only, for tests and embedders without a state directory. */
  static readonly layerMemory: Layer.Layer<HostLedger> = Layer.effect(HostLedger, make(empty, () => Effect.void))
}

/**
 * The ledger in the state directory: `HostLedger.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = HostLedger.layer

/**
 * A ledger in memory (tests): `HostLedger.layerMemory`, as this module's `layerMemory`.
 *
 * @since 0.1.0
 */
export const layerMemory = HostLedger.layerMemory
