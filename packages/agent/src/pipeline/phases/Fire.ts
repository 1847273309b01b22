/**
 * Firing the switch, detached from the agent so that an agent restart (or a switch that
 * restarts the agent) never kills it, and watching it so that a switch that dies is seen
 * at once instead of after the whole verify budget.
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import type { SwitchMethod } from "../../config/PipelineConfig.js"
import { APPEND_NO_FOLLOW, symlinkRefused } from "../../support/atomicFile.js"
import { childEnvironment } from "../../support/childEnvironment.js"
import { errnoOf } from "../../support/describeError.js"
import { display, run } from "../../support/subprocess.js"

/**
 * The transient units of the two switches (fixed names: operators and the reference agent
 * know them).
 */
export type SwitchUnit = "nixfleet-switch" | "nixfleet-rollback"

/**
 * The fire step failed before the switch ran: `phase` names the step, `exitCode` is the
 * failing command's code when it has one.
 */
export class FireFailed extends Data.TaggedError("FireFailed")<{
  readonly phase: string
  readonly exitCode: number | null
  readonly detail: string
}> {}

/**
 * A fired switch.
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
 * `systemd-run` with a named transient service: `--unit` (never `--scope` or `--pipe`: a
 * scope keeps the switch in the agent's cgroup, where the agent's stop would kill it, and a
 * pipe ties its output to the agent) and `--collect` so the unit does not linger. `--wait`
 * makes this client, not the switch, wait for the unit and report how it ended: the unit
 * runs in its own cgroup, and a client killed with the agent leaves it running.
 */
export const systemdRunArgv = (unit: SwitchUnit, storePath: string): readonly [string, ...Array<string>] => [
  "systemd-run",
  `--unit=${unit}`,
  "--collect",
  "--wait",
  "--",
  `${storePath}/bin/switch-to-configuration`,
  "switch"
]

/**
 * What `systemctl show` says about a unit.
 */
export interface UnitState {
  readonly loadState: string
  readonly activeState: string
  readonly subState: string
  readonly result: string
  readonly execMainStatus: number | null
}

export const UNIT_PROPERTIES = "LoadState,ActiveState,SubState,Result,ExecMainStatus"

/**
 * Parses `systemctl show --property=LoadState,ActiveState,SubState,Result,ExecMainStatus`.
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
 */
export const unitEnded = (state: UnitState): boolean =>
  state.loadState === "not-found" || state.activeState === "inactive" || state.activeState === "failed"

/**
 * The exit status to report for an ended unit: its main process's status if the unit is
 * still loaded, else unknown (a collected unit's status is gone, and `systemctl show`
 * then prints a default that must not be mistaken for success).
 */
export const unitExitStatus = (state: UnitState): number | null =>
  state.loadState === "loaded" ? state.execMainStatus : null

/**
 * How often the unit's state is read when `systemd-run --wait` cannot say how the unit
 * ended (its client was killed).
 */
const UNIT_POLL = "500 millis"

/**
 * What `systemd-run --wait` prints about its unit: that it started it (`Running as unit:`)
 * and how its main process ended (`Main processes terminated with: code=exited/status=N`;
 * a signal gives a name, not a number).
 */
export const parseSystemdRunOutput = (
  text: string
): { readonly started: boolean; readonly ended: number | null | undefined } => {
  const started = /^Running as unit: /m.test(text)
  const terminated = /^Main processes terminated with: code=(\w+)\/status=(\S+)/m.exec(text)
  if (terminated === null) return { started, ended: /^Finished with result: /m.test(text) ? null : undefined }
  const [, code, status] = terminated
  return { started, ended: code === "exited" && status !== undefined && /^\d+$/.test(status) ? Number(status) : null }
}

const showUnit = (unit: SwitchUnit) =>
  run(["systemctl", "show", `--property=${UNIT_PROPERTIES}`, `${unit}.service`], {
    timeout: "10 seconds",
    children: "tool"
  }).pipe(
    Effect.map((done) => parseUnitState(done.stdout)),
    Effect.option
  )

