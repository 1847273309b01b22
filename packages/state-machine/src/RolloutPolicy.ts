/**
 * The slice of a channel's rollout policy that `step` receives.
 *
 * @since 0.1.0
 */
import { OnHealthFailure } from "@nixfleet/proto"
import * as Schema from "effect/Schema"

/**
 * Structurally the `RolloutPolicy` of `fleet.resolved`; `step` only reads
 * `onHealthFailure`, and only for Activating → Failed.
 *
 * @since 0.1.0
 */
export const RolloutPolicy = Schema.Struct({
  strategy: Schema.String,
  waves: Schema.Array(Schema.Struct({ selector: Schema.Unknown, soakMinutes: Schema.Number })),
  healthGate: Schema.Object,
  onHealthFailure: OnHealthFailure
}).annotations({ identifier: "RolloutPolicy" })

/** @since 0.1.0 */
export interface RolloutPolicy {
  readonly strategy: string
  readonly waves: ReadonlyArray<{ readonly selector: unknown; readonly soakMinutes: number }>
  readonly healthGate: object
  readonly onHealthFailure: OnHealthFailure
}
