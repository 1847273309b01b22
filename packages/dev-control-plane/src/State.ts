/**
 * The control plane's memory: published artifacts, host rollout records, dispatch queues
 * and what the agents reported. It runs the same reducer as the agent (`step`) on Remote
 * events and applies the control-plane side of its commands.
 *
 * Every method is synchronous, so each one is atomic with respect to the others: that is
 * the single-reducer discipline of the real control plane without a queue.
 *
 * @since 0.1.0
 */
import { type AgentEventEnvelope, type HeartbeatRequest, type HeartbeatResponse } from "@nixfleet/proto"
import {
  type Command,
  type HostRolloutState,
  isTerminal,
  type OutboundAgentEvent,
  recordToSnapshot,
  type RecordTransition,
  type RemoteEvent,
  remoteEventFromWire,
  type RolloutPolicy,
  step
} from "@nixfleet/state-machine"
import * as Deferred from "effect/Deferred"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import { Buffer } from "node:buffer"
import type { SignedDocument } from "./Artifacts.js"
import type { Fault, Route } from "./Faults.js"

/**
 * A queued dispatch, exactly as it will be served (snake_case, any content).
 *
 * @since 0.1.0
 */
export interface DispatchWire {
  readonly hostname: string
  readonly rollout_id: string
  readonly target_closure: string
  readonly soak_due_at: string
  readonly enqueued_at: string
}

/**
 * One published rollout: its signed manifest and what `step` needs for its records.
 *
 * @since 0.1.0
 */
export interface PublishedRollout {
  readonly rolloutId: string
  readonly channel: string
  readonly policy: RolloutPolicy
  readonly manifest: SignedDocument
  readonly soakDueAt: Date
}

/**
 * An accepted `POST /v1/agent/events` body (the parsed JSON as sent).
 *
 * @since 0.1.0
 */
export interface AcceptedEvent {
  readonly envelope: unknown
  readonly duplicate: boolean
  readonly receivedAt: Date
}

/**
 * The control plane's audit log entry (`RemoteAppendEventLog`): an event the reducer
 * applied, posted by the agent or synthesised from a heartbeat.
 *
 * @since 0.1.0
 */
export interface LoggedEvent {
  readonly host: string
  readonly rolloutId: string
  readonly payload: OutboundAgentEvent
  readonly source: "agent" | "heartbeat"
}

/**
 * A state change of a record (`RecordTransition`).
 *
 * @since 0.1.0
 */
export type Transition = Omit<RecordTransition, "_tag">

/**
 * @since 0.1.0
 */
export interface Quarantined {
  readonly channel: string
  readonly closure: string
}

/**
 * What happened to an inbound event. Only `applied` changed a record; the others are still
 * answered 204, as the real control plane does.
 *
 * @since 0.1.0
 */
export type IngestOutcome =
  | { readonly _tag: "Applied"; readonly record: HostRolloutState; readonly from: string }
  | { readonly _tag: "Duplicate" }
  | { readonly _tag: "UnknownRecord" }
  | { readonly _tag: "Rejected"; readonly reason: string }

/**
 * The result of one dispatch poll: a dispatch to deliver (already removed from its
 * queue), or the signal that fires on the next enqueue for any host.
 *
 * @since 0.1.0
 */
export type Poll =
  | { readonly _tag: "Deliver"; readonly dispatch: DispatchWire }
  | { readonly _tag: "Wait"; readonly wake: Deferred.Deferred<void> }

/**
 * What a heartbeat answers: the response body and, when due, `X-Nixfleet-Replay-From`.
 *
 * @since 0.1.0
 */
export interface HeartbeatOutcome {
  readonly response: HeartbeatResponse
  readonly replayFrom: number | null
}

/**
 * An agent-facing request as the control plane saw it: what it answered, and the client
 * certificate that authenticated it (only one the fleet CA verified), identified by its
 * SHA-256 fingerprint (`AB:CD:…`, as Node's `X509Certificate.fingerprint256` writes it)
 * and serial number (lowercase hex).
 *
 * @since 0.1.0
 */
