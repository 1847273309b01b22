/**
 * A test hook, off unless `NIXFLEET_AGENT_TEST_WEDGE_REDUCER_AFTER_SECS` is set: that many
 * seconds after the process started, the reducer stops answering its `Ping` (and so every
 * input after it), as a reducer stuck in a bug would. The systemd tests use it to show that
 * the watchdog then gets the agent killed and restarted. While it is on, every Ping logs a
 * warning saying so; never set it on a host.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { WEDGE_REDUCER as KEY, wedgeGate } from "../../config/testGates.js"

/** When this process started, in epoch milliseconds. */
const PROCESS_START = Date.now() - process.uptime() * 1000

/** @internal */
export const wedgeOnPingForTests: Effect.Effect<void> = Effect.gen(function*() {
  // Off for 0, false, no or empty, as every test gate (a bare `=0` must not wedge at once).
  const after = Option.fromNullable(yield* wedgeGate.pipe(Effect.orElseSucceed(() => null)))
  if (Option.isNone(after)) return
  const elapsed = ((yield* Clock.currentTimeMillis) - PROCESS_START) / 1000
  if (elapsed < after.value) {
    return yield* Effect.logWarning(
      `test hook ${KEY} is on: the reducer stops answering ${after.value} s after start, and the watchdog restarts the agent`
    )
  }
  yield* Effect.logError(`test hook ${KEY}: the reducer stops answering now`)
  return yield* Effect.never
})
