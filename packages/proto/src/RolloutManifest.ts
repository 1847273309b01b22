/**
 * `releases/rollouts/<rolloutId>.json`: the signed per-channel rollout manifest.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { ArtifactMeta } from "./ArtifactMeta.js"
import { HealthGate, Selector } from "./FleetResolved.js"
import { U32 } from "./Numbers.js"
import { nullWhenAbsent, withDefault } from "./Optional.js"

/**
 * One host of the rollout: the index of its wave in `fleet.waves[channel]` (0 when it is
 * in none) and the closure it must run. The dispatch's `target_closure` is only acted on
 * when it equals this `targetClosure`.
 *
 * @since 0.1.0
 */
export const HostWave = Schema.Struct({
  hostname: Schema.String,
  waveIndex: U32,
  targetClosure: Schema.String
}).annotations({ identifier: "HostWave" })
/** @since 0.1.0 */
export type HostWave = typeof HostWave.Type

/**
 * A fleet disruption budget frozen for the rollout: its selector and the hosts it resolved
 * to when the manifest was projected (sorted by the producer). The limits are written as
 * `null` when unset.
 *
 * @since 0.1.0
 */
export const RolloutBudget = Schema.Struct({
  selector: Selector,
  hosts: Schema.Array(Schema.String),
  maxInFlight: nullWhenAbsent(U32),
  maxInFlightPct: nullWhenAbsent(U32)
}).annotations({ identifier: "RolloutBudget" })
/** @since 0.1.0 */
export type RolloutBudget = typeof RolloutBudget.Type

/**
 * The manifest of rollout `<channel>@<channelRef>`. `fleetResolvedHash` (lowercase hex
 * SHA-256 of the canonical fleet.resolved) anchors it to one fleet snapshot; `hostSet` is
 * sorted by hostname by the producer, and that order is part of the signed bytes, so it is
 * kept as is. `displayName` is for display only. `disruptionBudgets` defaults to `[]` and
 * is always written.
 *
 * @since 0.1.0
 */
export const RolloutManifest = Schema.Struct({
  schemaVersion: U32,
  displayName: Schema.String,
  channel: Schema.String,
  channelRef: Schema.String,
  fleetResolvedHash: Schema.String,
  hostSet: Schema.Array(HostWave),
  healthGate: HealthGate,
  disruptionBudgets: withDefault(Schema.Array(RolloutBudget), () => []),
  meta: ArtifactMeta
}).annotations({ identifier: "RolloutManifest" })
/** @since 0.1.0 */
export type RolloutManifest = typeof RolloutManifest.Type
