/**
 * The advance ticker: every 5 s the reducer sweeps its rollouts for sustained failures and
 * convergence. Tighter than the control plane's plan tick, since a failing host should be
 * rolled back quickly.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Reducer } from "./Reducer.js"
import { ReducerInput } from "./ReducerInput.js"
import { untilShutdown } from "./Shutdown.js"
import { forkWorker } from "./Workers.js"

/** @since 0.1.0 */
export const ADVANCE_TICK = "5 seconds"

/**
 * @since 0.1.0
 */
export const layer = Layer.scopedDiscard(
  Effect.gen(function*() {
    const reducer = yield* Reducer
    yield* forkWorker(
      "AdvanceTicker",
      untilShutdown(Effect.sleep(ADVANCE_TICK), () => reducer.offer(ReducerInput.AdvanceTick()))
    )
  })
)
