import * as Either from "effect/Either"
import type { Command } from "../../Command.js"
import type { Event } from "../../Event.js"
import type { HostRolloutState } from "../../HostRolloutState.js"
import type { ProbeRecord } from "../../ProbeRecord.js"
import { Invariant, InvariantMessages } from "../../TransitionError.js"
import { type Handler, illegal, isLocal, next, ok, recordTransition, report, type StepResult } from "./common.js"

type ProbeResult = Extract<Event, { readonly _tag: "LocalProbeResult" | "RemoteProbeResult" }>
type Converged = Extract<Event, { readonly _tag: "LocalConvergedReached" | "RemoteConverged" }>

/**
 * Latest result wins, with no ordering check on `observedAt`. A pass stamps `lastPassAt`
 * and clears the reason; a fail overwrites the reason (even with `null`) and keeps
 * `lastPassAt`. Sub-results are not stored.
 */
const probeResult = (record: HostRolloutState, event: ProbeResult): StepResult => {
  const previous = record.probes.get(event.probeName)
  const updated: ProbeRecord = event.status === "pass"
    ? {
      status: "pass",
      mode: event.mode,
      lastObservedAt: event.observedAt,
      lastPassAt: event.observedAt,
      failureReason: null
    }
    : {
      status: "fail",
      mode: event.mode,
      lastObservedAt: event.observedAt,
      lastPassAt: previous === undefined ? null : previous.lastPassAt,
      failureReason: event.failureReason
    }
  const probes = new Map(record.probes)
  probes.set(event.probeName, updated)
  return ok(next(record, event, { probes }), [report(record, event, false)])
}

const hasFailingEnforceProbe = (record: HostRolloutState): boolean => {
  for (const probe of record.probes.values()) {
    if (probe.mode === "enforce" && probe.status !== "pass") return true
  }
  return false
}

/**
 * The convergence gate, checked in this order before anything changes: the reported
 * closure is the target; the soak deadline (when known) is not after `convergedAt`; no
 * enforce-mode probe in the map is failing. An empty map passes.
 */
const converged = (record: HostRolloutState, event: Converged): StepResult => {
  if (event.currentClosure !== record.targetClosure) {
    return Either.left(new Invariant({ message: InvariantMessages.closureMismatch }))
  }
  if (record.soakDueAt !== null && event.convergedAt.getTime() < record.soakDueAt.getTime()) {
    return Either.left(new Invariant({ message: InvariantMessages.beforeSoakDue }))
  }
  if (hasFailingEnforceProbe(record)) {
    return Either.left(new Invariant({ message: InvariantMessages.enforceProbeNotPass }))
  }
  const state = next(record, event, {
    state: "Converged",
    convergedAt: event.convergedAt,
    currentClosure: event.currentClosure
  })
  return ok(state, [report(record, event, true), recordTransition(record, "Converged", event.convergedAt)])
}

/**
 * Soaking accepts probe reports, the sustained-failure verdict and convergence. Probe
 * chatter (observed-first, results, failure-first) is not durable. On sustained failure
 * the *event's* policy decides `policyApplied` and, for the agent only, the rollback.
 *
 * @internal
 */
export const soaking: Handler = (record, event) => {
  switch (event._tag) {
    case "LocalProbeTopologyDeclared":
    case "RemoteProbeTopologyDeclared":
      return ok(next(record, event, {}), [report(record, event, true)])
    case "LocalProbeObservedFirst":
    case "RemoteProbeObservedFirst":
      return ok(next(record, event, { probeObservedFirstAt: record.probeObservedFirstAt ?? event.observedAt }), [
        report(record, event, false)
      ])
    case "LocalProbeResult":
    case "RemoteProbeResult":
      return probeResult(record, event)
    case "LocalProbeFailureFirst":
    case "RemoteProbeFailureFirst":
      return ok(next(record, event, { probeFailureFirstAt: record.probeFailureFirstAt ?? event.firstFailedAt }), [
        report(record, event, false)
      ])
    case "LocalSustainedFailureCrossed":
    case "RemoteFailed": {
      const state = next(record, event, {
        state: "Failed",
        failedAt: event.failedAt,
        policyApplied: event.policyApplied
      })
      const effects: Array<Command> = [report(record, event, true), recordTransition(record, "Failed", event.failedAt)]
      if (isLocal(event) && event.policyApplied === "rollback-and-halt" && record.currentClosureAtDispatch !== null) {
        effects.push({
          _tag: "LocalFireRollbackTo",
          rolloutId: record.rolloutId,
          closure: record.currentClosureAtDispatch
        })
      }
      return ok(state, effects)
    }
    case "LocalConvergedReached":
    case "RemoteConverged":
      return converged(record, event)
    default:
      return illegal(record, event)
  }
}
