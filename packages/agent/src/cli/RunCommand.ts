/**
 * `nixfleet-agent run`: the daemon systemd starts. Flags keep the reference agent's names
 * and environment variables, so an existing NixOS configuration works unchanged.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { TrustConfig } from "@nixfleet/proto"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs/promises"
import { ActivationPipelineLive } from "../ActivationPipelineLive.js"
import { AgentConfig } from "../AgentConfig.js"
import { AgentRuntime, runUntilShutdown } from "../AgentRuntime.js"
import { enrollAnonymously, ENROLLMENT_RETRY_INTERVAL, pendingEnrollment } from "../Enrollment.js"
import { parseListen } from "../MetricsExporter.js"
import { PipelineConfig } from "../PipelineConfig.js"
import { claimStatusSocket, StatusServer } from "../StatusServer.js"
import { notifySystemd, SystemdNotify, type SystemdNotifyService } from "../SystemdNotify.js"
import * as Tracing from "../Tracing.js"
import { ExitStatus } from "./ExitStatus.js"
import { loggerLayer } from "./Logging.js"
import { type PipelineOptions, pipelineOptions } from "./PipelineOptions.js"

/**
 * Exit statuses of `run`: 0 stopped on request; 78 (EX_CONFIG) a configuration that
 * cannot work (unreadable trust file, certificate or key; an enrollment the control plane
 * refused or that cannot be attempted); 1 anything else. Bad flags exit 64 before anything
 * starts.
 *
 * @since 0.1.0
 */
export const EXIT_CONFIG = 78

/** The reference binary's `--compliance-gate-mode` values. */
const COMPLIANCE_GATE_MODES = ["disabled", "permissive", "enforce", "auto"] as const

const text = (name: string, env: string) => Options.text(name).pipe(Options.withFallbackConfig(Config.string(env)))
const optionalText = (name: string, env: string) => text(name, env).pipe(Options.optional)

const runOptions = {
  controlPlaneUrl: text("control-plane-url", "NIXFLEET_AGENT_CP_URL").pipe(
    Options.withSchema(
      Schema.String.pipe(
        Schema.filter((url) => URL.canParse(url), { message: () => "--control-plane-url must be a URL" })
      )
    ),
    Options.withDescription("the control plane, e.g. https://cp.example:8443")
  ),
  machineId: text("machine-id", "NIXFLEET_AGENT_MACHINE_ID").pipe(
    Options.withSchema(Schema.NonEmptyTrimmedString),
    Options.withDescription("this host's name in the fleet (the machine id of its certificate)")
  ),
  trustFile: text("trust-file", "NIXFLEET_AGENT_TRUST_FILE").pipe(
    Options.withDefault("/etc/nixfleet/agent/trust.json"),
    Options.withDescription("trust roots for signed artifacts")
  ),
  caCert: optionalText("ca-cert", "NIXFLEET_AGENT_CA_CERT").pipe(
    Options.withDescription("extra CA for the control plane")
  ),
  clientCert: optionalText("client-cert", "NIXFLEET_AGENT_CLIENT_CERT").pipe(
    Options.withDescription("mTLS certificate")
  ),
  clientKey: optionalText("client-key", "NIXFLEET_AGENT_CLIENT_KEY").pipe(
    Options.withDescription("mTLS key: PEM, or the host's OpenSSH ed25519 key")
  ),
  manifestFreshnessWindowSecs: Options.integer("manifest-freshness-window-secs").pipe(
    Options.withFallbackConfig(Config.integer("NIXFLEET_AGENT_MANIFEST_FRESHNESS_WINDOW_SECS")),
    Options.withDefault(3600),
    Options.withSchema(
      Schema.Int.pipe(Schema.positive({ message: () => "--manifest-freshness-window-secs must be positive" }))
    ),
    Options.withDescription("how old a signed manifest may be (plus 60 s of clock skew)")
  ),
  bootstrapTokenFile: optionalText("bootstrap-token-file", "NIXFLEET_AGENT_BOOTSTRAP_TOKEN_FILE").pipe(
    Options.withDescription("first-boot enrollment token")
  ),
  sshHostKeyFile: text("ssh-host-key-file", "NIXFLEET_AGENT_SSH_HOST_KEY_FILE").pipe(
    Options.withDefault("/etc/ssh/ssh_host_ed25519_key"),
    Options.withDescription("the host's OpenSSH ed25519 key (identity, evidence signatures)")
  ),
  renewalThresholdFraction: Options.float("renewal-threshold-fraction").pipe(
    Options.withFallbackConfig(Config.number("NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION")),
    Options.withSchema(
      Schema.Number.pipe(
        Schema.filter((x) => x > 0 && x < 1, {
          message: () => "--renewal-threshold-fraction must be strictly between 0 and 1"
        })
      )
    ),
    Options.optional,
    Options.withDescription("renew the certificate when less than this fraction of its validity remains")
  ),
  metricsListen: text("metrics-listen", "NIXFLEET_AGENT_METRICS_LISTEN").pipe(
    Options.withSchema(
      Schema.String.pipe(
        Schema.filter((value) => parseListen(value) !== undefined, {
          message: () => "--metrics-listen must be [host:]port (a bare port listens on 127.0.0.1)"
        })
      )
    ),
    Options.optional,
    Options.withDescription("serve Prometheus metrics on GET /metrics at [host:]port (default: off)")
  ),
  metricsTextfile: optionalText("metrics-textfile", "NIXFLEET_AGENT_METRICS_TEXTFILE").pipe(
    Options.withDescription("also write the metrics to this node_exporter textfile (*.prom), every 15 s")
  ),
  // The reference binary's flags that have no counterpart here, accepted so that its
  // command line (and its modules' units) start this agent unchanged; see ignoredFlags.
  pollInterval: Options.integer("poll-interval").pipe(
    Options.withFallbackConfig(Config.integer("NIXFLEET_AGENT_POLL_INTERVAL")),
    Options.withSchema(
      Schema.Int.pipe(Schema.nonNegative({ message: () => "--poll-interval must be seconds (>= 0)" }))
    ),
    Options.optional,
    Options.withDescription("accepted for the reference agent's command line; no effect (see the README)")
  ),
  complianceGateMode: Options.choice("compliance-gate-mode", COMPLIANCE_GATE_MODES).pipe(
    Options.withFallbackConfig(Config.literal(...COMPLIANCE_GATE_MODES)("NIXFLEET_AGENT_COMPLIANCE_GATE_MODE")),
    Options.optional,
    Options.withDescription("accepted for the reference agent's command line; no effect (see the README)")
  )
}

