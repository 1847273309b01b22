/**
 * Builds and signs the two artifacts a publish produces: a `fleet.resolved` holding the
 * published channel and hosts, and the channel's rollout manifest anchored to it.
 *
 * @since 0.1.0
 */
import {
  canonicalizeTextEither,
  FleetResolved,
  type HealthGate,
  type OnHealthFailure,
  RolloutManifest,
  type RolloutPolicy,
  sha256Hex
} from "@nixfleet/proto"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { Buffer } from "node:buffer"
import { InvalidRollout } from "./DevControlPlaneError.js"
import type { HostTarget } from "./PublishRollout.js"
import type { SigningKey } from "./Signing.js"

/**
 * Served bytes and the raw signature over their canonical form.
 *
 * @since 0.1.0
 */
export interface SignedDocument {
  readonly bytes: Uint8Array
  readonly signature: Uint8Array
}

/**
 * What {@link build} takes. `hosts` must already be sorted by hostname (byte order) and
 * free of duplicates; `soakMinutes` may be fractional.
 *
 * @since 0.1.0
 */
export interface ArtifactsInput {
  readonly channel: string
  readonly hosts: ReadonlyArray<HostTarget>
  readonly onHealthFailure: OnHealthFailure
  readonly soakMinutes: number
  readonly signedAt: Date
  readonly ciCommit: string
  /** Signs `fleet.resolved`; its public key is in the trust file. */
  readonly releaseKey: SigningKey
  /** Signs the manifest: the release key, or an untrusted one for a forged publish. */
  readonly manifestKey: SigningKey
  /** Whether hosts name their platform `platform` or, as the v0.2 reference, `system`. */
  readonly platformKey: "platform" | "system"
}

/**
 * @since 0.1.0
 */
export interface RolloutArtifacts {
  readonly rolloutId: string
  readonly fleet: SignedDocument
  /** `sha256Hex` of the canonical fleet: the manifest's `fleetResolvedHash`. */
  readonly fleetResolvedHash: string
  readonly manifest: SignedDocument
  /** The channel's policy, as `step` receives it for this rollout's records. */
  readonly policy: RolloutPolicy
}

/** The signed policy carries no gate: the dev control plane gates nothing itself. */
const NO_GATE: HealthGate = { systemdFailedUnits: null }

/**
 * Encodes a typed artifact, serves it pretty-printed (so that an agent which hashed or
 * verified the raw bytes instead of their canonical form would fail) and signs the
 * canonical form of exactly those bytes.
 */
const sign = <A, I>(
  schema: Schema.Schema<A, I>,
  value: A,
  key: SigningKey
): Either.Either<{ readonly document: SignedDocument; readonly canonical: string }, InvalidRollout> =>
  Schema.encodeEither(schema)(value).pipe(
    Either.mapLeft((error) => new InvalidRollout({ reason: ParseResult.TreeFormatter.formatErrorSync(error) })),
    Either.flatMap((json) => {
      const text = `${JSON.stringify(json, null, 2)}\n`
      return canonicalizeTextEither(text).pipe(
        Either.mapLeft((error) => new InvalidRollout({ reason: error.message })),
        Either.map((canonical) => ({
          document: { bytes: new Uint8Array(Buffer.from(text, "utf8")), signature: key.sign(canonical) },
          canonical
        }))
      )
    })
  )

/**
 * Serves `text` as it is (whatever it holds) and signs its canonical form with `key`: a
 * document that verifies and then fails whatever check it was crafted for.
 *
 * @since 0.1.0
 */
export const signText = (text: string, key: SigningKey): Either.Either<SignedDocument, InvalidRollout> =>
  canonicalizeTextEither(text).pipe(
    Either.mapLeft((error) => new InvalidRollout({ reason: error.message })),
    Either.map((canonical) => ({ bytes: new Uint8Array(Buffer.from(text, "utf8")), signature: key.sign(canonical) }))
  )

/**
 * Builds `fleet.resolved` (one channel named after the publish, whose policy of the same
 * name has one wave per host, hosts with `closureHash = targetClosure` and their `pubkey`, if any) and
 * the manifest `channel@ciCommit` whose `hostSet` follows the waves. Wave soak times are
 * whole minutes on the wire (`u32`), so a fractional soak is rounded up there; the exact
 * deadline travels in the dispatch's `soak_due_at`.
 *
 * @since 0.1.0
 */
export const build = (input: ArtifactsInput): Either.Either<RolloutArtifacts, InvalidRollout> => {
  const wireSoak = Math.ceil(input.soakMinutes)
  const hostnames = input.hosts.map((host) => host.hostname)
  const policy: RolloutPolicy = {
    strategy: "all-at-once",
    waves: hostnames.map((hostname) => ({
      selector: { tags: [], tagsAny: [], hosts: [hostname], channel: null, all: false },
      soakMinutes: wireSoak
    })),
    healthGate: NO_GATE,
    onHealthFailure: input.onHealthFailure
  }
  const meta = {
    schemaVersion: 1,
    signedAt: input.signedAt,
    ciCommit: input.ciCommit,
    signatureAlgorithm: "ed25519"
  }
  const fleet: FleetResolved = {
    schemaVersion: 1,
    hosts: Object.fromEntries(input.hosts.map((host) => [host.hostname, {
      platform: "x86_64-linux",
      ...(input.platformKey === "system" ? { platformKey: "system" as const } : {}),
      tags: [],
      channel: input.channel,
      closureHash: host.targetClosure,
      pubkey: host.pubkey ?? null,
      pin: null
    }])),
    channels: {
      [input.channel]: {
        rolloutPolicy: input.channel,
        reconcileIntervalMinutes: 30,
        freshnessWindow: 60,
        signingIntervalMinutes: 60
      }
    },
    rolloutPolicies: { [input.channel]: policy },
    waves: { [input.channel]: hostnames.map((hostname) => ({ hosts: [hostname], soakMinutes: wireSoak })) },
    edges: [],
    channelEdges: [],
    disruptionBudgets: [],
    meta
  }
  return Either.gen(function*() {
    const signedFleet = yield* sign(FleetResolved, fleet, input.releaseKey)
    const fleetResolvedHash = sha256Hex(signedFleet.canonical)
    const manifest: RolloutManifest = {
      schemaVersion: 1,
      displayName: `${input.channel}@${input.ciCommit.slice(0, 8)}`,
      channel: input.channel,
      channelRef: input.ciCommit,
      fleetResolvedHash,
      hostSet: input.hosts.map((host, waveIndex) => ({
        hostname: host.hostname,
        waveIndex,
        targetClosure: host.targetClosure
      })),
      healthGate: NO_GATE,
      disruptionBudgets: [],
      meta
    }
    const signedManifest = yield* sign(RolloutManifest, manifest, input.manifestKey)
    return {
      rolloutId: `${input.channel}@${input.ciCommit}`,
      fleet: signedFleet.document,
      fleetResolvedHash,
      manifest: signedManifest.document,
      policy
    }
  })
}
