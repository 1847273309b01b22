/**
 * The reducer's cache of signed artifacts: the verified fleet and, per channel, the
 * verified rollout manifest bound to it. Rollout policies are read from here.
 *
 * @since 0.1.0
 */
import type { FleetResolved, RolloutManifest } from "@nixfleet/proto"
import type { RolloutPolicy } from "@nixfleet/state-machine"

/**
 * @since 0.1.0
 */
export interface ManifestSet {
  readonly fleet: FleetResolved
  /** Lowercase hex SHA-256 of the fleet's canonical JSON (what manifests pin). */
  readonly fleetHash: string
  /** Verified rollout manifest per channel; channels whose manifest failed are absent. */
  readonly rollouts: ReadonlyMap<string, RolloutManifest>
}

/**
 * The rollout policy of a channel: `fleet.channels[channel].rolloutPolicy` names it in
 * `fleet.rolloutPolicies`. `undefined` when the channel or the policy is unknown.
 *
 * @since 0.1.0
 */
export const resolvePolicy = (set: ManifestSet, channel: string): RolloutPolicy | undefined => {
  const channels: Readonly<Record<string, FleetResolved["channels"][string] | undefined>> = set.fleet.channels
  const entry = Object.hasOwn(channels, channel) ? channels[channel] : undefined
  if (entry === undefined) return undefined
  const policies: Readonly<Record<string, RolloutPolicy | undefined>> = set.fleet.rolloutPolicies
  return Object.hasOwn(policies, entry.rolloutPolicy) ? policies[entry.rolloutPolicy] : undefined
}
