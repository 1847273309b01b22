/**
 * Signed artifacts, verified: the rollout manifest a dispatch is checked against, and the
 * fleet that holds the rollout policies. Verified artifacts are cached under the state
 * directory (written atomically) so that the agent can verify without the control plane;
 * a cached copy is verified again every time it is used.
 *
 * @since 0.1.0
 */
import {
  type ArtifactVerifyError,
  FleetResolved,
  RolloutManifest,
  type RolloutManifest as RolloutManifestType,
  verifyArtifact
} from "@nixfleet/proto"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { AgentConfig } from "../config/AgentConfig.js"
import { HostLedger } from "../runtime/HostLedger.js"
import { writeFileAtomicEffect } from "../support/atomicFile.js"
import { formatParseError } from "../support/boundedJson.js"
import { readTrustFile } from "../support/trustFile.js"
import { ControlPlaneClient, type ControlPlaneError } from "./ControlPlaneClient.js"

/**
 * Why an artifact could not be obtained: the reason is the one logged with a refused
 * dispatch (and the metric label).
 *
 * @since 0.1.0
 */
export class ManifestError extends Data.TaggedError("ManifestError")<{
  readonly reason:
    | "trust-file"
    | "missing"
    | "unreachable"
    | "verify"
    | "identity"
    | "schema"
    | "fleet-mismatch"
    | "downgrade"
  readonly detail: string
}> {
  override get message(): string {
    return `${this.reason}: ${this.detail}`
  }
}

/**
 * A verified fleet and its hash (what rollout manifests pin).
 *
 * @since 0.1.0
 */
export interface VerifiedFleet {
  readonly fleet: FleetResolved
  readonly hash: string
}

/**
 * @since 0.1.0
 */
export interface ManifestCacheService {
  /** The rollout manifest of `rolloutId` (a validated id), verified now with the configured window. */
  readonly rollout: (rolloutId: string) => Effect.Effect<RolloutManifestType, ManifestError>
  /** The current fleet, fetched and verified (the cached copy when the control plane is unreachable). */
  readonly fleet: Effect.Effect<VerifiedFleet, ManifestError>
}

const readTrust = (file: string) =>
  Effect.mapError(readTrustFile(file), (detail) => new ManifestError({ reason: "trust-file", detail }))

const describeUnreachable = (error: ControlPlaneError) =>
  new ManifestError({ reason: "unreachable", detail: error.message })

/**
 * @since 0.1.0
 */