/** The unit's end as `systemctl show` sees it (the fallback when the client is gone). */
const pollUntilEnded = (unit: SwitchUnit) =>
  Effect.gen(function*() {
    while (true) {
      const state = yield* showUnit(unit)
      if (state._tag === "Some" && unitEnded(state.value)) return unitExitStatus(state.value)
      yield* Effect.sleep(UNIT_POLL)
    }
  })

/**
 * How long a fire waits for an ended unit of the same name to be unloaded. `--wait` adds a
 * reference to its unit for as long as its client is connected, so an ended unit stays
 * loaded until the client that fired it has reported and gone (the verify step returns on
 * the flip, before the switch ends), and systemd-run refuses a name that is still loaded.
 */
const COLLECT_WAIT = "10 seconds"

const resetFailed = (unit: SwitchUnit) =>
  Effect.ignore(run(["systemctl", "reset-failed", `${unit}.service`], { timeout: "10 seconds", children: "tool" }))

/**
 * Whether a refusal came from an ended unit of the same name that was still loaded, and
 * that unit has since been unloaded: waits for that, at most `COLLECT_WAIT`. A running unit
 * is a switch in progress (not ours to wait for), and no unit at all means the refusal
 * was something else: both false at once.
 */
const awaitUnloaded = (unit: SwitchUnit) =>
  Effect.gen(function*() {
    let waited = false
    while (true) {
      const state = yield* showUnit(unit)
      if (state._tag === "None") return false
      if (state.value.loadState === "not-found") return waited
      if (!unitEnded(state.value)) return false
      waited = true
      // A failed unit is unloaded only once reset (as a collected one is).
      if (state.value.activeState === "failed") yield* resetFailed(unit)
      yield* Effect.sleep("100 millis")
    }
  }).pipe(Effect.timeoutTo({ duration: COLLECT_WAIT, onTimeout: () => false, onSuccess: (free) => free }))

/** One `systemd-run` client: its start, and a Deferred completed with how it ended. */
const startClient = (argv: readonly [string, ...Array<string>]) =>
  Effect.gen(function*() {
    const failed = (exitCode: number | null, detail: string) =>
      new FireFailed({ phase: "systemd-run-fire", exitCode, detail })
    // Completes with how the client ended: the unit's exit status as it reported it
    // (a number, or null for a signal), or undefined when it could not tell (killed).
    const clientEnded = yield* Deferred.make<number | null | undefined>()
    const [command, ...args] = argv
    yield* Effect.async<void, FireFailed>((resume) => {
      let output = ""
      let started = false
      // The client is the agent's child (killed with it); the unit is systemd's, started by
      // PID 1 with systemd's own environment and none of the agent's sandbox.
      const client = ChildProcess.spawn(command, args, {
        stdio: ["ignore", "pipe", "pipe"],
        env: childEnvironment("tool", process.env)
      })
      const read = (chunk: string) => {
        output = (output + chunk).slice(-16 * 1024)
        if (!started && parseSystemdRunOutput(output).started) {
          started = true
          resume(Effect.void)
        }
      }
      client.stdout.setEncoding("utf8").on("data", read)
      client.stderr.setEncoding("utf8").on("data", read)
      client.once("error", (error) => {
        if (!started) resume(Effect.fail(failed(null, `spawn ${display(argv)}: ${error.message}`)))
        started = true
        Deferred.unsafeDone(clientEnded, Effect.succeed(undefined))
      })
      client.once("close", (code) => {
        if (!started) {
          started = true
          resume(Effect.fail(failed(code, output.trim())))
        }
        Deferred.unsafeDone(clientEnded, Effect.succeed(parseSystemdRunOutput(output).ended))
      })
    }).pipe(
      Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => failed(null, "systemd-run timed out") })
    )
    return clientEnded
  })