export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly clientCertificate: { readonly fingerprint256: string; readonly serialNumber: string } | null
  readonly at: Date
}

/** The request log keeps the most recent requests only: a dev control plane may run for days. */
const MAX_RECORDED_REQUESTS = 1000

/**
 * A nonce of the bootstrap-nonces allowlist: the host it may enroll, until when.
 *
 * @since 0.1.0
 */
export interface AllowedNonce {
  readonly hostname: string
  readonly expiresAt: Date
}

/**
 * String order as Rust's `Ord` for `String` (UTF-8 bytes), which the real control plane
 * sorts by; JavaScript's `<` compares UTF-16 code units instead.
 *
 * @since 0.1.0
 */
export const compareBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b))

const recordKey = (rolloutId: string, hostname: string): string => `${rolloutId}/${hostname}`

/**
 * The in-memory control plane.
 *
 * @since 0.1.0
 */
export class ControlPlaneState {
  /** Set by the first publish: the real control plane's "first signed artifact verified". */
  private primed = false
  /** `setReady` overrides the readiness derived from `primed` until it is called again. */
  private forcedReady: boolean | null = null
  private fleet: SignedDocument | null = null
  private readonly rollouts = new Map<string, PublishedRollout>()
  private readonly records = new Map<string, HostRolloutState>()
  private readonly queues = new Map<string, Array<DispatchWire>>()
  /** Completed and replaced on every enqueue: the real control plane's queue watch channel. */
  private wake = Deferred.unsafeMake<void>(FiberId.none)
  private readonly accepted: Array<AcceptedEvent> = []
  private readonly eventLog: Array<LoggedEvent> = []
  private readonly transitions: Array<Transition> = []
  private readonly quarantine: Array<Quarantined> = []
  private readonly lastHeartbeatAt = new Map<string, Date>()
  /** Over plain HTTP without identity, the host of the last heartbeat or event stands in. */
  private lastAnonymousHost: string | null = null
  private readonly faults = new Map<Route, Fault>()
  /** Each host of the current `fleet.resolved` and its declared raw ed25519 key (`null`: none). */
  private declaredKeys: ReadonlyMap<string, Uint8Array | null> = new Map()
  private readonly allowedNonces = new Map<string, AllowedNonce>()
  private readonly usedNonces = new Set<string>()
  private readonly requestLog: Array<RecordedRequest> = []

  /** The readiness gate: open once something was published, unless forced by `setReady`. */
  get ready(): boolean {
    return this.forcedReady ?? this.primed
  }

  setReady(ready: boolean): void {
    this.forcedReady = ready
  }

  setFault(route: Route, fault: Fault | undefined): void {
    if (fault === undefined) this.faults.delete(route)
    else this.faults.set(route, fault)
  }

  faultFor(route: Route): Fault | undefined {
    return this.faults.get(route)
  }

  currentFleet(): SignedDocument | null {
    return this.fleet
  }

  rollout(rolloutId: string): PublishedRollout | undefined {
    return this.rollouts.get(rolloutId)
  }

  /** The key `fleet.resolved` declares for `hostname`: `undefined` for a host it does not list. */
  declaredKey(hostname: string): Uint8Array | null | undefined {
    return this.declaredKeys.get(hostname)
  }

  /** Adds a minted token's nonce to the allowlist. */
  allowNonce(nonce: string, entry: AllowedNonce): void {
    this.allowedNonces.set(nonce, entry)
  }

  allowedNonce(nonce: string): AllowedNonce | undefined {
    return this.allowedNonces.get(nonce)
  }

  isNonceUsed(nonce: string): boolean {
    return this.usedNonces.has(nonce)
  }

  /** Records a nonce as used; `false` when it already was (a concurrent replay). */
  useNonce(nonce: string): boolean {
    if (this.usedNonces.has(nonce)) return false
    this.usedNonces.add(nonce)
    return true
  }

  recordRequest(request: RecordedRequest): void {
    this.requestLog.push(request)
    if (this.requestLog.length > MAX_RECORDED_REQUESTS) this.requestLog.shift()
  }

  requests(): ReadonlyArray<RecordedRequest> {
    return [...this.requestLog]
  }

