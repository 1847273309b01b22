/**
 * `fleet.resolved.json`: the signed fleet snapshot CI produces from the Nix fleet
 * definition.
 *
 * Which optional fields are omitted and which are written as `null` follows the Rust
 * types exactly, so that re-encoding a decoded document yields the same canonical (JCS)
 * bytes: plain `Option`s (`closureHash`, `pubkey`, `Selector.channel`, `Edge.reason`,
 * `maxInFlight`, ...) are written as `null`, `#[serde(default)]` collections and flags are
 * always written, and only `Host.pin`, `Pin.expiresAt`, `HealthGate.systemdFailedUnits`
 * and `meta.signatureAlgorithm` are omitted when absent. Fields the Rust types ignore
 * (such as the emitter's `effectiveHealthChecks` or selector `and`/`not`) are dropped on
 * decode; signatures are always checked over the raw bytes, never over a re-encoding. A
 * host's platform is read under either of its upstream keys (`system`, `platform`) and
 * written back under the key it was read from.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Record from "effect/Record"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import { ArtifactMeta } from "./ArtifactMeta.js"
import { JsonRecord } from "./JsonRecord.js"
import { U32 } from "./Numbers.js"
import { nullWhenAbsent, omittedWhenNull, withDefault } from "./Optional.js"
import { OnHealthFailure } from "./Probe.js"
import { Timestamp } from "./Timestamp.js"

const exactOptionalString = Schema.optionalWith(Schema.String, { exact: true })

/**
 * An operator's commit pin, already filtered for expiry when the fleet was evaluated.
 * `expiresAt` is omitted when the pin does not expire.
 *
 * @since 0.1.0
 */
export const Pin = Schema.Struct({
  commit: Schema.String,
  reason: Schema.String,
  expiresAt: omittedWhenNull(Timestamp)
}).annotations({ identifier: "Pin" })
/** @since 0.1.0 */
export type Pin = typeof Pin.Type

const HostFields = Schema.Struct({
  platform: Schema.String,
  platformKey: Schema.optionalWith(Schema.Literal("system"), { exact: true }),
  tags: Schema.Array(Schema.String),
  channel: Schema.String,
  closureHash: nullWhenAbsent(Schema.String),
  pubkey: nullWhenAbsent(Schema.String),
  pin: omittedWhenNull(Pin)
})

/** A host object as it is on the wire: its platform under either key, the other fields as they are. */
const HostWire = Schema.Struct(
  { platform: exactOptionalString, system: exactOptionalString },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)

/**
 * One host. Its platform is written `system` by the v0.2 reference (its Rust `Host` and
 * the Nix emitter) and `platform` by later upstream code; either key is read (the value
 * decides nothing here), both at once is a duplicate field, neither a missing one. In
 * memory the value is `platform`, and `platformKey: "system"` remembers that the wire said
 * `system`, so that encoding writes the key that was read. `closureHash` is the basename
 * of the host's closure (`null` when nothing is built for it) and `pubkey` its OpenSSH
 * host key line; both are written as `null` when unset. `pin` is omitted when there is none.
 *
 * @since 0.1.0
 */
export const Host = Schema.transformOrFail(HostWire, HostFields, {
  // Not strict: the wire side is an open object whose other fields HostFields decodes.
  strict: false,
  decode: (wire, _, ast) => {
    const { platform, platformKey: _ignored, system, ...rest } = wire
    if (platform !== undefined && system !== undefined) {
      return ParseResult.fail(
        new ParseResult.Type(
          ast,
          wire,
          "duplicate field `system` (the platform given both as \"system\" and as \"platform\")"
        )
      )
    }
    if (system !== undefined) return ParseResult.succeed({ ...rest, platform: system, platformKey: "system" })
    if (platform !== undefined) return ParseResult.succeed({ ...rest, platform })
    return ParseResult.fail(new ParseResult.Type(ast, wire, "missing field `system` (or its later name \"platform\")"))
  },
  encode: (fields) => {
    const { platform, platformKey, ...rest } = fields
    return ParseResult.succeed(platformKey === "system" ? { ...rest, system: platform } : { ...rest, platform })
  }
}).annotations({ identifier: "Host" })
/** @since 0.1.0 */
export type Host = typeof Host.Type

/**
 * A release channel. `freshnessWindow` is in minutes despite its name; the agent's own
 * artifact freshness check uses a separate window in seconds.
 *
 * @since 0.1.0
 */
