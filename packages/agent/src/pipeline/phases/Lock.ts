/**
 * The concurrent-switch guard: a `switch-to-configuration` in progress holds a lock on
 * the switch lock file; racing it produces spurious failures even when it succeeds.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import { run } from "../../support/subprocess.js"
import { RealiseFailed } from "../ActivationPipeline.js"

/**
 * The reason the reference agent reports, kept verbatim.
 */
export const LOCK_HELD_REASON = "switch-to-configuration lock held by another process; will retry on next tick"

/**
 * Whether a switch holds the lock: no lock file means no; otherwise a non-blocking shared
 * `flock` that fails means yes. Fail-open: if `flock` cannot run, the answer is no (with a
 * warning), as upstream.
 */
export const switchInProgress = (lockPath: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(lockPath).pipe(Effect.orElseSucceed(() => false)))) return false
    return yield* run(["flock", "--nonblock", "--shared", lockPath, "true"], {
      timeout: "10 seconds",
      children: "tool"
    }).pipe(
      Effect.map((done) => done.exitCode !== 0),
      Effect.catchAll((error) =>
        Effect.as(
          Effect.logWarning(`cannot check the switch lock (${error._tag}); assuming no switch is running`),
          false
        )
      )
    )
  })

/**
 * Fails with `RealiseFailed` (exit class -1) when a switch is in progress.
 */
export const checkSwitchLock = Effect.fn("ActivationPipeline.lock")(function*(lockPath: string) {
  if (yield* switchInProgress(lockPath)) return yield* new RealiseFailed({ phase: "lock", reason: LOCK_HELD_REASON })
})
