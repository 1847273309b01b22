/**
 * Firing the switch, detached from the agent so that an agent restart (or a switch that
 * restarts the agent) never kills it, and watching it so that a switch that dies is seen
 * at once instead of after the whole verify budget.
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { display, run } from "../internal/pipeline/subprocess.js"
import type { SwitchMethod } from "../PipelineConfig.js"

/**
 * The transient units of the two switches (fixed names: operators and the reference agent
 * know them).
 *
 * @since 0.1.0
 */
export type SwitchUnit = "nixfleet-switch" | "nixfleet-rollback"

/**
 * The fire step failed before the switch ran: `phase` names the step, `exitCode` is the
 * failing command's code when it has one.
 *
 * @since 0.1.0
 */
export class FireFailed extends Data.TaggedError("FireFailed")<{
  readonly phase: string
  readonly exitCode: number | null
  readonly detail: string
}> {}

/**
 * A fired switch.
 *
 * @since 0.1.0
 */
export interface FiredSwitch {
  /** Completes when the switch has ended, with its exit code (null when it cannot be known). */
  readonly ended: Effect.Effect<number | null, never, CommandExecutor.CommandExecutor>
  /** The switch's exit status as far as it can be read after a timeout (null when unknown). */
  readonly exitStatus: Effect.Effect<number | null, never, CommandExecutor.CommandExecutor>
  /** Stops the switch if it still runs (before a rollback replaces it). */
  readonly stop: Effect.Effect<void, never, CommandExecutor.CommandExecutor>
}

/**
 * `systemd-run` with a named transient service: `--unit` (never `--scope` or `--pipe
 * --wait`, which keep the switch in the agent's cgroup, where the agent's stop would kill
 * it) and `--collect` so the unit does not linger.
 *
 * @since 0.1.0
 */
export const systemdRunArgv = (unit: SwitchUnit, storePath: string): readonly [string, ...Array<string>] => [
  "systemd-run",
  `--unit=${unit}`,
  "--collect",
  "--",
  `${storePath}/bin/switch-to-configuration`,
  "switch"
]

/**
 * What `systemctl show` says about a unit.
 *
 * @since 0.1.0
 */
export interface UnitState {
  readonly loadState: string
  readonly activeState: string
  readonly subState: string
  readonly result: string
  readonly execMainStatus: number | null
}

/** @since 0.1.0 */
export const UNIT_PROPERTIES = "LoadState,ActiveState,SubState,Result,ExecMainStatus"

/**
 * Parses `systemctl show --property=LoadState,ActiveState,SubState,Result,ExecMainStatus`.
 *
 * @since 0.1.0
 */
export const parseUnitState = (text: string): UnitState => {
  const fields = new Map<string, string>()
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=")
    if (eq > 0) fields.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim())
  }
  const status = fields.get("ExecMainStatus")
  return {
    loadState: fields.get("LoadState") ?? "",
    activeState: fields.get("ActiveState") ?? "",
    subState: fields.get("SubState") ?? "",
    result: fields.get("Result") ?? "",
    execMainStatus: status !== undefined && /^\d+$/.test(status) ? Number(status) : null
  }
}

/**
 * Whether the unit's process has ended: it is inactive or failed, or it was collected
 * (`--collect` unloads it as soon as it ends). While it starts or runs, no.
 *
 * @since 0.1.0
 */
export const unitEnded = (state: UnitState): boolean =>
  state.loadState === "not-found" || state.activeState === "inactive" || state.activeState === "failed"

/**
 * The exit status to report for an ended unit: its main process's status if the unit is
 * still loaded, else unknown (a collected unit's status is gone, and `systemctl show`
 * then prints a default that must not be mistaken for success).
 *
 * @since 0.1.0
 */
export const unitExitStatus = (state: UnitState): number | null =>
  state.loadState === "loaded" ? state.execMainStatus : null

/** How often the unit's state is read while the switch runs. */
const UNIT_POLL = "500 millis"

const showUnit = (unit: SwitchUnit) =>
  run(["systemctl", "show", `--property=${UNIT_PROPERTIES}`, `${unit}.service`], { timeout: "10 seconds" }).pipe(
    Effect.map((done) => parseUnitState(done.stdout)),
    Effect.option
  )

const fireSystemd = (unit: SwitchUnit, storePath: string) =>
  Effect.gen(function*() {
    // A failed unit of the same name from an earlier run would make systemd-run refuse.
    yield* Effect.ignore(run(["systemctl", "reset-failed", `${unit}.service`], { timeout: "10 seconds" }))
    const argv = systemdRunArgv(unit, storePath)
    const done = yield* run(argv, { timeout: "60 seconds" }).pipe(
      Effect.mapError((error) =>
        new FireFailed({
          phase: "systemd-run-fire",
          exitCode: null,
          detail: error._tag === "SpawnFailed" ? `spawn ${display(argv)}: ${error.detail}` : "systemd-run timed out"
        })
      )
    )
    if (done.exitCode !== 0) {
      return yield* new FireFailed({ phase: "systemd-run-fire", exitCode: done.exitCode, detail: done.stderr.trim() })
    }
    // Polled only while someone waits for the end (verify races it and stops it).
    const ended = Effect.gen(function*() {
      while (true) {
        const state = yield* showUnit(unit)
        if (state._tag === "Some" && unitEnded(state.value)) return unitExitStatus(state.value)
        yield* Effect.sleep(UNIT_POLL)
      }
    })
    return {
      ended,
      exitStatus: Effect.map(showUnit(unit), (state) => state._tag === "Some" ? unitExitStatus(state.value) : null),
      stop: Effect.ignore(run(["systemctl", "stop", `${unit}.service`], { timeout: "60 seconds" }))
    } satisfies FiredSwitch
  })

