/**
 * The long-poll worker: waits for dispatches, checks each one, and starts the accepted
 * ones with a `LocalActivate` carrying the closure that runs now (the rollback target).
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type { DispatchResponse } from "@nixfleet/proto"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AgentConfig } from "../config/AgentConfig.js"
import type { HostLedger } from "../runtime/HostLedger.js"
import { Reducer } from "../runtime/Reducer.js"
import { ReducerInput } from "../runtime/ReducerInput.js"
import { type Shutdown, untilShutdown } from "../runtime/Shutdown.js"
import { forkWorker } from "../runtime/Workers.js"
import { currentClosure } from "../support/closureLinks.js"
import { ControlPlaneClient } from "./ControlPlaneClient.js"
import { checkDispatch } from "./DispatchChecks.js"
import type { ManifestCache } from "./ManifestCache.js"
import { retryControlPlane } from "./retry.js"

/** The control plane parks a poll for up to this long. */
const WAIT_SECS = 60
/**
 * The shortest time between two polls. A control plane answers 204 at once when it has no
 * database; without a floor the agent would poll in a tight loop.
 */
const MIN_POLL_INTERVAL_MS = 1000

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

/**
 * Checks a dispatch and, when it passes, feeds the reducer its `LocalActivate`.
 *
 * @since 0.1.0
 */
export const handleDispatch = (dispatch: DispatchResponse) =>
  Effect.gen(function*() {
    const config = yield* AgentConfig
    const reducer = yield* Reducer
    const accepted = yield* Effect.either(checkDispatch(dispatch, config.machineId))
    if (accepted._tag === "Left") return
    const running = yield* currentClosure(config.currentSystemPath)
    yield* Effect.logInfo("dispatch accepted").pipe(
      Effect.annotateLogs({ targetClosure: accepted.right.targetClosure, running: running ?? "unknown" })
    )
    yield* reducer.offer(ReducerInput.HostEvent({
      rolloutId: accepted.right.rolloutId,
      waveIndex: accepted.right.waveIndex,
      event: {
        _tag: "LocalActivate",
        // The live closure, not the target (the reference agent sent the target): this is the rollback target.
        currentClosureAtDispatch: running ?? "",
        targetClosure: accepted.right.targetClosure,
        receivedAt: yield* now,
        soakDueAt: accepted.right.soakDueAt,
        seq: 0
      }
    }))
  }).pipe(Effect.annotateLogs({ rolloutId: dispatch.rolloutId }))

/**
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  never,
  never,
  AgentConfig | ControlPlaneClient | ManifestCache | HostLedger | Reducer | Shutdown | FileSystem.FileSystem
> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const client = yield* ControlPlaneClient
    const context = yield* Effect.context<
      AgentConfig | ControlPlaneClient | ManifestCache | HostLedger | Reducer | FileSystem.FileSystem
    >()
    const poll = Effect.zip(
      Clock.currentTimeMillis,
      retryControlPlane("dispatch long-poll", client.dispatch(WAIT_SECS))
    )
    // A dispatch is handled to the end; the poll's start goes on to the floor between polls.
    const handle = ([started, dispatch]: readonly [number, DispatchResponse | null]) =>
      Effect.as(dispatch === null ? Effect.void : handleDispatch(dispatch), started)
    const floor = (started: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const rest = MIN_POLL_INTERVAL_MS - (now - started)
        return rest > 0 ? Effect.sleep(rest) : Effect.void
      })
    yield* forkWorker("Longpoll", untilShutdown(poll, handle, { pause: floor }).pipe(Effect.provide(context)))
  })
)
