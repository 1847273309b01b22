/**
 * What `nixfleet-agent run` does once its flags are parsed: the daemon. Loaded by the `run`
 * command only when it runs, so that the other commands (and `--help`, `--version`) never
 * load the runtime, SQLite, the HTTP client, x509 or OpenTelemetry.
 *
 * @internal
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import { runUntilShutdown } from "../AgentRuntime.js"
import { AgentConfig } from "../config/AgentConfig.js"
import * as Settings from "../config/settings.js"
import { ENROLLMENT_RETRY_INTERVAL, pendingEnrollment } from "../identity/Enrollment.js"
import * as NixfleetAgent from "../NixfleetAgent.js"
import { ExitStatus } from "../node/ExitStatus.js"
import { loggerLayer } from "../node/Logging.js"
import { stopRequests } from "../node/Signals.js"
import { notifySystemd, SystemdNotify, type SystemdNotifyService } from "../node/SystemdNotify.js"
import { usable } from "./PipelineOptions.js"
import { EXIT_CONFIG, EXIT_SOFTWARE, ignoredFlags, runConfigProvider, type RunOptions } from "./RunCommand.js"

/** What systemd tells its service in the environment about notifications. */
const SYSTEMD_VARIABLES = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] as const

/**
 * Takes systemd's notification variables out of the environment, as `sd_notify` does with
 * `unset_environment`: the agent's children (switch scripts, probes) must not notify in
 * its name. The returned entries reach the agent through its `ConfigProvider`.
 */
const takeSystemdEnvironment = (): Array<readonly [string, string]> => {
  const taken: Array<readonly [string, string]> = []
  for (const name of SYSTEMD_VARIABLES) {
    const value = process.env[name]
    if (value !== undefined) taken.push([name, value])
    delete process.env[name]
  }
  return taken
}

/** A startup problem the operator must fix: one line, exit 78. */
const configurationError = (detail: string) =>
  Effect.gen(function*() {
    yield* Effect.sync(() => process.stderr.write(`nixfleet-agent: ${detail}\n`))
    yield* Effect.flatMap(ExitStatus, (status) => Ref.set(status, EXIT_CONFIG))
  })

/**
 * While the agent enrolls (first boot: waiting for a cold control plane can outlast
 * systemd's start timeout), systemd's timeout is extended.
 */
const extendStartTimeout = (systemd: SystemdNotifyService) => {
  const extension = Duration.toMillis(Duration.times(ENROLLMENT_RETRY_INTERVAL, 3)) * 1000
  return systemd.notify(`STATUS=enrolling with the control plane\nEXTEND_TIMEOUT_USEC=${extension}`).pipe(
    Effect.zipRight(Effect.sleep(ENROLLMENT_RETRY_INTERVAL)),
    Effect.forever
  )
}

/**
 * The daemon, for `run`'s validated flags: until SIGTERM or SIGINT, then drained.
 *
 * @internal
 */
export const runDaemon = (options: RunOptions): Effect.Effect<void, never, ExitStatus> =>
  Effect.gen(function*() {
    yield* ignoredFlags(options)
    // From before start-up to the process's exit: a second SIGTERM (systemd and a supervisor
    // both signalling, an impatient operator) must kill neither the drain nor the exit after it.
    const stopRequested = yield* stopRequests("process")
    const scope = yield* Effect.scope
    const systemd = yield* SystemdNotify
    const started = yield* Deferred.make<void>()
    // The same layer an embedder gets: trust file, state directory, one agent per state
    // directory, enrollment, the runtime, the status socket, tracing.
    const agent = runUntilShutdown(NixfleetAgent.layerConfig().pipe(Layer.provide(NodeContext.layer)), {
      onStarted: (handle) =>
        Effect.gen(function*() {
          yield* Deferred.succeed(started, undefined)
          yield* Scope.extend(notifySystemd(handle), scope).pipe(Effect.provideService(SystemdNotify, systemd))
          yield* Deferred.await(stopRequested).pipe(Effect.zipRight(handle.shutdown), Effect.forkIn(scope))
        })
    })
    // A first boot enrolls before the agent is up: meanwhile the start timeout is extended,
    // and a stop request ends the start there (the agent's scope is closed). Otherwise a stop
    // request during the start waits for it, and `onStarted` turns it into a drain.
    const enrolling = yield* pendingEnrollment.pipe(Effect.provide(AgentConfig.layer), Effect.orElseSucceed(() => null))
    const whileStarting = enrolling === null ? Effect.never : Effect.raceFirst(
      Effect.raceFirst(Deferred.await(stopRequested), extendStartTimeout(systemd)),
      Deferred.await(started)
    ).pipe(
      Effect.zipRight(Deferred.isDone(started)),
      Effect.flatMap((up) => up ? Effect.never : Effect.void)
    )
    const exit = yield* Effect.exit(Effect.raceFirst(agent, whileStarting))
    if (exit._tag === "Failure") {
      const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      // The supervisor logged the fault once, with its cause.
      if (failure?._tag === "WorkerFailed") return yield* Effect.flatMap(ExitStatus, (s) => Ref.set(s, EXIT_SOFTWARE))
      if (failure !== undefined) return yield* configurationError(String(failure.message).replace(/\s+/g, " "))
      yield* Effect.logError("the agent stopped on an unexpected error").pipe(
        Effect.annotateLogs("cause", String(exit.cause))
      )
      yield* Effect.flatMap(ExitStatus, (status) => Ref.set(status, 1))
    }
  }).pipe(
    Effect.provide(SystemdNotify.layer),
    Effect.scoped,
    Effect.withConfigProvider(runConfigProvider(options, takeSystemdEnvironment())),
    Effect.provide(loggerLayer(usable(Settings.logFormat, options.logFormat)))
  )
