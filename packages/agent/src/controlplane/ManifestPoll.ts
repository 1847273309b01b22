/**
 * The manifest poll (every 30 s, the first at once): the verified fleet and, per channel,
 * the verified rollout manifest bound to it, handed to the reducer as its policy cache. A
 * refused `fleet.resolved` is never a silent hold: one ERROR line per kind of refusal
 * (naming the field and why), the refusal in `status` and `nixfleet_agent_fleet_refused`
 * until a fleet is accepted; the reducer keeps the policies it had, if any.
 *
 * @since 0.1.0
 */
import { RolloutId, type RolloutManifest } from "@nixfleet/proto"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { Reducer } from "../runtime/Reducer.js"
import { ReducerInput } from "../runtime/ReducerInput.js"
import { type Shutdown, untilShutdown } from "../runtime/Shutdown.js"
import { StatusBoard } from "../runtime/StatusBoard.js"
import { describeFleetRefused } from "../runtime/StatusBoard.js"
import { forkWorker } from "../runtime/Workers.js"
import { ManifestCache, type ManifestError } from "./ManifestCache.js"

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
 * Polls that found `fleet.resolved` refused, by `reason` (`verify`, `schema`, `downgrade`,
 * `trust-file`, …; not `unreachable`, which is no refusal).
 *
 * @since 0.1.0
 */
export const fleetRefusals = Metric.counter("nixfleet_agent_fleet_refusals_total", {
  description: "Manifest polls whose fleet.resolved was refused, by reason",
  incremental: true
})

/**
 * 1 while the last `fleet.resolved` fetched is refused, 0 once one is accepted.
 *
 * @since 0.1.0
 */
export const fleetRefused = Metric.gauge("nixfleet_agent_fleet_refused", {
  description: "1 while the last fleet.resolved fetched is refused (its reason in status and the journal), else 0"
})

/**
 * What identifies a refusal, so that it is logged once and not every 30 s: its reason and
 * detail without digits (a stale artifact's detail carries the time of the check).
 */
const refusalKind = (error: ManifestError) => `${error.reason}:${error.detail.replace(/\d+/g, "#")}`

/**
 * @since 0.1.0
 */
export const layer: Layer.Layer<never, never, ManifestCache | Reducer | Shutdown | StatusBoard> = Layer
  .scopedDiscard(
    Effect.gen(function*() {
      const context = yield* Effect.context<ManifestCache | Reducer>()
      const board = yield* StatusBoard
      // Whether the reducer has rollout policies: a fleet was accepted since the start.
      let policyCached = false
      let refusal: { readonly kind: string; readonly since: Date } | null = null

      const refused = (error: ManifestError) =>
        Effect.gen(function*() {
          yield* Metric.increment(Metric.tagged(fleetRefusals, "reason", error.reason))
          yield* Metric.set(fleetRefused, 1)
          const kind = refusalKind(error)
          if (refusal?.kind === kind) return
          const since = new Date(yield* Clock.currentTimeMillis)
          refusal = { kind, since }
          const report = { since, reason: error.reason, detail: error.detail, policyCached }
          yield* Ref.set(board.fleetRefused, report)
          // One line per kind of refusal: repeated every poll it would drown the journal.
          yield* Effect.logError(describeFleetRefused(report)).pipe(
            Effect.annotateLogs({ reason: error.reason, detail: error.detail })
          )
        })

      const accepted = Effect.gen(function*() {
        policyCached = true
        yield* Metric.set(fleetRefused, 0)
        if (refusal === null) return
        refusal = null
        yield* Ref.set(board.fleetRefused, null)
        yield* Effect.logInfo("fleet.resolved accepted again; rollout policies refreshed")
      })

      const poll = pollManifests.pipe(
        Effect.provide(context),
        Effect.zipRight(accepted),
        Effect.catchAll((error) =>
          error.reason === "unreachable"
            ? Effect.logWarning("manifest poll failed; keeping the previous policy cache").pipe(
              Effect.annotateLogs("reason", error.message)
            )
            : refused(error)
        )
      )
      yield* forkWorker(
        "ManifestPoll",
        untilShutdown(Effect.void, () => poll, { pause: () => Effect.sleep(MANIFEST_POLL_INTERVAL) })
      )
    })
  )
