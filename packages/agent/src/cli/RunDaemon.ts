/**
 * What `nixfleet-agent run` does once its flags are parsed: the daemon. Loaded by the `run`
 * command only when it runs, so that the other commands (and `--help`, `--version`) never
 * load the runtime, SQLite, the HTTP client, x509 or OpenTelemetry.
 *
 * @internal
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { TrustConfig } from "@nixfleet/proto"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs/promises"
import { AgentRuntime, runUntilShutdown } from "../AgentRuntime.js"
import { AgentConfig } from "../config/AgentConfig.js"
import { PipelineConfig } from "../config/PipelineConfig.js"
import * as Settings from "../config/settings.js"
import { enrollAnonymously, ENROLLMENT_RETRY_INTERVAL, pendingEnrollment } from "../identity/Enrollment.js"
import { ExitStatus } from "../node/ExitStatus.js"
import { loggerLayer } from "../node/Logging.js"
import { stopRequests } from "../node/Signals.js"
import { notifySystemd, SystemdNotify, type SystemdNotifyService } from "../node/SystemdNotify.js"
import * as Tracing from "../observability/Tracing.js"
import { ActivationPipelineLive } from "../pipeline/ActivationPipelineLive.js"
import { failWorkerForTests } from "../runtime/testFailWorker.js"
import { claimStatusSocket, StatusServer } from "../status/StatusServer.js"
import { prepareStateDir } from "../support/pathSafety.js"
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

/** The trust file must parse at start, as upstream (it is re-read on every verification). */
const checkTrustFile = (file: string) =>
  Effect.tryPromise(() => Fs.readFile(file, "utf8")).pipe(
    Effect.mapError((error) => `cannot read the trust file ${file}: ${String(error.error)}`),
    Effect.flatMap((text) => Effect.try({ try: (): unknown => JSON.parse(text), catch: () => `${file} is not JSON` })),
    Effect.flatMap((json) =>
      Schema.decodeUnknown(TrustConfig)(json).pipe(
        Effect.mapError((error) =>
          `${file} is not a trust configuration: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
        )
      )
    )
  )

/**
 * First-boot enrollment, before the runtime starts. Waiting for a cold control plane can
 * outlast systemd's start timeout, so the timeout is extended while it lasts; a stop
 * request ends the wait. `true` when the agent may start.
 */
const enrollFirst = (systemd: SystemdNotifyService, stopRequested: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const files = yield* pendingEnrollment
    if (files === null) return true
    const extension = Duration.toMillis(Duration.times(ENROLLMENT_RETRY_INTERVAL, 3)) * 1000
    const keepStarting = systemd.notify(`STATUS=enrolling with the control plane\nEXTEND_TIMEOUT_USEC=${extension}`)
      .pipe(Effect.zipRight(Effect.sleep(ENROLLMENT_RETRY_INTERVAL)), Effect.forever)
    return yield* Effect.raceFirst(
      Effect.as(enrollAnonymously(files), true),
      Effect.as(Deferred.await(stopRequested), false)
    ).pipe(Effect.raceFirst(keepStarting))
  }).pipe(Effect.provide(AgentConfig.layer))

/**
 * The daemon, for `run`'s validated flags: until SIGTERM or SIGINT, then drained.
 *
 * @internal
 */
export const runDaemon = (options: RunOptions): Effect.Effect<void, never, ExitStatus> =>
  Effect.gen(function*() {
    yield* ignoredFlags(options)
    const trust = yield* Effect.either(checkTrustFile(options.trustFile))
    if (trust._tag === "Left") return yield* configurationError(trust.left.replace(/\s+/g, " "))
    // Before anything is written there: created 0700 when missing, refused when another user could steer it.
    const prepared = yield* Effect.either(prepareStateDir(usable(Settings.stateDir, options.stateDir)))
    if (prepared._tag === "Left") return yield* configurationError(prepared.left)
    const claimed = yield* Effect.either(claimStatusSocket(usable(Settings.stateDir, options.stateDir)))
    if (claimed._tag === "Left") return yield* configurationError(claimed.left.message)
    const runtime = StatusServer.pipe(
      Layer.provideMerge(AgentRuntime.layer()),
      Layer.provide(ActivationPipelineLive.pipe(Layer.provide(PipelineConfig.layer))),
      Layer.provide(NodeContext.layer),
      // Off unless a test sets NIXFLEET_AGENT_TEST_FAIL_WORKER.
      Layer.provide(failWorkerForTests)
    )
    // From before start-up to the process's exit: a second SIGTERM (systemd and a supervisor
    // both signalling, an impatient operator) must kill neither the drain nor the exit after it.
    const stopRequested = yield* stopRequests("process")
    const scope = yield* Effect.scope
    const systemd = yield* SystemdNotify
    const enrolled = yield* Effect.either(enrollFirst(systemd, stopRequested))
    if (enrolled._tag === "Left") return yield* configurationError(enrolled.left.message.replace(/\s+/g, " "))
    if (!enrolled.right) return
    const exit = yield* Effect.exit(
      runUntilShutdown(runtime, {
        onStarted: (handle) =>
          Effect.gen(function*() {
            yield* Scope.extend(notifySystemd(handle), scope).pipe(Effect.provideService(SystemdNotify, systemd))
            yield* Deferred.await(stopRequested).pipe(Effect.zipRight(handle.shutdown), Effect.forkIn(scope))
          })
      })
    )
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
    // Outside the runtime's scope: spans are flushed after the drain.
    Effect.provide(Tracing.layer),
    Effect.withConfigProvider(runConfigProvider(options, takeSystemdEnvironment())),
    Effect.provide(loggerLayer(usable(Settings.logFormat, options.logFormat)))
  )
