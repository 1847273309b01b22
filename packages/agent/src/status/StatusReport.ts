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
import { SettingWarning } from "../config/settings.js"
import { TestGateOn } from "../config/testGates.js"
import { OutboxSummary } from "../outbox/OutboxSummary.js"
import * as Board from "../runtime/StatusBoard.js"

// The parts of the report are defined by the layers that produce them; they are named here
// too, as the report's vocabulary.
export { SettingWarning } from "../config/settings.js"
export { TestGateOn } from "../config/testGates.js"
export { DeadLetterSummary, OutboxSummary, RECENT_DEAD_LETTERS, summariseOutbox } from "../outbox/OutboxSummary.js"
export {
  DeliveryBlocked,
  describeDeliveryBlocked,
  describeFleetRefused,
  FleetRefused,
  Lifecycle,
  LoggedProblem,
  MetricsListen,
  WorkerFault
} from "../runtime/StatusBoard.js"

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
    lifecycle: Board.Lifecycle,
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
  deliveryBlocked: Schema.optional(Board.DeliveryBlocked),
  /** Present while the last fleet.resolved fetched was refused (absent in older reports). */
  fleetRefused: Schema.optional(Board.FleetRefused),
  /** Settings whose value was replaced by the default (absent when none, and in older reports). */
  settingWarnings: Schema.optional(Schema.Array(SettingWarning)),
  /** Test gates that are on (absent when none, and in older reports). */
  testGates: Schema.optional(Schema.Array(TestGateOn)),
  /** The metrics endpoint, when one is configured (absent otherwise, and in older reports). */
  metricsListen: Schema.optional(Board.MetricsListen),
  /** The worker whose fault stopped the agent (absent otherwise, and in older reports). */
  workerFault: Schema.optional(Board.WorkerFault),
  lastError: Schema.NullOr(Board.LoggedProblem),
  lastWarning: Schema.NullOr(Board.LoggedProblem)
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
export const describePhase = (lifecycle: Board.Lifecycle, rollouts: ReadonlyArray<RolloutSummary>): string => {
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
