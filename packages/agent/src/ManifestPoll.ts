/**
 * The manifest poll (every 30 s, the first at once): the verified fleet and, per channel,
 * the verified rollout manifest bound to it, handed to the reducer as its policy cache.
 *
 * @since 0.1.0
 */
import { RolloutId, type RolloutManifest } from "@nixfleet/proto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { ManifestCache } from "./ManifestCache.js"
import { Reducer } from "./Reducer.js"
import { ReducerInput } from "./ReducerInput.js"
import { type Shutdown, untilShutdown } from "./Shutdown.js"

/** @since 0.1.0 */
export const MANIFEST_POLL_INTERVAL = Duration.seconds(30)

const isRolloutId = Schema.is(RolloutId)

/**
 * One poll. A channel yields a manifest when one of its hosts has a closure; its rollout id
 * is `<channel>@<ciCommit>`; a manifest that pins another fleet snapshot is skipped.
 *
 * @since 0.1.0
 */
export const pollManifests = Effect.gen(function*() {
  const cache = yield* ManifestCache
  const reducer = yield* Reducer
  const { fleet, hash } = yield* cache.fleet
  const rollouts = new Map<string, RolloutManifest>()
  const ciCommit = fleet.meta.ciCommit
  for (const channel of Object.keys(fleet.channels)) {
    const hasClosure = Object.values(fleet.hosts).some((host) => host.channel === channel && host.closureHash !== null)
    if (!hasClosure || ciCommit === null) continue
    const rolloutId = `${channel}@${ciCommit}`
    if (!isRolloutId(rolloutId)) {
      yield* Effect.logWarning(`channel ${JSON.stringify(channel)} gives an invalid rollout id; skipped`)
      continue
    }
    const manifest = yield* Effect.either(cache.rollout(rolloutId))
    if (manifest._tag === "Left") {
      yield* Effect.logWarning(`rollout manifest ${rolloutId} unavailable; channel skipped`).pipe(
        Effect.annotateLogs("reason", manifest.left.message)
      )
      continue
    }
    if (manifest.right.fleetResolvedHash !== hash) {
      yield* Effect.logWarning(`rollout manifest ${rolloutId} pins a different fleet snapshot; channel skipped`)
      continue
    }
    rollouts.set(channel, manifest.right)
  }
  yield* reducer.offer(ReducerInput.ManifestSetUpdated({ set: { fleet, fleetHash: hash, rollouts } }))
}).pipe(Effect.withSpan("ManifestPoll.poll"))

/**
 * @since 0.1.0
 */
export const ManifestPoll: Layer.Layer<never, never, ManifestCache | Reducer | Shutdown> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const context = yield* Effect.context<ManifestCache | Reducer>()
    const poll = pollManifests.pipe(
      Effect.catchAll((error) =>
        Effect.logWarning("manifest poll failed; keeping the previous policy cache").pipe(
          Effect.annotateLogs("reason", error.message)
        )
      ),
      Effect.provide(context)
    )
    let first = true
    const next = Effect.suspend(() => {
      const wait = first ? Effect.void : Effect.sleep(MANIFEST_POLL_INTERVAL)
      first = false
      return wait
    })
    yield* Effect.forkScoped(untilShutdown(next, () => poll))
  })
)
