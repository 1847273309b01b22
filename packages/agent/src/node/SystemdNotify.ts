/**
 * systemd's notification protocol (`sd_notify`): datagrams of `KEY=value` lines to the
 * socket named by `NOTIFY_SOCKET`. `run` sends `READY=1` once boot recovery is done,
 * `STATUS=` each time the phase changes, `WATCHDOG=1` at half of `WATCHDOG_USEC` while the
 * reducer answers and no worker has failed, and `STOPPING=1` when asked to stop. Without `NOTIFY_SOCKET` every
 * message is dropped, so the same code runs under `Type=notify`, `Type=simple` and a shell.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { AgentRuntimeService } from "../AgentRuntime.js"
import { ReducerInput } from "../runtime/ReducerInput.js"
import { optionalSettings } from "../support/optionalSettings.js"
import { createUnixDgramSocket } from "./unixDgram.js"

/**
 * @since 0.1.0
 */
export interface SystemdNotifyService {
  /** Whether messages go anywhere. */
  readonly enabled: boolean
  /** Sends one datagram (`READY=1`, `STATUS=…`, several lines at once). Never fails. */
  readonly notify: (message: string) => Effect.Effect<void>
  /** How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the watchdog is ours. */
  readonly watchdogInterval: Option.Option<Duration.Duration>
}

const disabled: SystemdNotifyService = {
  enabled: false,
  notify: () => Effect.void,
  watchdogInterval: Option.none()
}

const settings = Config.all({
  socket: Config.option(Config.string("NOTIFY_SOCKET")),
  watchdogUsec: Config.option(Config.integer("WATCHDOG_USEC")),
  watchdogPid: Config.option(Config.integer("WATCHDOG_PID"))
})

/** `STATUS=` is one line: systemd shows it in `systemctl status`. */
const statusLine = (phase: string) => `STATUS=${phase.replace(/\s+/g, " ")}`

/**
 * @since 0.1.0
 */
export class SystemdNotify extends Context.Tag("@nixfleet/agent/SystemdNotify")<
  SystemdNotify,
  SystemdNotifyService
>() {
  /** Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the current `ConfigProvider`. */
  static readonly layer: Layer.Layer<SystemdNotify> = Layer.scoped(
    SystemdNotify,
    Effect.gen(function*() {
      const env = yield* optionalSettings(settings, "systemd notification settings are unreadable; not notifying")
      if (Option.isNone(env) || Option.isNone(env.value.socket) || env.value.socket.value === "") return disabled
      const { watchdogPid, watchdogUsec } = env.value
      const path = env.value.socket.value
      if (path.startsWith("@")) {
        yield* Effect.logWarning("NOTIFY_SOCKET is an abstract socket, which this agent cannot address; not notifying")
        return disabled
      }
      const created = createUnixDgramSocket()
      if (created instanceof Error) {
        yield* Effect.logWarning("cannot create a Unix datagram socket; not notifying systemd").pipe(
          Effect.annotateLogs("error", created.message)
        )
        return disabled
      }
      const socket = yield* Effect.acquireRelease(
        Effect.sync(() => created.on("error", () => undefined)),
        (s) => Effect.sync(() => s.close())
      )
      const ours = Option.isNone(watchdogPid) || watchdogPid.value === process.pid
      const watchdogInterval = Option.filter(watchdogUsec, (usec) => usec > 0 && ours).pipe(
        Option.map((usec) => Duration.micros(BigInt(Math.floor(usec / 2))))
      )
      return {
        enabled: true,
        watchdogInterval,
        notify: (message) =>
          Effect.async<void, Error>((resume) => {
            const buf = Buffer.from(message, "utf8")
            socket.send(buf, 0, buf.length, path, (error) => resume(error ? Effect.fail(error) : Effect.void))
          }).pipe(
            Effect.catchAll((error) =>
              Effect.logWarning("systemd notification not delivered").pipe(
                Effect.annotateLogs({ socket: path, error: error.message, notification: message.split("\n")[0] })
              )
            )
          )
      }
    })
  )

  /** Drops every message (embedders that do not run under systemd). */
  static readonly disabled: Layer.Layer<SystemdNotify> = Layer.succeed(SystemdNotify, disabled)
}

/**
 * Keeps systemd informed about a started runtime, until the scope closes: `READY=1` with
 * the phase at once (call it once boot recovery is done), `STATUS=` on each phase change,
 * `STOPPING=1` when a shutdown is asked for, and, until then, `WATCHDOG=1` each interval,
 * sent only while no supervised worker has failed and once the reducer has handled a `Ping`
 * within half of it: a stuck reducer or a dead worker stops the pings and systemd restarts
 * the agent (a dead worker also stops it, exit 70, should the drain hang).
 *
 * @since 0.1.0
 */
export const notifySystemd = (runtime: AgentRuntimeService) =>
  Effect.gen(function*() {
    const systemd = yield* SystemdNotify
    if (!systemd.enabled) return
    yield* runtime.status.phase.pipe(
      Stream.zipWithIndex,
      Stream.runForEach(([phase, index]) =>
        systemd.notify(index === 0 ? `READY=1\n${statusLine(phase)}` : statusLine(phase))
      ),
      Effect.forkScoped
    )
    yield* runtime.awaitShutdown.pipe(
      Effect.zipRight(systemd.notify(`STOPPING=1\n${statusLine("stopping: draining")}`)),
      Effect.forkScoped
    )
    if (Option.isNone(systemd.watchdogInterval)) return
    const interval = systemd.watchdogInterval.value
    // A ping may take half the interval: consecutive WATCHDOG=1 are then at most 3/4 of
    // WATCHDOG_USEC apart.
    const answered = runtime.reducer.submit(ReducerInput.Ping()).pipe(
      Effect.timeout(Duration.divide(interval, 2).pipe(Option.getOrElse(() => interval))),
      Effect.matchEffect({
        onSuccess: () => systemd.notify("WATCHDOG=1"),
        onFailure: () =>
          Effect.logError("the reducer did not answer within the watchdog interval; withholding WATCHDOG=1").pipe(
            Effect.annotateLogs("interval", Duration.format(interval))
          )
      })
    )
    // The supervisor has logged the fault; the reducer may still answer, but the agent is not whole.
    const ping = Effect.flatMap(
      runtime.workerFault,
      Option.match({ onNone: () => answered, onSome: () => Effect.void })
    )
    // The reducer stops taking inputs once a shutdown is asked for; the drain is bounded by
    // the stop timeout, not by the watchdog.
    yield* ping.pipe(
      Effect.repeat(Schedule.fixed(interval)),
      Effect.raceFirst(runtime.awaitShutdown),
      Effect.forkScoped
    )
  })

/**
 * Systemd notifications from the environment systemd gives its service: `SystemdNotify.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = SystemdNotify.layer

/**
 * No notifications (not under systemd, or embedded): `SystemdNotify.disabled`, as this module's `layerDisabled`.
 *
 * @since 0.1.0
 */
export const layerDisabled = SystemdNotify.disabled
