import type { HostRolloutState, LocalEvent } from "@nixfleet/state-machine"

/**
 * Per-probe failure windows after a successful step. Only enforce-mode probes count. A
 * result that fails opens the probe's window at its observation time (if not already
 * open); a pass, or a probe no longer in enforce mode, closes it. Activation completion
 * clears the probe map and with it every window.
 *
 * @internal
 */
export const nextFailureWindows = (
  previous: ReadonlyMap<string, Date>,
  record: HostRolloutState,
  event: LocalEvent
): ReadonlyMap<string, Date> => {
  if (record.probes.size === 0) return previous.size === 0 ? previous : new Map()
  if (event._tag !== "LocalProbeResult") return previous
  const failing = event.status === "fail" && event.mode === "enforce"
  if (failing === previous.has(event.probeName)) return previous
  const next = new Map(previous)
  if (failing) next.set(event.probeName, event.observedAt)
  else next.delete(event.probeName)
  return next
}
