/**
 * What the agent knows about itself beyond its rollouts: where it is in its lifecycle,
 * the last error and warning it logged, and whether delivery is blocked. It has no dependencies, so it is built before the
 * reducer and its logger sees every fiber of the runtime.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"

/**
 * The last error or warning the agent logged.
 *
 * @since 0.1.0
 */
export const LoggedProblem = Schema.Struct({
  at: Schema.Date,
  message: Schema.String,
  rolloutId: Schema.NullOr(Schema.String),
  /** What the log line carried besides the message (reason, status, …), as text. */
  detail: Schema.String
})

/**
 * @since 0.1.0
 */
export type LoggedProblem = typeof LoggedProblem.Type

/**
 * Why the outbound sender holds the outbox: the control plane refuses this agent itself
 * (401: no or revoked certificate; 403: the machine id is not the certificate's; 426: the
 * protocol version), not the event. Every event waits, in order, until that is fixed.
 *
 * @since 0.1.0
 */
export const DeliveryBlocked = Schema.Struct({
  /** 401, 403 or 426. */
  status: Schema.Int,
  /** The events endpoint that refused. */
  url: Schema.String,
  /** The first refusal of this kind. */
  since: Schema.Date,
  /** The latest refusal's body (its reason), when it sent one. */
  reason: Schema.String
})

/**
 * @since 0.1.0
 */
export type DeliveryBlocked = typeof DeliveryBlocked.Type

/**
 * The one line the journal, `status` and the gauge agree on.
 *
 * @since 0.1.0
 */
export const describeDeliveryBlocked = (blocked: DeliveryBlocked): string =>
  `delivery blocked: ${blocked.status} from ${blocked.url}`

/**
 * The last `fleet.resolved` the agent refused (its signature, its schema, an older one than
 * accepted, …), while no fleet was accepted since. The rollout policies come from the fleet:
 * without one accepted earlier in this run, every dispatch is held until one is.
 *
 * @since 0.1.0
 */
export const FleetRefused = Schema.Struct({
  /** The first refusal of this kind. */
  since: Schema.Date,
  /** `verify`, `schema`, `downgrade`, `trust-file`, … (the metric's label). */
  reason: Schema.String,
  /** The field and why (`$.hosts.web-01: missing field …`, `BadSignature: …`). */
  detail: Schema.String,
  /** Whether rollout policies are still those of a fleet accepted before: else dispatches are held. */
  policyCached: Schema.Boolean
})

/**
 * @since 0.1.0
 */
export type FleetRefused = typeof FleetRefused.Type

/**
 * The one line the journal and `status` agree on.
 *
 * @since 0.1.0
 */
export const describeFleetRefused = (refused: FleetRefused): string =>
  `fleet.resolved refused (${refused.reason}): ${refused.detail}; ` +
  (refused.policyCached
    ? "the rollout policies stay those of the fleet accepted before"
    : "no rollout policy: every dispatch is held until a fleet.resolved is accepted")

/**
 * The metrics endpoint (`--metrics-listen`): bound, or retried in the background since the
 * first refusal.
 *
 * @since 0.1.0
 */
export const MetricsListen = Schema.Struct({
  /** `host:port`. */
  address: Schema.String,
  up: Schema.Boolean,
  /** Since when it is bound, or since when it cannot be. */
  since: Schema.Date,
  /** The latest refusal (errno and message), empty once bound. */
  error: Schema.String
})

/**
 * @since 0.1.0
 */
export type MetricsListen = typeof MetricsListen.Type

/**
 * A supervised worker that died or ended while the agent was not stopping: the agent stops
 * on it (and `run` exits 70), so this shows in the report written as it stops.
 *
 * @since 0.1.0
 */
export const WorkerFault = Schema.Struct({
  /** The worker's name, e.g. `OutboundSender`. */
  worker: Schema.String,
  at: Schema.Date,
  /** The first line of its cause. */
  reason: Schema.String
})

/**
 * @since 0.1.0
 */
export type WorkerFault = typeof WorkerFault.Type

/**
 * `starting` until boot recovery is done, `running`, `stopping` once a shutdown was asked
 * for, `stopped` in the last report of a clean stop.
 *
 * @since 0.1.0
 */
export const Lifecycle = Schema.Literal("starting", "running", "stopping", "stopped")

/**
 * @since 0.1.0
 */
export type Lifecycle = typeof Lifecycle.Type

/**
 * @since 0.1.0
 */
