/**
 * The human form of a status report: a few labelled lines and a table of rollouts.
 *
 * @since 0.1.0
 */
import {
  describeDeliveryBlocked,
  describeFleetRefused,
  type LoggedProblem,
  type StatusReport
} from "../status/StatusReport.js"
import { printable, printableDeep } from "../support/terminalText.js"

const iso = (date: Date | null) => date === null ? "-" : date.toISOString().replace(/\.\d{3}Z$/, "Z")

/**
 * Columns padded to their widest cell; the last column is not padded.
 *
 * @since 0.1.0
 */
export const table = (rows: ReadonlyArray<ReadonlyArray<string>>): Array<string> => {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0))) ?? []
  return rows.map((row) =>
    row.map((cell, column) => column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)).join("  ")
      .trimEnd()
  )
}

const problem = (entry: LoggedProblem | null) =>
  entry === null
    ? "none"
    : [iso(entry.at), entry.message, entry.rolloutId === null ? "" : `(${entry.rolloutId})`, entry.detail]
      .filter((part) => part !== "").join(" ")

/**
 * @since 0.1.0
 */
export const renderStatus = (untrusted: StatusReport, untrustedNotes: ReadonlyArray<string>): string => {
  // Much of a report came from outside (the control plane, probes, settings): nothing in it
  // may reach the terminal as a control sequence.
  const report = printableDeep(untrusted)
  const notes = untrustedNotes.map(printable)
  const { agent, outbox } = report
  const state = agent.running
    ? `running (pid ${agent.pid}, since ${iso(agent.startedAt)})`
    : "not running"
  const blocked = report.deliveryBlocked
  const lines = [
    `nixfleet-agent ${agent.version}: ${state}`,
    // What stopped the agent: systemd starts it again, and this says why it had to.
    ...(report.workerFault === undefined ? [] : [
      `worker ${report.workerFault.worker} failed at ${iso(report.workerFault.at)}: ${report.workerFault.reason}; ` +
      "the agent stopped (exit 70)"
    ]),
    // Right under the headline: nothing reaches the control plane until it is fixed.
    ...(blocked === undefined ? [] : [
      `${describeDeliveryBlocked(blocked)} since ${iso(blocked.since)}` +
      (blocked.reason === "" ? "" : ` (${blocked.reason})`) +
      "; events are held, in order, until it clears"
    ]),
    // As prominent: without a fleet there is no rollout policy, and dispatches wait.
    // Nothing is switched and nothing reaches the control plane until the disk takes these.
    ...(report.waitingForDisk === undefined ? [] : [
      `waiting for the disk since ${iso(report.waitingForDisk.since)}: ${report.waitingForDisk.events} events ` +
      `and ${report.waitingForDisk.activations} activations held in memory (${report.waitingForDisk.error})`
    ]),
    ...(report.fleetRefused === undefined
      ? []
      : [`${describeFleetRefused(report.fleetRefused)} (since ${iso(report.fleetRefused.since)})`]),
    // As loud as it gets: the agent does not really do what it reports.
    ...(report.testGates ?? []).map((gate) => `TEST GATE ON: ${gate.gate}=${gate.value}: ${gate.effect}`),
    ...(report.settingWarnings ?? []).map((warning) => `setting ignored: ${warning.message}`),
    ...table([
      ["phase:", agent.phase],
      ["machine:", report.machineId ?? "-"],
      ["control plane:", report.controlPlaneUrl ?? "-"],
      ["current closure:", report.currentClosure ?? "-"],
      ["state dir:", report.stateDir],
      [
        "outbox:",
        outbox === null
          ? "none"
          : `${outbox.depth} pending (${outbox.nonDurable} probe results)` +
            (outbox.oldestPendingAt === null ? "" : `, oldest from ${iso(outbox.oldestPendingAt)}`) +
            `, ${outbox.deadLetters} dead letters`
      ],
      ...(report.metricsListen === undefined ? [] : [[
        "metrics:",
        report.metricsListen.up
          ? `${report.metricsListen.address} (since ${iso(report.metricsListen.since)})`
          : `${report.metricsListen.address} NOT bound since ${iso(report.metricsListen.since)} ` +
            `(${report.metricsListen.error}); retrying`
      ]]),
      ["last error:", problem(report.lastError)],
      ["last warning:", problem(report.lastWarning)]
    ]),
    ""
  ]
  if (report.rollouts.length === 0) {
    lines.push("no rollouts")
  } else {
    lines.push(...table([
      ["ROLLOUT", "STATE", "SEQ", "DISPATCHED", "SOAK DUE", "FAILING", "TARGET"],
      ...report.rollouts.map((r) => [
        r.rolloutId,
        r.state,
        String(r.lastEventSeq),
        iso(r.dispatchedAt),
        iso(r.soakDueAt),
        r.failingProbes.length === 0 ? "-" : r.failingProbes.join(","),
        r.targetClosure
      ])
    ]))
  }
  if (outbox !== null && outbox.recentDeadLetters.length > 0) {
    lines.push("", `dead letters (newest ${outbox.recentDeadLetters.length} of ${outbox.deadLetters}):`)
    lines.push(...table([
      ["ROLLOUT", "SEQ", "KIND", "STATUS", "AT", "REASON"],
      ...outbox.recentDeadLetters.map((d) => [
        d.rolloutId,
        String(d.seq),
        d.kind,
        d.status === null ? "-" : String(d.status),
        iso(d.deadAt),
        d.reason
      ])
    ]))
  }
  if (notes.length > 0) lines.push("", ...notes.map((note) => `note: ${note}`))
  return `${lines.join("\n")}\n`
}
