/**
 * `nixfleet-agent run`: the daemon systemd starts. Flags keep the reference agent's names
 * and environment variables, so an existing NixOS configuration works unchanged.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Settings from "../config/settings.js"
import {
  configText,
  isUnusable,
  lenientOption,
  lenientOptional,
  type RunPipelineOptions,
  runPipelineOptions,
  type UnusableValue
} from "./PipelineOptions.js"

/**
 * Exit statuses of `run`: 0 stopped on request; 78 (EX_CONFIG) a configuration that
 * cannot work (unreadable trust file, certificate or key; an enrollment the control plane
 * refused or that cannot be attempted); 70 (EX_SOFTWARE) a supervised worker died or ended
 * while the agent was not stopping (it is logged once, with the worker's name, and shows in
 * `status`; `Restart=always` starts the agent again); 1 anything else. An unknown flag, or a missing or
 * malformed control-plane URL or machine id, exits 64 before anything starts; an optional
 * setting given a value it cannot use is not an exit but its default, with one ERROR line
 * and a warning in `status`.
 *
 * @since 0.1.0
 */
export const EXIT_CONFIG = 78

/**
 * `run`'s exit status when a worker's fault stopped the agent (see `EXIT_CONFIG`).
 *
 * @since 0.1.0
 */
export const EXIT_SOFTWARE = 70

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
  // Optional settings never stop the unit: an unusable value is the default (see PipelineOptions' lenientOption).
  manifestFreshnessWindowSecs: lenientOption(Settings.manifestFreshnessWindowSecs).pipe(
    Options.withDescription("how old a signed manifest may be, plus 60 s of clock skew (default 3600)")
  ),
  bootstrapTokenFile: optionalText("bootstrap-token-file", "NIXFLEET_AGENT_BOOTSTRAP_TOKEN_FILE").pipe(
    Options.withDescription("first-boot enrollment token")
  ),
  sshHostKeyFile: lenientOption(Settings.sshHostKeyFile).pipe(
    Options.withDescription(
      "the host's OpenSSH ed25519 key: renewal CSRs, evidence signatures (default /etc/ssh/ssh_host_ed25519_key)"
    )
  ),
  renewalThresholdFraction: lenientOptional(Settings.renewalThresholdFraction).pipe(
    Options.withDescription(
      "renew the certificate when less than this fraction (strictly between 0 and 1) of its validity remains (default: no renewal)"
    )
  ),
  metricsListen: lenientOptional(Settings.metricsListen).pipe(
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
 *
 * @since 0.1.0
 */
export const ignoredFlags = (options: {
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

/**
 * `run`'s validated flags.
 *
 * @since 0.1.0
 */
export type RunOptions =
  & { readonly [K in keyof typeof runOptions]: (typeof runOptions)[K] extends Options.Options<infer A> ? A : never }
  & RunPipelineOptions

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
    // Unusable values go through as given: AgentConfig reads them as their defaults and reports them.
    ["NIXFLEET_AGENT_MANIFEST_FRESHNESS_WINDOW_SECS", configText(options.manifestFreshnessWindowSecs)],
    ["NIXFLEET_AGENT_SSH_HOST_KEY_FILE", configText(options.sshHostKeyFile)],
    ["NIXFLEET_AGENT_STATE_DIR", configText(options.stateDir)],
    ["NIXFLEET_AGENT_CURRENT_SYSTEM_PATH", configText(options.currentSystemPath)],
    ["NIXFLEET_AGENT_SYSTEM_PROFILE", configText(options.systemProfile)],
    ["NIXFLEET_AGENT_SWITCH_METHOD", configText(options.switchMethod)],
    ["NIXFLEET_AGENT_SWITCH_LOCK_PATH", configText(options.switchLockPath)],
    ["NIXFLEET_AGENT_HEALTH_CHECKS_FILE", configText(options.healthChecksFile)],
    ["NIXFLEET_AGENT_SUSTAINED_FAILURE_SECS", configText(options.sustainedFailureSecs)],
    ["NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS", configText(options.verifyTimeoutSecs)],
    ["NIXFLEET_AGENT_REALISE_TIMEOUT_SECS", configText(options.realiseTimeoutSecs)],
    ["NIXFLEET_AGENT_LOG_FORMAT", configText(options.logFormat)]
  ]
  for (
    const [key, value] of [
      ["NIXFLEET_AGENT_CA_CERT", options.caCert],
      ["NIXFLEET_AGENT_CLIENT_CERT", options.clientCert],
      ["NIXFLEET_AGENT_CLIENT_KEY", options.clientKey],
      ["NIXFLEET_AGENT_BOOTSTRAP_TOKEN_FILE", options.bootstrapTokenFile],
      ["NIXFLEET_AGENT_METRICS_TEXTFILE", options.metricsTextfile]
    ] as const
  ) {
    if (Option.isSome(value)) entries.push([key, value.value])
  }
  const optional = (key: string, value: Option.Option<string | number> | UnusableValue) => {
    if (isUnusable(value)) entries.push([key, value.text])
    else if (Option.isSome(value)) entries.push([key, String(value.value)])
  }
  optional("NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION", options.renewalThresholdFraction)
  optional("NIXFLEET_AGENT_METRICS_LISTEN", options.metricsListen)
  return ConfigProvider.fromMap(new Map(entries)).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
}

/**
 * @since 0.1.0
 */
export const runCommand = Command.make(
  "run",
  { ...runOptions, ...runPipelineOptions },
  // The daemon is loaded only when `run` runs: parsing and the other commands stay light.
  (options) => Effect.flatMap(Effect.promise(() => import("./RunDaemon.js")), ({ runDaemon }) => runDaemon(options))
).pipe(Command.withDescription("the agent daemon (what systemd starts)"))
