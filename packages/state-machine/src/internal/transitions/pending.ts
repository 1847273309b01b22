import { type Handler, illegal, next, ok, recordTransition, report } from "./common.js"

/**
 * Pending accepts only the dispatch acknowledgement. The agent's `LocalActivate` also
 * fires the switch on the record's target: the runtime copied the just-verified target
 * into the record before calling `step`, so the event's own target is not read.
 *
 * @internal
 */
export const pending: Handler = (record, event) => {
  switch (event._tag) {
    case "LocalActivate": {
      const state = next(record, event, {
        state: "Activating",
        currentClosureAtDispatch: event.currentClosureAtDispatch,
        dispatchAckedAt: event.receivedAt
      })
      return ok(state, [
        recordTransition(record, "Activating", event.receivedAt),
        report(record, event, true),
        { _tag: "LocalFireSwitch", rolloutId: record.rolloutId, target: record.targetClosure }
      ])
    }
    case "RemoteDispatchAck": {
      const state = next(record, event, {
        state: "Activating",
        currentClosureAtDispatch: event.currentClosureAtDispatch,
        dispatchAckedAt: event.receivedAt
      })
      return ok(state, [report(record, event, true), recordTransition(record, "Activating", event.receivedAt)])
    }
    default:
      return illegal(record, event)
  }
}