/**
 * One warning per reference flag that was given (on the command line or in its environment
 * variable) but means nothing here, naming it and why.
 *
 * - `--poll-interval`: the reference's v0.1 loop polled the control plane every N seconds;
 *   this agent long-polls for dispatches (the control plane's wait is the pace) and sends
 *   its heartbeat every 60 s, the interval the control plane's liveness expects.
 * - `--compliance-gate-mode`: compliance is gated by the `evidence` probes of the health
 *   checks file, each with its own mode (enforce, observe, disabled), not by one flag.
 */
const ignoredFlags = (options: {
  readonly pollInterval: Option.Option<number>
  readonly complianceGateMode: Option.Option<string>
}) =>
  Effect.all([
    Option.match(options.pollInterval, {
      onNone: () => Effect.void,
      onSome: (value) =>
        Effect.logWarning(
          "--poll-interval (NIXFLEET_AGENT_POLL_INTERVAL) has no effect: dispatches are long-polled and the heartbeat runs every 60 s"
        ).pipe(Effect.annotateLogs({ flag: "--poll-interval", value }))
    }),
    Option.match(options.complianceGateMode, {
      onNone: () => Effect.void,
      onSome: (value) =>
        Effect.logWarning(
          "--compliance-gate-mode (NIXFLEET_AGENT_COMPLIANCE_GATE_MODE) has no effect: compliance is gated by the evidence probes of the health checks file, each with its own mode"
        ).pipe(Effect.annotateLogs({ flag: "--compliance-gate-mode", value }))
    })
  ], { discard: true })

type RunOptions =
  & { readonly [K in keyof typeof runOptions]: (typeof runOptions)[K] extends Options.Options<infer A> ? A : never }
  & PipelineOptions

/**
 * The validated flags as the `ConfigProvider` the runtime reads; the environment stays
 * behind it for the test gates (`NIXFLEET_AGENT_ACTIVATION_TEST_MODE`, …).
 *
 * @since 0.1.0
 */
