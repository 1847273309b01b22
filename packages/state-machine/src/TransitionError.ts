/**
 * Why `step` refused an event. The caller keeps its previous record.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * The (state, event) pair is not in the transition table.
 *
 * @since 0.1.0
 */
export class IllegalForState extends Data.TaggedError("IllegalForState")<{
  readonly from: string
  readonly event: string
  readonly rolloutId: string
  readonly hostname: string
}> {
  override get message(): string {
    return `event ${this.event} not legal from state ${this.from} (rollout ${this.rolloutId}, host ${this.hostname})`
  }
}

/**
 * The event's seq is not greater than the record's: a retransmit or an out-of-order
 * arrival. Checked before legality.
 *
 * @since 0.1.0
 */
export class SeqRegression extends Data.TaggedError("SeqRegression")<{
  readonly got: number
  readonly last: number
  readonly rolloutId: string
  readonly hostname: string
}> {
  override get message(): string {
    return `event seq ${this.got} is not > last_event_seq ${this.last} (rollout ${this.rolloutId}, host ${this.hostname})`
  }
}

/**
 * A convergence invariant does not hold; nothing changed and the seq was not consumed,
 * so the same seq may be retried.
 *
 * @since 0.1.0
 */
export class Invariant extends Data.TaggedError("Invariant")<{
  readonly message: string
}> {
  override toString(): string {
    return `invariant violation: ${this.message}`
  }
}

/** @since 0.1.0 */
export type TransitionError = IllegalForState | SeqRegression | Invariant

/**
 * The three convergence-gate messages, verbatim from upstream.
 *
 * @since 0.1.0
 */
export const InvariantMessages = {
  closureMismatch: "Converged event: current_closure != target_closure",
  beforeSoakDue: "Converged event: converged_at before soak_due_at",
  enforceProbeNotPass: "Converged event: at least one enforce-mode probe is not Pass"
} as const