export const Channel = Schema.Struct({
  rolloutPolicy: Schema.String,
  reconcileIntervalMinutes: U32,
  freshnessWindow: U32,
  signingIntervalMinutes: U32
}).annotations({ identifier: "Channel" })
/** @since 0.1.0 */
export type Channel = typeof Channel.Type

/**
 * Which hosts a wave or budget applies to: a host matches when any rule fires (`all`, the
 * host listed in `hosts`, `channel` equal, every tag of `tags`, any tag of `tagsAny`).
 * Every field is `#[serde(default)]` and always written; `channel` is written as `null`
 * when unset.
 *
 * @since 0.1.0
 */
export const Selector = Schema.Struct({
  tags: withDefault(Schema.Array(Schema.String), () => []),
  tagsAny: withDefault(Schema.Array(Schema.String), () => []),
  hosts: withDefault(Schema.Array(Schema.String), () => []),
  channel: nullWhenAbsent(Schema.String),
  all: withDefault(Schema.Boolean, () => false)
}).annotations({ identifier: "Selector" })
/** @since 0.1.0 */
export type Selector = typeof Selector.Type

/** @since 0.1.0 */
export const SystemdFailedUnits = Schema.Struct({
  max: U32
}).annotations({ identifier: "SystemdFailedUnits" })
/** @since 0.1.0 */
export type SystemdFailedUnits = typeof SystemdFailedUnits.Type

/**
 * A policy's health gate. The Nix producer writes `{}` for a gate without constraints, so
 * `systemdFailedUnits` is omitted (not `null`) when unset.
 *
 * @since 0.1.0
 */
export const HealthGate = Schema.Struct({
  systemdFailedUnits: omittedWhenNull(SystemdFailedUnits)
}).annotations({ identifier: "HealthGate" })
/** @since 0.1.0 */
export type HealthGate = typeof HealthGate.Type

/** @since 0.1.0 */
export const PolicyWave = Schema.Struct({
  selector: Selector,
  soakMinutes: U32
}).annotations({ identifier: "PolicyWave" })
/** @since 0.1.0 */
export type PolicyWave = typeof PolicyWave.Type

/**
 * A named rollout policy. Its decoded value is what the state machine's `step` takes as
 * `policy`. `healthGate` defaults to the empty gate when absent.
 *
 * @since 0.1.0
 */
export const RolloutPolicy = Schema.Struct({
  strategy: Schema.String,
  waves: Schema.Array(PolicyWave),
  healthGate: withDefault(HealthGate, () => ({ systemdFailedUnits: null })),
  onHealthFailure: OnHealthFailure
}).annotations({ identifier: "RolloutPolicy" })
/** @since 0.1.0 */
export type RolloutPolicy = typeof RolloutPolicy.Type

/**
 * The hosts of one wave of a channel, in order, with the wave's soak time.
 *
 * @since 0.1.0
 */
export const Wave = Schema.Struct({
  hosts: Schema.Array(Schema.String),
  soakMinutes: U32
}).annotations({ identifier: "Wave" })
/** @since 0.1.0 */
export type Wave = typeof Wave.Type

/**
 * Within-channel ordering: `gated` is dispatched only once `gates` has reached a
 * terminal-for-ordering state in the same rollout. No legacy aliases here (the `before`/`after`
 * rename was a hard cutover for host edges).
 *
 * @since 0.1.0
 */
export const Edge = Schema.Struct({
  gated: Schema.String,
  gates: Schema.String,
  reason: nullWhenAbsent(Schema.String)
}).annotations({ identifier: "Edge" })
/** @since 0.1.0 */
export type Edge = typeof Edge.Type

/** A channel edge as it may appear on the wire: either key of each serde alias pair. */
const ChannelEdgeWire = Schema.Struct({
  gates: exactOptionalString,
  before: exactOptionalString,
  gated: exactOptionalString,
  after: exactOptionalString,
  reason: nullWhenAbsent(Schema.String)
})

/**
 * Resolves one serde `#[serde(alias)]` pair the way serde does: either key is accepted,
 * both at once is a duplicate field, neither is a missing field.
 */
