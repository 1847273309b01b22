import { type Handler, illegal, next, ok, recordTransition, report } from "./common.js"

/**
 * Failed accepts only the end of a rollback, whatever the policy was. The control plane
 * then quarantines the bad target (not the closure rolled back to); the agent never
 * quarantines.
 *
 * @internal
 */
export const failed: Handler = (record, event) => {
  switch (event._tag) {
    case "LocalRollbackCompleted":
    case "RemoteRollbackComplete": {
      const state = next(record, event, {
        state: "Reverted",
        revertedAt: event.completedAt,
        revertedTo: event.revertedToClosure,
        currentClosure: event.revertedToClosure
      })
      const transition = recordTransition(record, "Reverted", event.completedAt)
      return ok(
        state,
        event._tag === "LocalRollbackCompleted"
          ? [report(record, event, true), transition]
          : [
            report(record, event, true),
            { _tag: "RemoteInsertQuarantine", channel: record.channel, closure: record.targetClosure },
            transition
          ]
      )
    }
    default:
      return illegal(record, event)
  }
}
