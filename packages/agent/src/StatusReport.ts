/**
 * What `nixfleet-agent status` shows, as a schema: the running agent serves it on its
 * status socket, keeps the last one in `<state-dir>/status.json`, and `status --json`
 * prints it. Dates are ISO strings on the wire.
 *
 * @since 0.1.0
 */
import type { HostRolloutState } from "@nixfleet/state-machine"
import { HostState } from "@nixfleet/state-machine"
import * as Schema from "effect/Schema"

/**
 * One rollout as the agent's reducer holds it.
 *
 * @since 0.1.0
 */
export const RolloutSummary = Schema.Struct({
  rolloutId: Schema.String,
  channel: Schema.String,
  state: HostState,
  targetClosure: Schema.String,
  currentClosure: Schema.NullOr(Schema.String),
  lastEventSeq: Schema.Int,
  dispatchedAt: Schema.Date,
  soakDueAt: Schema.NullOr(Schema.Date),
  /** Enforce-mode probes failing now. */
  failingProbes: Schema.Array(Schema.String)
})

/**
 * @since 0.1.0
 */
export type RolloutSummary = typeof RolloutSummary.Type

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
 * @since 0.1.0
 */
export const DeadLetterSummary = Schema.Struct({
  rolloutId: Schema.String,
  seq: Schema.Int,
  kind: Schema.String,
  status: Schema.NullOr(Schema.Int),
  reason: Schema.String,
  deadAt: Schema.Date
})

/**
 * @since 0.1.0
 */
export const OutboxSummary = Schema.Struct({
  /** Events waiting for the control plane. */
  depth: Schema.Int,
  /** Of those, probe chatter (dropped first when the cap is reached). */
  nonDurable: Schema.Int,
  oldestPendingAt: Schema.NullOr(Schema.Date),
  deadLetters: Schema.Int,
  /** The most recent dead letters, newest first. */
  recentDeadLetters: Schema.Array(DeadLetterSummary)
})

/**
 * @since 0.1.0
 */
export type OutboxSummary = typeof OutboxSummary.Type

/**
 * How many of the latest dead letters a report lists (its count covers all of them).
 *
 * @since 0.1.0
 */
export const RECENT_DEAD_LETTERS = 5

/**
 * The outbox part of a report, from the outbox's counts, its oldest pending row and its
 * latest dead letters.
 *
 * @since 0.1.0
 */
export const summariseOutbox = (
  counts: { readonly pending: number; readonly nonDurable: number; readonly deadLetters: number },
  oldestPendingAt: Date | null,
  recent: ReadonlyArray<typeof DeadLetterSummary.Type>
): OutboxSummary => ({
  depth: counts.pending,
  nonDurable: counts.nonDurable,
  oldestPendingAt,
  deadLetters: counts.deadLetters,
  recentDeadLetters: recent.map(({ deadAt, kind, reason, rolloutId, seq, status }) => ({
    rolloutId,
    seq,
    kind,
    status,
    reason,
    deadAt
  }))
})

/**
 * What the reducer holds in memory because the state directory refuses writes (full,
 * read-only, failing): events not yet in the outbox, and the activations behind them.
 *
 * @since 0.1.0
 */
export const WaitingForDisk = Schema.Struct({
  events: Schema.Int,
  activations: Schema.Int,
  since: Schema.Date,
  /** The latest refusal: the system's error code and what it said. */
  error: Schema.String
})

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
 * A setting given a value the agent cannot use: it runs with the default instead.
 *
 * @since 0.1.0
 */
export const SettingWarning = Schema.Struct({
  /** The flag and its environment variable, e.g. `--renewal-threshold-fraction (NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION)`. */
  setting: Schema.String,
  /** The value given (cut at 200 characters). */
  value: Schema.String,
  /** Why it cannot be used and what the agent does instead. */
  message: Schema.String
})

/**
 * @since 0.1.0
 */
export type SettingWarning = typeof SettingWarning.Type

/**
 * A test gate that is on: the agent does not really do what it reports.
 *
 * @since 0.1.0
 */