const fireSystemd = (unit: SwitchUnit, storePath: string) =>
  Effect.gen(function*() {
    // A failed unit of the same name from an earlier run would make systemd-run refuse.
    yield* resetFailed(unit)
    const argv = systemdRunArgv(unit, storePath)
    // Refused because an ended unit of that name is still loaded (its client has not gone
    // yet): once it is unloaded, the one retry.
    const clientEnded = yield* startClient(argv).pipe(
      Effect.catchTag("FireFailed", (error) =>
        error.exitCode === null
          ? Effect.fail(error)
          : Effect.flatMap(awaitUnloaded(unit), (free) => free ? startClient(argv) : Effect.fail(error))),
      Effect.tapError((error) =>
        Effect.logError("systemd-run did not start the switch").pipe(
          Effect.annotateLogs({ exitCode: error.exitCode, detail: error.detail })
        )
      )
    )
    const ended = Effect.flatMap(
      Deferred.await(clientEnded),
      (status) => status === undefined ? pollUntilEnded(unit) : Effect.succeed(status)
    )
    return {
      ended,
      exitStatus: Effect.flatMap(Deferred.poll(clientEnded), (done) =>
        done._tag === "Some"
          ? Effect.flatMap(done.value, (status) =>
            status === undefined
              ? Effect.map(showUnit(unit), (state) => state._tag === "Some" ? unitExitStatus(state.value) : null)
              : Effect.succeed(status))
          : Effect.succeed(null)),
      stop: Effect.ignore(run(["systemctl", "stop", `${unit}.service`], { timeout: "60 seconds", children: "tool" }))
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
        // Never through a symlink planted at the log's path: root would append where it points.
        fd = Fs.openSync(log, APPEND_NO_FOLLOW, 0o600)
        Fs.writeSync(fd, `=== ${new Date().toISOString()} ${display(argv)}\n`)
      } catch (error) {
        const detail = errnoOf(error) === "ELOOP" ? symlinkRefused(log).message : `cannot open ${log}: ${String(error)}`
        resume(Effect.fail(new FireFailed({ phase, exitCode: null, detail })))
        return
      }
      const [command, ...args] = argv
      const spawned = ChildProcess.spawn(command, args, {
        detached: true,
        stdio: ["ignore", fd, fd],
        env: childEnvironment("switch", process.env)
      })
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
 */
export const fire = Effect.fn("ActivationPipeline.fire")(
  function*(args: {
    readonly method: SwitchMethod
    readonly unit: SwitchUnit
    readonly storePath: string
    readonly stateDir: string
  }) {
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
  },
  // One line per switch, in the journal next to the rollout's others.
  (effect, args) =>
    Effect.tap(
      effect,
      () => Effect.logInfo("switch fired").pipe(Effect.annotateLogs({ method: args.method, unit: args.unit }))
    ),
  Effect.annotateLogs("phase", "fire")
)

/**
 * `switch-to-configuration boot` as `method` runs it: with `systemd-run`, a transient
 * service that PID 1 starts with full rights (the agent's own unit is sandboxed and could
 * not write the boot loader), its output piped back and its exit status systemd-run's own;
 * otherwise the agent's child.
 */
export const bootEntryArgv = (method: SwitchMethod, storePath: string): readonly [string, ...Array<string>] => {
  const argv = [`${storePath}/bin/switch-to-configuration`, "boot"] as const
  return method === "systemd-run"
    ? ["systemd-run", "--quiet", "--collect", "--wait", "--pipe", "--service-type=exec", "--", ...argv]
    : argv
}

/**
 * `<storePath>/bin/switch-to-configuration boot`, in the foreground: makes the new
 * generation the boot default (`nix-env --set` alone writes no boot entry).
 */
export const installBootEntry = Effect.fn("ActivationPipeline.installBootEntry")(
  function*(storePath: string, method: SwitchMethod) {
    const argv = bootEntryArgv(method, storePath)
    const done = yield* run(argv, { timeout: "30 minutes", children: "switch" }).pipe(
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
  },
  Effect.annotateLogs("phase", "defer-bootloader-update")
)
