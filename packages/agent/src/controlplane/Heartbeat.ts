/**
 * The heartbeat worker (every 60 s) and the boot-recovery heartbeat. The control plane
 * answers with a snapshot of each rollout it holds active for this host; the reducer merges
 * them (the agent's map is a cache of the control plane's records).
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import { type HostRolloutSnapshot, RolloutId } from "@nixfleet/proto"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { AgentConfig } from "../config/AgentConfig.js"
import { Reducer } from "../runtime/Reducer.js"
import { ReducerInput } from "../runtime/ReducerInput.js"
import { type Shutdown, untilShutdown } from "../runtime/Shutdown.js"
import { forkWorker } from "../runtime/Workers.js"
import { currentClosure } from "../support/closureLinks.js"
import { ControlPlaneClient } from "./ControlPlaneClient.js"
import { retryControlPlane } from "./retry.js"

/** @since 0.1.0 */
export const HEARTBEAT_INTERVAL = Duration.seconds(60)

const isRolloutId = Schema.is(RolloutId)

/**
 * The most snapshots one answer may carry. The control plane sends one per active rollout
 * of this host, a handful at most; an answer with more is refused whole rather than merged
 * (a hostile one pinned a core and grew memory by the gigabyte with 15,000 per answer).
 *
 * @since 0.1.0
 */
export const MAX_SNAPSHOTS_PER_ANSWER = 64

/**
 * One heartbeat: `{hostname, current_closure, at}` (never a rollout id, so that the control
 * plane answers with every active record). Returns the snapshots that are usable: a
 * snapshot whose rollout id is not well formed never reaches a file name.
 *
 * @since 0.1.0
 */
export const sendHeartbeat = (timeout: Duration.DurationInput) =>
  Effect.gen(function*() {
    const config = yield* AgentConfig
    const client = yield* ControlPlaneClient
    const at = new Date(yield* Clock.currentTimeMillis)
    const current = yield* currentClosure(config.currentSystemPath)
    const answer = yield* client.heartbeat(
      { hostname: config.machineId, rolloutId: null, currentClosure: current, at },
      timeout
    )
    if (answer.replayFrom !== null) {
      yield* Effect.logWarning(
        `the control plane asks for a replay from seq ${answer.replayFrom}; snapshots will rehydrate`
      )
    }
    const snapshots = answer.response.bootstrapRollouts
    if (snapshots.length > MAX_SNAPSHOTS_PER_ANSWER) {
      yield* Effect.logError(
        `heartbeat answer refused: ${snapshots.length} snapshots, at most ${MAX_SNAPSHOTS_PER_ANSWER} are accepted`
      )
      return []
    }
    const usable: Array<HostRolloutSnapshot> = []
    for (const snapshot of snapshots) {
      if (isRolloutId(snapshot.rolloutId)) usable.push(snapshot)
      else {yield* Effect.logWarning(
          `ignoring a snapshot with an invalid rollout id ${JSON.stringify(snapshot.rolloutId)}`
        )}
    }
    return usable
  })

/**
 * Boot recovery, before any worker starts: one heartbeat (30 s, to ride out a control
 * plane's cold start), each snapshot applied to the reducer before anything else. Never
 * fatal: an agent that cannot reach the control plane starts anyway and catches up.
 *
 * @since 0.1.0
 */
export const layerBootRecovery: Layer.Layer<
  never,
  never,
  AgentConfig | ControlPlaneClient | Reducer | FileSystem.FileSystem
> = Layer.effectDiscard(
  Effect.gen(function*() {
    const reducer = yield* Reducer
    const started = yield* Clock.currentTimeMillis
    const snapshots = yield* sendHeartbeat(Duration.seconds(30)).pipe(
      Effect.tapError((error) =>
        Effect.logWarning("boot-recovery heartbeat failed; starting anyway, the heartbeat worker will retry").pipe(
          Effect.annotateLogs("reason", error.message)
        )
      ),
      Effect.orElseSucceed(() => [])
    )
    for (const snapshot of snapshots) yield* reducer.submit(ReducerInput.BootstrapHost({ snapshot }))
    yield* Effect.logInfo("boot recovery done").pipe(
      Effect.annotateLogs({ snapshots: snapshots.length, ms: (yield* Clock.currentTimeMillis) - started })
    )
  }).pipe(Effect.withSpan("BootRecovery"))
)

/**
 * The periodic heartbeat: one at once (as upstream), then every 60 s. A failed heartbeat is
 * retried with backoff rather than a minute later, so an agent that started before its
 * control plane rehydrates as soon as it answers.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  never,
  never,
  AgentConfig | ControlPlaneClient | Reducer | FileSystem.FileSystem | Shutdown
> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const reducer = yield* Reducer
    const context = yield* Effect.context<AgentConfig | ControlPlaneClient | FileSystem.FileSystem>()
    // The whole beat, retries and hand-over included, ends at shutdown.
    const beat = retryControlPlane("heartbeat", sendHeartbeat(Duration.seconds(10))).pipe(
      Effect.flatMap((snapshots) =>
        Effect.forEach(snapshots, (snapshot) => reducer.offer(ReducerInput.BootstrapHost({ snapshot })), {
          discard: true
        })
      ),
      Effect.provide(context)
    )
    yield* forkWorker(
      "Heartbeat",
      untilShutdown(beat, () => Effect.void, { pause: () => Effect.sleep(HEARTBEAT_INTERVAL) })
    )
  })
)
