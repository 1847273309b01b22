import type { Command } from "../../Command.js"
import type { Event } from "../../Event.js"
import type { HostRolloutState } from "../../HostRolloutState.js"
import { type Handler, illegal, isLocal, next, ok, recordTransition, report, type StepResult } from "./common.js"

type Completed = Extract<Event, { readonly _tag: "LocalActivationCompleted" | "RemoteActivationCompleted" }>

/**
 * Activating or Deferred → Soaking. The probe map is cleared on both sides; only the agent
 * also drops its probe cache and tickers. The observed closure is stored even when it is
 * not the target: the convergence gate catches that later.
 */
const completed = (record: HostRolloutState, event: Completed): StepResult => {
  const state = next(record, event, {
    state: "Soaking",
    activationCompletedAt: event.completedAt,
    currentClosure: event.observedCurrentClosure,
    probes: new Map()
  })
  const transition = recordTransition(record, "Soaking", event.completedAt)
  return ok(
    state,
    isLocal(event)
      ? [{ _tag: "LocalResetProbeCache", rolloutId: record.rolloutId }, report(record, event, true), transition]
      : [report(record, event, true), transition]
  )
}

/**
 * Activating accepts the outcomes of the switch. On failure the policy *argument* decides
 * both `policyApplied` and, for the agent only, an immediate rollback to the closure that
 * ran at dispatch (skipped when that closure is unknown).
 *
 * @internal
 */
export const activating: Handler = (record, event, policy) => {
  switch (event._tag) {
    case "LocalActivationStarted":
    case "RemoteActivationStarted":
      return ok(next(record, event, { activationStartedAt: event.startedAt }), [report(record, event, true)])
    case "LocalActivationCompleted":
    case "RemoteActivationCompleted":
      return completed(record, event)
    case "LocalActivationDeferred":
    case "RemoteActivationDeferred":
      return ok(next(record, event, { state: "Deferred" }), [
        report(record, event, true),
        recordTransition(record, "Deferred", event.deferredAt)
      ])
    case "LocalActivationFailed":
    case "RemoteActivationFailed": {
      const state = next(record, event, {
        state: "Failed",
        activationFailedAt: event.failedAt,
        failedAt: event.failedAt,
        policyApplied: policy.onHealthFailure
      })
      const effects: Array<Command> = [report(record, event, true), recordTransition(record, "Failed", event.failedAt)]
      if (
        isLocal(event) && policy.onHealthFailure === "rollback-and-halt" && record.currentClosureAtDispatch !== null
      ) {
        effects.push({
          _tag: "LocalFireRollbackTo",
          rolloutId: record.rolloutId,
          closure: record.currentClosureAtDispatch
        })
      }
      return ok(state, effects)
    }
    default:
      return illegal(record, event)
  }
}

/**
 * Deferred waits for the reboot: it is left by a completion or a failure. A failure here
 * records no policy and never rolls back, whatever the policy (upstream leaves rollback
 * of deferred activations to a later design).
 *
 * @internal
 */
export const deferred: Handler = (record, event) => {
  switch (event._tag) {
    case "LocalActivationCompleted":
    case "RemoteActivationCompleted":
      return completed(record, event)
    case "LocalActivationFailed":
    case "RemoteActivationFailed":
      return ok(
        next(record, event, { state: "Failed", activationFailedAt: event.failedAt, failedAt: event.failedAt }),
        [
          report(record, event, true),
          recordTransition(record, "Failed", event.failedAt)
        ]
      )
    default:
      return illegal(record, event)
  }
}
