import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { type ControlPlaneError, retryAfter } from "./ControlPlaneClient.js"

/**
 * Retry delays for calls to the control plane: 1 s doubling, capped at 60 s, jittered so
 * that a fleet does not retry in step after an outage.
 *
 * @internal
 */
export const controlPlaneRetry = Schedule.exponential("1 second").pipe(
  Schedule.union(Schedule.spaced("60 seconds")),
  Schedule.jittered
)

/** A `Retry-After` longer than this is not waited out in one go. */
const MAX_RETRY_AFTER = Duration.minutes(5)

/**
 * Retries a control-plane call forever: a `Retry-After` (503 while the control plane is
 * not ready) is honoured before the backoff delay; each failure is logged.
 *
 * @internal
 */
export const retryControlPlane = <A, R>(
  what: string,
  call: Effect.Effect<A, ControlPlaneError, R>
): Effect.Effect<A, never, R> =>
  call.pipe(
    Effect.tapError((error) => {
      const wait = retryAfter(error)
      return Effect.zipRight(
        Effect.logWarning(`${what} failed; will retry`).pipe(Effect.annotateLogs("reason", error.message)),
        wait === null ? Effect.void : Effect.sleep(Duration.min(wait, MAX_RETRY_AFTER))
      )
    }),
    Effect.retry(controlPlaneRetry),
    Effect.orDieWith(() => new Error("unreachable: the retry schedule never ends"))
  )
