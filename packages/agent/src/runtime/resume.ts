/**
 * Resuming a switch or rollback that a previous run of the agent released and died in
 * (killed while realising, switching or rolling back). The host ledger says what the host
 * was told to run (target and the closure before it, or the rollback's closure); the
 * running closure says how far it got. A switch that outlived the agent is waited for
 * first, so that the host is read only once nothing moves it any more.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import type { SwitchMethod } from "../config/PipelineConfig.js"
import { parseUnitState, type SwitchUnit, UNIT_PROPERTIES, unitEnded } from "../pipeline/phases/Fire.js"
import { switchInProgress } from "../pipeline/phases/Lock.js"
import { run } from "../support/subprocess.js"

/**
 * What to do with an interrupted switch (`Complete`, `Rerun`, `Unknown`) or rollback
 * (`RolledBack`, `RollbackAgain`, `Unknown`), given the closure the host runs now.
 *
 * @internal
 */
export type ResumeDecision =
  /** The host runs the target: the switch happened; report it as the normal path would. */
  | { readonly _tag: "Complete" }
  /** The host still runs the closure before the switch: the switch never happened; run it. */
  | { readonly _tag: "Rerun" }
  /** The host runs the rollback's closure: the rollback happened. */
  | { readonly _tag: "RolledBack" }
  /** The host still runs the rollout's target: run the rollback again. */
  | { readonly _tag: "RollbackAgain" }
  /** Neither: nothing is guessed. */
  | { readonly _tag: "Unknown"; readonly reason: string }

/**
 * The decision for a switch to `target` from `previous` (rollback false), or for a
 * rollback from `target` to `previous` (rollback true); `current` null when unreadable.
 *
 * @internal
 */
export const resumeDecision = (args: {
  readonly rollback: boolean
  readonly current: string | null
  readonly target: string
  readonly previous: string | null
}): ResumeDecision => {
  const { current, previous, rollback, target } = args
  const running = current === null ? "an unreadable current system" : current
  if (!rollback) {
    if (current !== null && current === target) return { _tag: "Complete" }
    if (current !== null && previous !== null && current === previous) return { _tag: "Rerun" }
    return {
      _tag: "Unknown",
      reason: `after a restart the host runs ${running}, neither the target ${target} nor the closure it ran ` +
        `before the switch (${previous ?? "none recorded"}); not switching again`
    }
  }
  if (current !== null && previous !== null && current === previous) return { _tag: "RolledBack" }
  if (current !== null && current === target) return { _tag: "RollbackAgain" }
  return {
    _tag: "Unknown",
    reason: `after a restart the host runs ${running}, neither the rollback's closure ${
      previous ?? "(none)"
    } nor the rollout's target ${target}; not rolling back again`
  }
}

const PROC = "/proc"

/**
 * The pids (other than ours) whose command line names `<storeDir>/<closure>/bin/switch-to-configuration`
 * for one of `closures`: a switch that outlived the agent, whatever started it. Empty
 * where there is no `/proc`.
 *
 * @internal
 */
export const switchProcesses = (storeDir: string, closures: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    const needles = closures.map((closure) => `${storeDir}/${closure}/bin/switch-to-configuration`)
    const entries = await Fs.readdir(PROC).catch((): Array<string> => [])
    const found: Array<number> = []
    for (const entry of entries) {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
      const cmdline = await Fs.readFile(`${PROC}/${entry}/cmdline`, "utf8").catch(() => "")
      if (cmdline.split("\u0000").some((arg) => needles.includes(arg))) found.push(Number(entry))
    }
    return found
  })

/** Whether the transient unit of a `systemd-run` switch still runs (false when systemd cannot tell). */
const unitRunning = (unit: SwitchUnit) =>
  run(["systemctl", "show", `--property=${UNIT_PROPERTIES}`, `${unit}.service`], {
    timeout: "10 seconds",
    children: "tool"
  }).pipe(
    Effect.map((done) => done.exitCode === 0 && !unitEnded(parseUnitState(done.stdout))),
    Effect.orElseSucceed(() => false)
  )

/**
 * Where a switch that may have outlived the agent is looked for.
 *
 * @internal
 */
export interface SwitchWatch {
  readonly method: SwitchMethod
  readonly unit: SwitchUnit
  /** The closures whose `switch-to-configuration` the previous run may have fired. */
  readonly closures: ReadonlyArray<string>
  readonly storeDir: string
  readonly switchLockPath: string
}

/**
 * What still runs of a switch fired before the restart: its transient unit (`systemd-run`),
 * its process (any method), or a switch holding the switch lock. Null when nothing does.
 *
 * @internal
 */
export const switchStillRunning = (watch: SwitchWatch) =>
  Effect.gen(function*() {
    if (watch.method === "systemd-run" && (yield* unitRunning(watch.unit))) return `the unit ${watch.unit}.service`
    const pids = yield* switchProcesses(watch.storeDir, watch.closures)
    if (pids.length > 0) return `process ${pids.join(", ")}`
    if (yield* switchInProgress(watch.switchLockPath)) return `a switch holding ${watch.switchLockPath}`
    return null
  })

/** How often a switch that outlived the agent is looked at again. */
const WATCH_EVERY = Duration.millis(500)

/**
 * Waits until nothing of a switch fired before the restart runs any more, at most
 * `budget`. Returns what still runs when the budget is spent (then stopped: its unit, its
 * processes), else null.
 *
 * @internal
 */
export const awaitSwitchEnd = Effect.fn("ActivationWorker.awaitSwitchEnd")(
  function*(watch: SwitchWatch, budget: Duration.Duration) {
    const deadline = (yield* Effect.clockWith((clock) => clock.currentTimeMillis)) + Duration.toMillis(budget)
    let running = yield* switchStillRunning(watch)
    if (running === null) return null
    yield* Effect.logWarning(`a switch fired before the restart still runs (${running}); waiting for it to end`)
    while (running !== null) {
      if ((yield* Effect.clockWith((clock) => clock.currentTimeMillis)) >= deadline) {
        yield* stopSwitch(watch)
        return running
      }
      yield* Effect.sleep(WATCH_EVERY)
      running = yield* switchStillRunning(watch)
    }
    yield* Effect.logInfo("the switch fired before the restart has ended")
    return null
  }
)

const stopSwitch = (watch: SwitchWatch) =>
  Effect.gen(function*() {
    if (watch.method === "systemd-run") {
      yield* Effect.ignore(
        run(["systemctl", "stop", `${watch.unit}.service`], { timeout: "60 seconds", children: "tool" })
      )
    }
    for (const pid of yield* switchProcesses(watch.storeDir, watch.closures)) {
      yield* Effect.sync(() => {
        try {
          process.kill(pid, "SIGTERM")
        } catch {
          // Already gone.
        }
      })
    }
  })