export class ManifestCache extends Context.Tag("@nixfleet/agent/ManifestCache")<ManifestCache, ManifestCacheService>() {
  static readonly layer = Layer.effect(
    ManifestCache,
    Effect.gen(function*() {
      const config = yield* AgentConfig
      const client = yield* ControlPlaneClient
      const ledger = yield* HostLedger

      /** Verifies bytes + signature with the trust file as it is now. */
      const verify = (bytes: Uint8Array, signature: Uint8Array) =>
        Effect.gen(function*() {
          const trust = yield* readTrust(config.trustFile)
          const now = new Date(yield* Clock.currentTimeMillis)
          return yield* verifyArtifact({
            bytes,
            signature,
            trust: trust.ciReleaseKey,
            now,
            freshnessWindowSecs: config.manifestFreshnessWindowSecs
          }).pipe(
            Effect.mapError((error: ArtifactVerifyError.ArtifactVerifyError) =>
              new ManifestError({ reason: "verify", detail: `${error._tag}: ${error.message}` })
            )
          )
        })

      const readCached = (file: string) =>
        Effect.promise(() =>
          Promise.all([Fs.readFile(file), Fs.readFile(`${file}.sig`)]).then(
            ([bytes, signature]) => ({ bytes: new Uint8Array(bytes), signature: new Uint8Array(signature) }),
            () => null
          )
        )

      const writeCached = (file: string, bytes: Uint8Array, signature: Uint8Array) =>
        Effect.zipRight(writeFileAtomicEffect(file, bytes), writeFileAtomicEffect(`${file}.sig`, signature)).pipe(
          Effect.catchAll((error) => Effect.logWarning(`cannot cache ${file}: ${error.message}`))
        )

      /** `what` names the document in the detail; `null` for the fleet, whose refusal says it already. */
      const decode = <A, I>(schema: Schema.Schema<A, I>, json: unknown, what: string | null) =>
        Schema.decodeUnknown(schema)(json).pipe(
          Effect.mapError((error) =>
            new ManifestError({
              reason: "schema",
              detail: what === null ? formatParseError(error) : `${what}: ${formatParseError(error)}`
            })
          )
        )

      const checkedRollout = (rolloutId: string, bytes: Uint8Array, signature: Uint8Array) =>
        Effect.gen(function*() {
          const verified = yield* verify(bytes, signature)
          const manifest = yield* decode(RolloutManifest, verified.json, "rollout manifest")
          // The manifest must be the one asked for: a valid manifest of another rollout is not.
          const identity = `${manifest.channel}@${manifest.channelRef}`
          if (identity !== rolloutId) {
            return yield* new ManifestError({ reason: "identity", detail: `manifest is ${identity}, not ${rolloutId}` })
          }
          return manifest
        })

      const rollout = Effect.fn("ManifestCache.rollout")(function*(rolloutId: string) {
        yield* Effect.annotateCurrentSpan("rolloutId", rolloutId)
        const file = Path.join(config.stateDir, "rollouts", `${rolloutId}.json`)
        const cached = yield* readCached(file)
        if (cached !== null) {
          const fromCache = yield* Effect.either(checkedRollout(rolloutId, cached.bytes, cached.signature))
          if (fromCache._tag === "Right") return fromCache.right
          yield* Effect.logInfo(`cached manifest no longer verifies (${fromCache.left.message}); fetching`)
        }
        const fetched = yield* client.rolloutManifest(rolloutId).pipe(Effect.mapError(describeUnreachable))
        if (fetched === null) {
          return yield* new ManifestError({
            reason: "missing",
            detail: `the control plane has no manifest ${rolloutId}`
          })
        }
        const manifest = yield* checkedRollout(rolloutId, fetched.bytes, fetched.signature)
        yield* writeCached(file, fetched.bytes, fetched.signature)
        return manifest
      })

      const fleetFile = Path.join(config.stateDir, "fleet", "fleet.resolved.json")
      const checkedFleet = (bytes: Uint8Array, signature: Uint8Array) =>
        Effect.gen(function*() {
          const verified = yield* verify(bytes, signature)
          const fleet = yield* decode(FleetResolved, verified.json, null)
          // An older fleet, however fresh, would bring back older rollout policies.
          const signedAt = fleet.meta.signedAt
          const newest = yield* ledger.newestFleet
          if (signedAt !== null && newest !== undefined && signedAt.getTime() < newest.signedAt.getTime()) {
            return yield* new ManifestError({
              reason: "downgrade",
              detail:
                `signed at ${signedAt.toISOString()}, older than the one accepted (${newest.signedAt.toISOString()})`
            })
          }
          if (signedAt !== null) {
            yield* ledger.acceptFleet({ id: verified.sha256, signedAt }).pipe(
              Effect.catchAll((error) => Effect.logError(`${error.message}; an older fleet would not be refused`))
            )
          }
          return { fleet, hash: verified.sha256 }
        })

      // Fetch first: a cache-first fleet could lag the control plane by a whole freshness window.
      const fleet = Effect.gen(function*() {
        const fetched = yield* Effect.either(client.fleetResolved)
        if (fetched._tag === "Right") {
          const verified = yield* checkedFleet(fetched.right.bytes, fetched.right.signature)
          yield* writeCached(fleetFile, fetched.right.bytes, fetched.right.signature)
          return verified
        }
        const cached = yield* readCached(fleetFile)
        if (cached === null) return yield* describeUnreachable(fetched.left)
        yield* Effect.logInfo(`control plane unreachable (${fetched.left.message}); using the cached fleet`)
        return yield* checkedFleet(cached.bytes, cached.signature)
      }).pipe(Effect.withSpan("ManifestCache.fleet"))

      return { rollout, fleet }
    })
  )
}

/**
 * The cache in the state directory: `ManifestCache.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = ManifestCache.layer
