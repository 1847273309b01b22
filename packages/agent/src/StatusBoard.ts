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
import * as SubscriptionRef from "effect/SubscriptionRef"
import type {
  DeliveryBlocked,
  FleetRefused,
  Lifecycle,
  LoggedProblem,
  MetricsListen,
  WorkerFault
} from "./StatusReport.js"

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