/**
 * Starts `argv` as a detached child in its own session (so neither the agent's stop nor a
 * restart of its service reaches it), stdin closed, stdout and stderr appended to `log`.
 * This is the one subprocess not run through `Command`: it must outlive the agent and
 * write to a file descriptor, where `Command` scopes children and pipes their output.
 */
const spawnDetached = (argv: readonly [string, ...Array<string>], log: string, phase: string) =>
  Effect.gen(function*() {
    const ended = yield* Deferred.make<number | null>()
    const child = yield* Effect.async<ChildProcess.ChildProcess, FireFailed>((resume) => {
      let fd: number
      try {
        fd = Fs.openSync(log, "a", 0o600)
        Fs.writeSync(fd, `=== ${new Date().toISOString()} ${display(argv)}\n`)
      } catch (error) {
        resume(Effect.fail(new FireFailed({ phase, exitCode: null, detail: `cannot open ${log}: ${String(error)}` })))
        return
      }
      const [command, ...args] = argv
      const spawned = ChildProcess.spawn(command, args, { detached: true, stdio: ["ignore", fd, fd] })
      Fs.closeSync(fd)
      spawned.once(
        "error",
        (error) =>
          resume(
            Effect.fail(new FireFailed({ phase, exitCode: null, detail: `spawn ${display(argv)}: ${error.message}` }))
          )
      )
      spawned.once("spawn", () => {
        spawned.unref()
        resume(Effect.succeed(spawned))
      })
      spawned.once("exit", (code) => Deferred.unsafeDone(ended, Effect.succeed(code)))
    })
    return {
      ended: Deferred.await(ended),
      exitStatus: Effect.flatMap(Deferred.isDone(ended), (done) => done ? Deferred.await(ended) : Effect.succeed(null)),
      stop: Effect.sync(() => {
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(-child.pid, "SIGTERM")
          } catch {
            // Already gone: nothing to stop.
          }
        }
      })
    } satisfies FiredSwitch
  })

/**
 * Fires `<storePath>/bin/switch-to-configuration switch` with the configured method.
 *
 * @since 0.1.0
 */
export const fire = (args: {
  readonly method: SwitchMethod
  readonly unit: SwitchUnit
  readonly storePath: string
  readonly stateDir: string
}) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const log = path.join(args.stateDir, "switch.log")
    switch (args.method) {
      case "systemd-run":
        return yield* fireSystemd(args.unit, args.storePath)
      case "direct":
        return yield* spawnDetached([`${args.storePath}/bin/switch-to-configuration`, "switch"], log, "direct-fire")
      case "darwin": {
        // Legacy closures still carry activate-user; modern ones do not. Its failure is not fatal.
        const activateUser = `${args.storePath}/activate-user`
        if (yield* fs.exists(activateUser).pipe(Effect.orElseSucceed(() => false))) {
          yield* spawnDetached([activateUser], log, "darwin-activate-spawn").pipe(
            Effect.catchAll((error) => Effect.logWarning(`activate-user did not start: ${error.detail}`))
          )
        }
        const activate = `${args.storePath}/activate`
        if (
          args.unit === "nixfleet-rollback" && !(yield* fs.exists(activate).pipe(Effect.orElseSucceed(() => false)))
        ) {
          return yield* new FireFailed({
            phase: "darwin-activate-missing",
            exitCode: null,
            detail: `${activate} missing`
          })
        }
        return yield* spawnDetached([activate], log, "darwin-activate-spawn")
      }
    }
  }).pipe(Effect.withSpan("ActivationPipeline.fire"), Effect.annotateLogs("phase", "fire"))

/**
 * `<storePath>/bin/switch-to-configuration boot`, in the foreground: makes the new
 * generation the boot default (`nix-env --set` alone writes no boot entry).
 *
 * @since 0.1.0
 */
export const installBootEntry = (storePath: string) =>
  Effect.gen(function*() {
    const argv = [`${storePath}/bin/switch-to-configuration`, "boot"] as const
    const done = yield* run(argv, { timeout: "30 minutes" }).pipe(
      Effect.mapError((error) =>
        new FireFailed({
          phase: "defer-bootloader-update",
          exitCode: null,
          detail: error._tag === "SpawnFailed" ? `spawn ${display(argv)}: ${error.detail}` : "timed out"
        })
      )
    )
    if (done.exitCode !== 0) {
      return yield* new FireFailed({
        phase: "defer-bootloader-update",
        exitCode: done.exitCode,
        detail: done.stderr.trim()
      })
    }
  }).pipe(
    Effect.withSpan("ActivationPipeline.installBootEntry"),
    Effect.annotateLogs("phase", "defer-bootloader-update")
  )
