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
 * A dispatch that passed: the verified target and the control plane's soak deadline.
 *
 * @since 0.1.0
 */
export interface AcceptedDispatch {
  readonly rolloutId: RolloutId
  readonly targetClosure: ClosureName
  readonly soakDueAt: Date
}

const isRolloutId = Schema.is(RolloutId)
const isClosureName = Schema.is(ClosureName)

/**
 * The checks, in order: the dispatch is for this host; its rollout id is well formed (it
 * becomes a URL and a cache file name); the rollout manifest verifies (signature, identity
 * `channel@channelRef`, freshness with the configured window); this host's `hostSet` entry
 * names the dispatched closure; the closure is a Nix store basename.
 *
 * @since 0.1.0
 */
export const checkDispatch = (dispatch: DispatchResponse, machineId: string) =>
  Effect.gen(function*() {
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
    return { rolloutId, targetClosure: target, soakDueAt: dispatch.soakDueAt } satisfies AcceptedDispatch
  }).pipe(
    Effect.tapError((refused) =>
      Effect.zipRight(
        Effect.logError(refused.message).pipe(
          Effect.annotateLogs({ rolloutId: dispatch.rolloutId, reason: refused.reason })
        ),
        Metric.increment(Metric.tagged(refusedDispatches, "reason", refused.reason))
      )
    ),
    Effect.withSpan("DispatchChecks.check", { attributes: { rolloutId: dispatch.rolloutId } })
  )