export const TestGateOn = Schema.Struct({
  /** The environment variable, e.g. `NIXFLEET_AGENT_ACTIVATION_TEST_MODE`. */
  gate: Schema.String,
  value: Schema.String,
  /** What the agent does not do while it is on. */
  effect: Schema.String
})

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
export const StatusReport = Schema.Struct({
  /** `live`: answered by the running agent; `state-dir`: read from its files. */
  source: Schema.Literal("live", "state-dir"),
  agent: Schema.Struct({
    version: Schema.String,
    running: Schema.Boolean,
    pid: Schema.NullOr(Schema.Int),
    startedAt: Schema.NullOr(Schema.Date),
    lifecycle: Lifecycle,
    /** One line on what the agent is doing (also systemd's `STATUS=`). */
    phase: Schema.String,
    /** When this report was made. */
    reportedAt: Schema.Date
  }),
  machineId: Schema.NullOr(Schema.String),
  controlPlaneUrl: Schema.NullOr(Schema.String),
  stateDir: Schema.String,
  /** The link the running closure is read from (`status` reads it there when the agent is down). */
  currentSystemPath: Schema.String,
  currentClosure: Schema.NullOr(Schema.String),
  rollouts: Schema.Array(RolloutSummary),
  /** Null when there is no outbox in the state directory. */
  outbox: Schema.NullOr(OutboxSummary),
  /** Present while writes wait for the state directory (absent in older reports). */
  waitingForDisk: Schema.optional(WaitingForDisk),
  /** Present while the control plane refuses the agent's events for its identity (absent in older reports). */
  deliveryBlocked: Schema.optional(DeliveryBlocked),
  /** Present while the last fleet.resolved fetched was refused (absent in older reports). */
  fleetRefused: Schema.optional(FleetRefused),
  /** Settings whose value was replaced by the default (absent when none, and in older reports). */
  settingWarnings: Schema.optional(Schema.Array(SettingWarning)),
  /** Test gates that are on (absent when none, and in older reports). */
  testGates: Schema.optional(Schema.Array(TestGateOn)),
  /** The metrics endpoint, when one is configured (absent otherwise, and in older reports). */
  metricsListen: Schema.optional(MetricsListen),
  /** The worker whose fault stopped the agent (absent otherwise, and in older reports). */
  workerFault: Schema.optional(WorkerFault),
  lastError: Schema.NullOr(LoggedProblem),
  lastWarning: Schema.NullOr(LoggedProblem)
})

/**
 * @since 0.1.0
 */
export type StatusReport = typeof StatusReport.Type

/**
 * The report as JSON text, and back.
 *
 * @since 0.1.0
 */
export const StatusReportJson = Schema.parseJson(StatusReport)

/**
 * @since 0.1.0
 */
export const summariseRollout = (record: HostRolloutState): RolloutSummary => ({
  rolloutId: record.rolloutId,
  channel: record.channel,
  state: record.state,
  targetClosure: record.targetClosure,
  currentClosure: record.currentClosure,
  lastEventSeq: record.lastEventSeq,
  dispatchedAt: record.dispatchedAt,
  soakDueAt: record.soakDueAt,
  failingProbes: [...record.probes]
    .filter(([, probe]) => probe.mode === "enforce" && probe.status === "fail")
    .map(([name]) => name)
    .sort()
})

const inFlightOrder: ReadonlyArray<HostState> = ["Activating", "Deferred", "Soaking", "Pending"]

/**
 * One line on what the agent is doing: the lifecycle, or the most advanced rollout in
 * flight, or the last rollout seen. Pure, so systemd's `STATUS=` and `status` agree.
 *
 * @since 0.1.0
 */
export const describePhase = (lifecycle: Lifecycle, rollouts: ReadonlyArray<RolloutSummary>): string => {
  switch (lifecycle) {
    case "starting":
      return "starting: boot recovery"
    case "stopping":
      return "stopping: draining"
    case "stopped":
      return "stopped"
    case "running":
      break
  }
  for (const state of inFlightOrder) {
    const rollout = rollouts.find((r) => r.state === state)
    if (rollout === undefined) continue
    switch (state) {
      case "Pending":
        return `dispatched ${rollout.rolloutId}`
      case "Activating":
        return `activating ${rollout.rolloutId}`
      case "Deferred":
        return `activated ${rollout.rolloutId}; reboot pending`
      default: {
        const failing = rollout.failingProbes.length === 0 ? "" : `, failing: ${rollout.failingProbes.join(", ")}`
        const until = rollout.soakDueAt === null ? "" : ` until ${rollout.soakDueAt.toISOString()}`
        return `soaking ${rollout.rolloutId}${until}${failing}`
      }
    }
  }
  const latest = [...rollouts].sort((a, b) => b.dispatchedAt.getTime() - a.dispatchedAt.getTime())[0]
  return latest === undefined ? "idle: no rollout yet" : `idle: ${latest.rolloutId} ${latest.state}`
}