const aliased = (
  ast: SchemaAST.AST,
  wire: typeof ChannelEdgeWire.Type,
  name: "gates" | "gated",
  alias: "before" | "after"
): Either.Either<string, ParseResult.ParseIssue> => {
  const current = wire[name]
  const legacy = wire[alias]
  if (current !== undefined && legacy !== undefined) {
    return ParseResult.fail(
      new ParseResult.Type(ast, wire, `duplicate field \`${name}\` (given both as "${name}" and as "${alias}")`)
    )
  }
  const value = current ?? legacy
  return value === undefined
    ? ParseResult.fail(new ParseResult.Type(ast, wire, `missing field \`${name}\` (or its alias "${alias}")`))
    : ParseResult.succeed(value)
}

/**
 * Cross-channel ordering: no new rollout opens on `gated` until the latest rollout of
 * `gates` has converged. Pre-rename artifacts say `before` (for `gates`) and `after` (for
 * `gated`); both spellings are read, as with serde's `alias`, but encoding always writes
 * `gates`/`gated`, which is also what the Rust type re-serialises to. Signatures are
 * checked over the raw bytes, so a legacy artifact still verifies.
 *
 * @since 0.1.0
 */
export const ChannelEdge = Schema.transformOrFail(
  ChannelEdgeWire,
  Schema.Struct({ gates: Schema.String, gated: Schema.String, reason: Schema.NullOr(Schema.String) }),
  {
    strict: true,
    decode: (wire, _, ast) =>
      Either.all({
        gates: aliased(ast, wire, "gates", "before"),
        gated: aliased(ast, wire, "gated", "after"),
        reason: Either.right(wire.reason)
      }),
    encode: (edge) => ParseResult.succeed({ gates: edge.gates, gated: edge.gated, reason: edge.reason })
  }
).annotations({ identifier: "ChannelEdge" })
/** @since 0.1.0 */
export type ChannelEdge = typeof ChannelEdge.Type

/**
 * A fleet-wide limit on hosts in flight, by count and/or percentage (`null` = no limit of
 * that kind, written as `null`).
 *
 * @since 0.1.0
 */
export const DisruptionBudget = Schema.Struct({
  selector: Selector,
  maxInFlight: nullWhenAbsent(U32),
  maxInFlightPct: nullWhenAbsent(U32)
}).annotations({ identifier: "DisruptionBudget" })
/** @since 0.1.0 */
export type DisruptionBudget = typeof DisruptionBudget.Type

const RolloutPolicies = JsonRecord(RolloutPolicy)

/**
 * The whole signed fleet snapshot. `rolloutPolicies`, `edges`, `channelEdges` and
 * `disruptionBudgets` default to empty when absent and are always written.
 *
 * @since 0.1.0
 */
export const FleetResolved = Schema.Struct({
  schemaVersion: U32,
  hosts: JsonRecord(Host),
  channels: JsonRecord(Channel),
  rolloutPolicies: withDefault(RolloutPolicies, (): typeof RolloutPolicies.Type => ({})),
  waves: JsonRecord(Schema.Array(Wave)),
  edges: withDefault(Schema.Array(Edge), () => []),
  channelEdges: withDefault(Schema.Array(ChannelEdge), () => []),
  disruptionBudgets: withDefault(Schema.Array(DisruptionBudget), () => []),
  meta: ArtifactMeta
}).annotations({ identifier: "FleetResolved" })
/** @since 0.1.0 */
export type FleetResolved = typeof FleetResolved.Type

/**
 * The wave an `all-at-once` policy without waves is given after verification: every host,
 * no soak.
 *
 * @since 0.1.0
 */
export const implicitAllAtOnceWave: PolicyWave = {
  selector: { tags: [], tagsAny: [], hosts: [], channel: null, all: true },
  soakMinutes: 0
}

/**
 * The post-verify normalisation of a policy: an `all-at-once` policy with no waves gets
 * the single implicit wave `{selector: {all: true}, soakMinutes: 0}`. In memory only: the
 * signed bytes are never rewritten. Any other policy is returned unchanged.
 *
 * @since 0.1.0
 */
export const normalizeRolloutPolicy = (policy: RolloutPolicy): RolloutPolicy =>
  policy.strategy === "all-at-once" && policy.waves.length === 0
    ? { ...policy, waves: [implicitAllAtOnceWave] }
    : policy

/**
 * Applies {@link normalizeRolloutPolicy} to every policy of a verified fleet snapshot.
 *
 * @since 0.1.0
 */
export const normalizeFleetResolved = (fleet: FleetResolved): FleetResolved => ({
  ...fleet,
  rolloutPolicies: Record.map(fleet.rolloutPolicies, normalizeRolloutPolicy)
})
