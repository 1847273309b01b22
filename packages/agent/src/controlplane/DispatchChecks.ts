/**
 * What a dispatch must pass before anything is activated. A dispatch is only advice: the
 * target the agent switches to is the one the signed rollout manifest names for this host.
 *
 * @since 0.1.0
 */
import { ClosureName, type DispatchResponse, RolloutId } from "@nixfleet/proto"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import { HostLedger } from "../runtime/HostLedger.js"
import { ManifestCache } from "./ManifestCache.js"

/**
 * A refused dispatch: nothing is activated; the reason is logged and counted.
 *
 * @since 0.1.0
 */
export class DispatchRefused extends Data.TaggedError("DispatchRefused")<{
  readonly reason:
    | "wrong-hostname"
    | "invalid-rollout-id"
    | "manifest"
    | "not-in-manifest"
    | "target-mismatch"
    | "invalid-closure"
    | "downgrade"
  readonly detail: string
}> {
  override get message(): string {
    return `dispatch refused (${this.reason}): ${this.detail}`
  }
}

/**
 * Refused dispatches, by reason.
 *
 * @since 0.1.0
 */
export const refusedDispatches = Metric.counter("nixfleet_agent_dispatches_refused_total", {
  description: "Dispatches refused before activation, by reason",
  incremental: true
})

/**
 * A dispatch that passed: the verified target, this host's wave in the signed manifest,
 * and the control plane's soak deadline (unsigned: the reducer bounds it by the wave's
 * signed soak time).
 *
 * @since 0.1.0
 */
export interface AcceptedDispatch {
  readonly rolloutId: RolloutId
  readonly targetClosure: ClosureName
  readonly waveIndex: number
  readonly soakDueAt: Date
}

const isRolloutId = Schema.is(RolloutId)
const isClosureName = Schema.is(ClosureName)

/**
 * The checks, in order: the dispatch is for this host; its rollout id is well formed (it
 * becomes a URL and a cache file name); the rollout manifest verifies (signature, identity
 * `channel@channelRef`, freshness with the configured window); it is not older than the
 * newest manifest this host accepted on the channel (a replayed, still fresh manifest
 * must not take the host back); this host's `hostSet` entry names the dispatched
 * closure; the closure is a Nix store basename. The accepted manifest is then recorded
 * as the channel's newest.
 *
 * @since 0.1.0
 */
export const checkDispatch = Effect.fn("DispatchChecks.check")(
  function*(dispatch: DispatchResponse, machineId: string) {
    yield* Effect.annotateCurrentSpan("rolloutId", dispatch.rolloutId)
    if (dispatch.hostname !== machineId) {
      return yield* new DispatchRefused({
        reason: "wrong-hostname",
        detail: `dispatch for ${JSON.stringify(dispatch.hostname)}, this host is ${machineId}`
      })
    }
    const rolloutId = dispatch.rolloutId
    if (!isRolloutId(rolloutId)) {
      return yield* new DispatchRefused({ reason: "invalid-rollout-id", detail: JSON.stringify(rolloutId) })
    }
    const manifest = yield* Effect.flatMap(ManifestCache, (cache) => cache.rollout(rolloutId)).pipe(
      Effect.mapError((error) => new DispatchRefused({ reason: "manifest", detail: error.message }))
    )
    const ledger = yield* HostLedger
    const signedAt = manifest.meta.signedAt
    const newest = yield* ledger.newestManifest(manifest.channel)
    if (newest !== undefined && signedAt !== null && signedAt.getTime() < newest.signedAt.getTime()) {
      return yield* new DispatchRefused({
        reason: "downgrade",
        detail:
          `${rolloutId} was signed at ${signedAt.toISOString()}, before ${newest.id} (${newest.signedAt.toISOString()}), which this host already accepted on channel ${manifest.channel}`
      })
    }
    const entry = manifest.hostSet.find((host) => host.hostname === machineId)
    if (entry === undefined) {
      return yield* new DispatchRefused({
        reason: "not-in-manifest",
        detail: `${machineId} is not in ${rolloutId}'s hostSet`
      })
    }
    if (entry.targetClosure !== dispatch.targetClosure) {
      return yield* new DispatchRefused({
        reason: "target-mismatch",
        detail: `dispatched ${JSON.stringify(dispatch.targetClosure)}, the manifest says ${entry.targetClosure}`
      })
    }
    const target = dispatch.targetClosure
    if (!isClosureName(target)) {
      return yield* new DispatchRefused({ reason: "invalid-closure", detail: JSON.stringify(target) })
    }
    if (signedAt !== null) {
      // Not recording only weakens the protection against a later replay; the dispatch itself is sound.
      yield* ledger.acceptManifest(manifest.channel, { id: rolloutId, signedAt }).pipe(
        Effect.catchAll((error) =>
          Effect.logError(`${error.message}; a replay of an older manifest would not be refused`)
        )
      )
    }
    return {
      rolloutId,
      targetClosure: target,
      waveIndex: entry.waveIndex,
      soakDueAt: dispatch.soakDueAt
    } satisfies AcceptedDispatch
  },
  (effect, dispatch) =>
    Effect.tapError(effect, (refused) =>
      Effect.zipRight(
        Effect.logError(refused.message).pipe(
          Effect.annotateLogs({ rolloutId: dispatch.rolloutId, reason: refused.reason })
        ),
        Metric.increment(Metric.tagged(refusedDispatches, "reason", refused.reason))
      ))
)