  /**
   * Makes a publish current: the fleet (and the host keys it declares) is replaced, the rollout is added (earlier ones stay
   * served), its Pending records are opened, and the dispatches are queued for the host
   * each one names.
   */
  publish(args: {
    readonly fleet: SignedDocument
    readonly declaredKeys: ReadonlyMap<string, Uint8Array | null>
    readonly rollout: PublishedRollout
    readonly records: ReadonlyArray<HostRolloutState>
    readonly dispatches: ReadonlyArray<DispatchWire>
  }): void {
    this.fleet = args.fleet
    this.declaredKeys = args.declaredKeys
    this.primed = true
    this.rollouts.set(args.rollout.rolloutId, args.rollout)
    for (const record of args.records) this.records.set(recordKey(record.rolloutId, record.hostname), record)
    for (const dispatch of args.dispatches) this.enqueue(dispatch.hostname, dispatch)
  }

  /** Serves another `fleet.resolved`; the host keys it declares stay those of the last publish. */
  replaceFleet(fleet: SignedDocument): void {
    this.fleet = fleet
  }

  /** Appends to `forHost`'s FIFO and wakes every parked poll. */
  enqueue(forHost: string, dispatch: DispatchWire): void {
    const queue = this.queues.get(forHost)
    if (queue === undefined) this.queues.set(forHost, [dispatch])
    else queue.push(dispatch)
    this.wakeAll()
  }

  /** Releases every parked poll; each one then looks at its queue again. */
  private wakeAll(): void {
    const woken = this.wake
    this.wake = Deferred.unsafeMake<void>(FiberId.none)
    Deferred.unsafeDone(woken, Exit.void)
  }

  /**
   * Pops the oldest dispatch of `host` (`null`: the last anonymous host, see
   * {@link noteAnonymousHost}), or returns the signal to wait on. Both in one step, so
   * that an enqueue cannot slip between the check and the wait.
   */
  poll(host: string | null): Poll {
    const resolved = host ?? this.lastAnonymousHost
    const queue = resolved === null ? undefined : this.queues.get(resolved)
    const dispatch = queue?.shift()
    if (dispatch !== undefined) return { _tag: "Deliver", dispatch }
    return { _tag: "Wait", wake: this.wake }
  }

  /**
   * Remembers the host an anonymous heartbeat or event spoke for. A change wakes the
   * parked polls, since an anonymous one may now have a queue to look at.
   */
  noteAnonymousHost(hostname: string): void {
    if (this.lastAnonymousHost === hostname) return
    this.lastAnonymousHost = hostname
    this.wakeAll()
  }

  /**
   * Ingests one event (spec §2.3): recorded as accepted, deduplicated against the record's
   * `lastEventSeq`, then stepped; an unknown record, an illegal transition or a failed
   * invariant changes nothing.
   */
  ingest(envelope: AgentEventEnvelope, body: unknown, receivedAt: Date): IngestOutcome {
    const key = recordKey(envelope.rolloutId, envelope.hostname)
    const record = this.records.get(key)
    const duplicate = record !== undefined && envelope.event.seq <= record.lastEventSeq
    this.accepted.push({ envelope: body, duplicate, receivedAt })
    if (record === undefined) return { _tag: "UnknownRecord" }
    if (duplicate) return { _tag: "Duplicate" }
    return this.apply(record, remoteEventFromWire(envelope.event), receivedAt, "agent")
  }

  /**
   * A heartbeat (spec §2.1): remembers `at`, synthesises the events a lost control plane
   * state implies when the host already runs a record's target, computes Replay-From, and
   * lists the host's non-terminal records when the agent sent no rollout id.
   */
  heartbeat(request: HeartbeatRequest): HeartbeatOutcome {
    this.lastHeartbeatAt.set(request.hostname, request.at)
    const current = request.currentClosure
    if (current !== null) {
      for (const record of this.activeRecords(request.hostname)) {
        if (record.targetClosure === current) this.recover(record, current, request.at)
      }
    }
    let replayFrom: number | null = null
    if (request.rolloutId !== null && current !== null) {
      const record = this.records.get(recordKey(request.rolloutId, request.hostname))
      if (record !== undefined && record.currentClosure !== current) replayFrom = record.lastEventSeq
    }
    return {
      response: {
        receivedAt: request.at,
        bootstrapRollouts: request.rolloutId === null ? this.activeRecords(request.hostname).map(recordToSnapshot) : []
      },
      replayFrom
    }
  }