export const runConfigProvider = (
  options: RunOptions,
  systemd: ReadonlyArray<readonly [string, string]> = []
): ConfigProvider.ConfigProvider => {
  const entries: Array<readonly [string, string]> = [
    ...systemd,
    ["NIXFLEET_AGENT_CP_URL", options.controlPlaneUrl],
    ["NIXFLEET_AGENT_MACHINE_ID", options.machineId],
    ["NIXFLEET_AGENT_TRUST_FILE", options.trustFile],
    ["NIXFLEET_AGENT_MANIFEST_FRESHNESS_WINDOW_SECS", String(options.manifestFreshnessWindowSecs)],
    ["NIXFLEET_AGENT_SSH_HOST_KEY_FILE", options.sshHostKeyFile],
    ["NIXFLEET_AGENT_STATE_DIR", options.stateDir],
    ["NIXFLEET_AGENT_CURRENT_SYSTEM_PATH", options.currentSystemPath],
    ["NIXFLEET_AGENT_SYSTEM_PROFILE", options.systemProfile],
    ["NIXFLEET_AGENT_SWITCH_METHOD", options.switchMethod],
    ["NIXFLEET_AGENT_SWITCH_LOCK_PATH", options.switchLockPath],
    ["NIXFLEET_AGENT_HEALTH_CHECKS_FILE", options.healthChecksFile],
    ["NIXFLEET_AGENT_SUSTAINED_FAILURE_SECS", String(options.sustainedFailureSecs)],
    ["NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS", String(options.verifyTimeoutSecs)],
    ["NIXFLEET_AGENT_REALISE_TIMEOUT_SECS", String(options.realiseTimeoutSecs)],
    ["NIXFLEET_AGENT_LOG_FORMAT", options.logFormat]
  ]
  for (
    const [key, value] of [
      ["NIXFLEET_AGENT_CA_CERT", options.caCert],
      ["NIXFLEET_AGENT_CLIENT_CERT", options.clientCert],
      ["NIXFLEET_AGENT_CLIENT_KEY", options.clientKey],
      ["NIXFLEET_AGENT_BOOTSTRAP_TOKEN_FILE", options.bootstrapTokenFile],
      ["NIXFLEET_AGENT_METRICS_LISTEN", options.metricsListen],
      ["NIXFLEET_AGENT_METRICS_TEXTFILE", options.metricsTextfile]
    ] as const
  ) {
    if (Option.isSome(value)) entries.push([key, value.value])
  }
  if (Option.isSome(options.renewalThresholdFraction)) {
    entries.push(["NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION", String(options.renewalThresholdFraction.value)])
  }
  return ConfigProvider.fromMap(new Map(entries)).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
}

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
 * SIGTERM and SIGINT, listened to from before start-up to the process's exit, as a
 * Deferred the runtime awaits once it is up. Every repeat is absorbed: a second SIGTERM
 * (systemd and a supervisor both signalling, an impatient operator) must not kill the
 * drain half-way, nor the exit that follows it, as Node's default action would once no
 * listener is left. `run` is the process's only command, so the listeners are not removed.
 */
const stopSignals = Effect.gen(function*() {
  const requested = yield* Deferred.make<void>()
  yield* Effect.sync(() => {
    const onSignal = () => {
      Deferred.unsafeDone(requested, Exit.void)
    }
    process.on("SIGTERM", onSignal)
    process.on("SIGINT", onSignal)
  })
  return requested
})

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
 * @since 0.1.0
 */
export const runCommand = Command.make(
  "run",
  { ...runOptions, ...pipelineOptions },
  (options) =>
    Effect.gen(function*() {
      yield* ignoredFlags(options)
      const trust = yield* Effect.either(checkTrustFile(options.trustFile))
      if (trust._tag === "Left") return yield* configurationError(trust.left.replace(/\s+/g, " "))
      const claimed = yield* Effect.either(claimStatusSocket(options.stateDir))
      if (claimed._tag === "Left") return yield* configurationError(claimed.left.message)
      const runtime = StatusServer.pipe(
        Layer.provideMerge(AgentRuntime.layer()),
        Layer.provide(ActivationPipelineLive.pipe(Layer.provide(PipelineConfig.layer))),
        Layer.provide(NodeContext.layer)
      )
      const stopRequested = yield* stopSignals
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
      Effect.provide(loggerLayer(options.logFormat))
    )
).pipe(Command.withDescription("the agent daemon (what systemd starts)"))
