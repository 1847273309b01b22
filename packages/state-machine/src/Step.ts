/**
 * The host-rollout reducer: one pure function that the agent runs on its own events and
 * the control plane runs on the agent's reports.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import type { Command } from "./Command.js"
import type { Event } from "./Event.js"
import type { HostRolloutState } from "./HostRolloutState.js"
import { activating, deferred } from "./internal/transitions/activation.js"
import { illegal } from "./internal/transitions/common.js"
import { failed } from "./internal/transitions/failed.js"
import { pending } from "./internal/transitions/pending.js"
import { soaking } from "./internal/transitions/soaking.js"
import type { RolloutPolicy } from "./RolloutPolicy.js"
import { SeqRegression, type TransitionError } from "./TransitionError.js"

/**
 * A successful step: the new record and the commands to run, in order.
 *
 * @since 0.1.0
 */
export interface StepOutput {
  readonly state: HostRolloutState
  readonly effects: ReadonlyArray<Command>
}

/**
 * Applies one event to one record.
 *
 * The seq is checked first (an event whose seq is not above `lastEventSeq` is a
 * `SeqRegression`, even if it would also be illegal; gaps are fine), then legality, then
 * for convergence the three invariants. On success every field update comes from the
 * event, `lastEventSeq` becomes the event's seq, and the effects follow the upstream order
 * exactly. Inputs are never mutated; `now` is accepted for parity and never read; `policy`
 * matters only for Activating → Failed.
 *
 * @since 0.1.0
 */
export const step = (
  state: HostRolloutState,
  event: Event,
  _now: Date,
  policy: RolloutPolicy
): Either.Either<StepOutput, TransitionError> => {
  if (!(event.seq > state.lastEventSeq)) {
    return Either.left(
      new SeqRegression({
        got: event.seq,
        last: state.lastEventSeq,
        rolloutId: state.rolloutId,
        hostname: state.hostname
      })
    )
  }
  switch (state.state) {
    case "Pending":
      return pending(state, event, policy)
    case "Activating":
      return activating(state, event, policy)
    case "Deferred":
      return deferred(state, event, policy)
    case "Soaking":
      return soaking(state, event, policy)
    case "Failed":
      return failed(state, event, policy)
    default:
      // Converged and Reverted absorb everything; so does a state this reducer does not know.
      return illegal(state, event)
  }
}
