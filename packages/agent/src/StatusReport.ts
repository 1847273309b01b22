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