export interface Problems {
  readonly lastError: LoggedProblem | null
  readonly lastWarning: LoggedProblem | null
}

/**
 * @since 0.1.0
 */
export interface StatusBoardService {
  readonly startedAt: Date
  readonly lifecycle: SubscriptionRef.SubscriptionRef<Lifecycle>
  /** A plain `Ref`: the logger updates it synchronously, from whichever fiber logs. */
  readonly problems: Ref.Ref<Problems>
  /** Set by the outbound sender while the control plane refuses this agent's events (401, 403, 426). */
  readonly deliveryBlocked: Ref.Ref<DeliveryBlocked | null>
  /** Set by the manifest poll while the last fleet.resolved fetched was refused. */
  readonly fleetRefused: Ref.Ref<FleetRefused | null>
  /** Set by the metrics exporter: whether its endpoint is bound, or why not yet. */
  readonly metricsListen: Ref.Ref<MetricsListen | null>
  /** Set by the supervisor: the first worker that failed (the agent is stopping on it). */
  readonly workerFault: Ref.Ref<WorkerFault | null>
}

/** A problem's detail (its annotations on one line) is cut here: the report stays short. */
const MAX_DETAIL = 512

/** An annotation as text; never throws (a bigint or a cycle must not break logging). */
const textOf = (value: unknown): string => {
  if (typeof value === "string") return value
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

const detailOf = (annotations: HashMap.HashMap<string, unknown>, cause: Cause.Cause<unknown>): string => {
  const parts: Array<string> = []
  // Sorted: a map's order is its hashing, and the same problem must read the same.
  for (const [key, value] of [...annotations].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    if (key === "rolloutId") continue
    parts.push(`${key}=${textOf(value)}`)
  }
  if (!Cause.isEmpty(cause)) parts.push(`cause=${Cause.pretty(cause).split("\n")[0]}`)
  const detail = parts.join(" ")
  return detail.length > MAX_DETAIL ? `${detail.slice(0, MAX_DETAIL)}…` : detail
}

const messageOf = (message: unknown): string =>
  (Array.isArray(message) ? message : [message]).map((part) => typeof part === "string" ? part : String(part)).join(
    " "
  )

/**
 * @since 0.1.0
 */
export class StatusBoard extends Context.Tag("@nixfleet/agent/StatusBoard")<StatusBoard, StatusBoardService>() {
  static readonly layer: Layer.Layer<StatusBoard> = Layer.effect(
    StatusBoard,
    Effect.gen(function*() {
      const startedAt = new Date(yield* Effect.clockWith((clock) => clock.currentTimeMillis))
      return {
        startedAt,
        lifecycle: yield* SubscriptionRef.make<Lifecycle>("starting"),
        problems: yield* Ref.make<Problems>({ lastError: null, lastWarning: null }),
        deliveryBlocked: yield* Ref.make<DeliveryBlocked | null>(null),
        fleetRefused: yield* Ref.make<FleetRefused | null>(null),
        metricsListen: yield* Ref.make<MetricsListen | null>(null),
        workerFault: yield* Ref.make<WorkerFault | null>(null)
      }
    })
  )

  /**
   * A logger, added beside the program's own, that keeps the last error and the last
   * warning on the board. It writes nothing.
   */
  static readonly logger: Layer.Layer<never, never, StatusBoard> = Layer.unwrapEffect(
    Effect.map(StatusBoard, (board) =>
      Logger.add(
        Logger.make(({ annotations, cause, date, logLevel, message }) => {
          const field = LogLevel.greaterThanEqual(logLevel, LogLevel.Error)
            ? "lastError"
            : LogLevel.greaterThanEqual(logLevel, LogLevel.Warning)
            ? "lastWarning"
            : undefined
          if (field === undefined) return
          const rolloutId = HashMap.get(annotations, "rolloutId")
          const problem: LoggedProblem = {
            at: date,
            message: messageOf(message),
            rolloutId: rolloutId._tag === "Some" ? String(rolloutId.value) : null,
            detail: detailOf(annotations, cause)
          }
          Effect.runSync(Ref.update(board.problems, (p) => ({ ...p, [field]: problem })))
        })
      ))
  )
}

/**
 * An empty board: `StatusBoard.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = StatusBoard.layer

/**
 * The logger that keeps the last error and warning on the board: `StatusBoard.logger`, as this module's `layerLogger`.
 *
 * @since 0.1.0
 */
export const layerLogger = StatusBoard.logger
