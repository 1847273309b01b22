/**
 * `nixfleet-agent run`: the daemon systemd starts. Flags keep the reference agent's names
 * and environment variables, so an existing NixOS configuration works unchanged.
 *
 * @internal
 */
import * as Command from "@effect/cli/Command"
import type * as Options from "@effect/cli/Options"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Settings from "../config/settings.js"
import {
  isUnusable,
  lenient,
  optionalSettingOption,
  requiredOption,
  type RunPipelineOptions,
  runPipelineOptions,
  settingOption,
  strict
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
 * @internal
 */
export const EXIT_CONFIG = 78

/**
 * `run`'s exit status when a worker's fault stopped the agent (see `EXIT_CONFIG`).
 *
 * @internal
 */
export const EXIT_SOFTWARE = 70

// The required settings are refused when absent or unusable (nothing can start without
// them); so are the reference flags' bad values. Paths the agent does not check here take
// any text, so strict and lenient are alike for them.
const runOptions = {
  controlPlaneUrl: requiredOption(Settings.controlPlaneUrl),
  machineId: requiredOption(Settings.machineId),
  trustFile: settingOption(Settings.trustFile, strict),
  caCert: optionalSettingOption(Settings.caCert, strict),
  clientCert: optionalSettingOption(Settings.clientCert, strict),
  clientKey: optionalSettingOption(Settings.clientKey, strict),
  // Optional settings never stop the unit: an unusable value is the default (see PipelineOptions' lenient).
  manifestFreshnessWindowSecs: settingOption(Settings.manifestFreshnessWindowSecs, lenient),
  bootstrapTokenFile: optionalSettingOption(Settings.bootstrapTokenFile, strict),
  sshHostKeyFile: settingOption(Settings.sshHostKeyFile, lenient),
  renewalThresholdFraction: optionalSettingOption(Settings.renewalThresholdFraction, lenient),
  metricsListen: optionalSettingOption(Settings.metricsListen, lenient),
  metricsTextfile: optionalSettingOption(Settings.metricsTextfile, strict),
  // The reference binary's flags that have no counterpart here, accepted so that its
  // command line (and its modules' units) start this agent unchanged; see ignoredFlags.
  pollInterval: optionalSettingOption(Settings.pollInterval, strict),
  complianceGateMode: optionalSettingOption(Settings.complianceGateMode, strict)
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
 * @internal
 */
export const ignoredFlags = (options: {
  readonly pollInterval: Option.Option<number>
  readonly complianceGateMode: Option.Option<string>
}) =>
  Effect.all([
    ignored(
      Settings.pollInterval,
      options.pollInterval,
      "dispatches are long-polled and the heartbeat runs every 60 s"
    ),
    ignored(
      Settings.complianceGateMode,
      options.complianceGateMode,
      "compliance is gated by the evidence probes of the health checks file, each with its own mode"
    )
  ], { discard: true })

const ignored = <A>(setting: Settings.Setting<A, string>, value: Option.Option<A>, why: string) =>
  Option.match(value, {
    onNone: () => Effect.void,
    onSome: (given) =>
      Effect.logWarning(`${Settings.settingName(setting)} has no effect: ${why}`).pipe(
        Effect.annotateLogs({ flag: setting.flag, value: given })
      )
  })

/** A flag's value as its `ConfigProvider` entry, or `undefined` for a setting left out. */
const configText = (value: unknown): string | undefined =>
  isUnusable(value)
    ? value.text
    : Option.isOption(value)
    ? Option.match(value, { onNone: () => undefined, onSome: String })
    : String(value)

/**
 * `run`'s validated flags.
 *
 * @internal
 */
export type RunOptions =
  & { readonly [K in keyof typeof runOptions]: (typeof runOptions)[K] extends Options.Options<infer A> ? A : never }
  & RunPipelineOptions

/**
 * The validated flags as the `ConfigProvider` the runtime reads; the environment stays
 * behind it for the test gates (`NIXFLEET_AGENT_ACTIVATION_TEST_MODE`, …).
 *
 * @internal
 */
export const runConfigProvider = (
  options: RunOptions,
  systemd: ReadonlyArray<readonly [string, string]> = []
): ConfigProvider.ConfigProvider => {
  // Unusable values go through as given: AgentConfig reads them as their defaults and reports them.
  const given: ReadonlyArray<readonly [Settings.Setting<unknown>, unknown]> = [
    [Settings.controlPlaneUrl, options.controlPlaneUrl],
    [Settings.machineId, options.machineId],
    [Settings.trustFile, options.trustFile],
    [Settings.caCert, options.caCert],
    [Settings.clientCert, options.clientCert],
    [Settings.clientKey, options.clientKey],
    [Settings.manifestFreshnessWindowSecs, options.manifestFreshnessWindowSecs],
    [Settings.bootstrapTokenFile, options.bootstrapTokenFile],
    [Settings.sshHostKeyFile, options.sshHostKeyFile],
    [Settings.renewalThresholdFraction, options.renewalThresholdFraction],
    [Settings.metricsListen, options.metricsListen],
    [Settings.metricsTextfile, options.metricsTextfile],
    [Settings.currentSystemPath, options.currentSystemPath],
    [Settings.systemProfile, options.systemProfile],
    [Settings.switchMethod, options.switchMethod],
    [Settings.switchLockPath, options.switchLockPath],
    [Settings.healthChecksFile, options.healthChecksFile],
    [Settings.sustainedFailureSecs, options.sustainedFailureSecs],
    [Settings.verifyTimeoutSecs, options.verifyTimeoutSecs],
    [Settings.realiseTimeoutSecs, options.realiseTimeoutSecs],
    [Settings.stateDir, options.stateDir],
    [Settings.logFormat, options.logFormat]
  ]
  const entries = [
    ...systemd,
    ...given.flatMap(([setting, value]) => {
      const text = configText(value)
      return text === undefined ? [] : [[setting.key, text] as const]
    })
  ]
  return ConfigProvider.fromMap(new Map(entries)).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
}

/**
 * @internal
 */
export const runCommand = Command.make(
  "run",
  { ...runOptions, ...runPipelineOptions },
  // The daemon is loaded only when `run` runs: parsing and the other commands stay light.
  (options) => Effect.flatMap(Effect.promise(() => import("./RunDaemon.js")), ({ runDaemon }) => runDaemon(options))
).pipe(Command.withDescription("the agent daemon (what systemd starts)"))