  /** The host's records that are not Converged or Reverted, ordered by rollout id. */
  private activeRecords(hostname: string): Array<HostRolloutState> {
    return [...this.records.values()]
      .filter((record) => record.hostname === hostname && !isTerminal(record.state))
      .sort((a, b) => compareBytes(a.rolloutId, b.rolloutId))
  }

  /** Recovery synthesis for one record whose target the host already runs. */
  private recover(record: HostRolloutState, current: string, at: Date): void {
    const seq = record.lastEventSeq
    const completed = (n: number): RemoteEvent => ({
      _tag: "RemoteActivationCompleted",
      observedCurrentClosure: current,
      exitCode: 0,
      completedAt: at,
      seq: seq + n
    })
    switch (record.state) {
      case "Activating":
      case "Deferred":
        this.apply(record, completed(1), at, "heartbeat")
        return
      case "Pending": {
        const soakDue = record.soakDueAt
        const convergedAt = soakDue !== null && soakDue.getTime() > at.getTime() ? soakDue : at
        const events: ReadonlyArray<RemoteEvent> = [
          { _tag: "RemoteDispatchAck", currentClosureAtDispatch: "", receivedAt: at, seq: seq + 1 },
          completed(2),
          { _tag: "RemoteConverged", convergedAt, currentClosure: current, seq: seq + 3 }
        ]
        let state = record
        for (const event of events) {
          const outcome = this.apply(state, event, at, "heartbeat")
          if (outcome._tag !== "Applied") return
          state = outcome.record
        }
        return
      }
      default:
        return
    }
  }

  /** Steps one record and runs the control plane's commands; a refused step is dropped. */
  private apply(record: HostRolloutState, event: RemoteEvent, now: Date, source: LoggedEvent["source"]): IngestOutcome {
    const rollout = this.rollouts.get(record.rolloutId)
    if (rollout === undefined) return { _tag: "UnknownRecord" }
    const result = step(record, event, now, rollout.policy)
    if (Either.isLeft(result)) return { _tag: "Rejected", reason: result.left._tag }
    this.records.set(recordKey(record.rolloutId, record.hostname), result.right.state)
    for (const command of result.right.effects) this.run(command, source)
    return { _tag: "Applied", record: result.right.state, from: record.state }
  }

  private run(command: Command, source: LoggedEvent["source"]): void {
    switch (command._tag) {
      case "RemoteInsertQuarantine":
        if (!this.quarantine.some((q) => q.channel === command.channel && q.closure === command.closure)) {
          this.quarantine.push({ channel: command.channel, closure: command.closure })
        }
        return
      case "RemoteAppendEventLog":
        this.eventLog.push({ host: command.host, rolloutId: command.rolloutId, payload: command.payload, source })
        return
      case "RecordTransition":
        this.transitions.push({
          host: command.host,
          rolloutId: command.rolloutId,
          from: command.from,
          to: command.to,
          at: command.at
        })
        return
      default:
        return
    }
  }

  hostStates(): ReadonlyMap<string, HostRolloutState> {
    return new Map(this.records)
  }

  acceptedEvents(): ReadonlyArray<AcceptedEvent> {
    return [...this.accepted]
  }

  quarantined(): ReadonlyArray<Quarantined> {
    return [...this.quarantine]
  }

  log(): {
    readonly events: ReadonlyArray<LoggedEvent>
    readonly transitions: ReadonlyArray<Transition>
    readonly lastHeartbeatAt: ReadonlyMap<string, Date>
  } {
    return {
      events: [...this.eventLog],
      transitions: [...this.transitions],
      lastHeartbeatAt: new Map(this.lastHeartbeatAt)
    }
  }
}
