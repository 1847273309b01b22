/**
 * The options `run`, `activate` and `rollback` share: where the host's system state is,
 * and how the switch runs. Each has an environment variable `NIXFLEET_AGENT_<NAME>` (read
 * when the flag is absent) and the production default. `activate` and `rollback`, run by
 * hand, refuse a bad value; `run`, run by systemd, takes the default instead (a unit that
 * exits on a value restarts for ever) and the agent reports it.
 *
 * @since 0.1.0
 */
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Either from "effect/Either"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { PipelineConfigShape } from "../config/PipelineConfig.js"
import * as Settings from "../config/settings.js"

const text = (name: string, env: string, fallback: string) =>
  Options.text(name).pipe(Options.withFallbackConfig(Config.string(env)), Options.withDefault(fallback))

const seconds = (name: string, env: string, fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  Options.integer(name).pipe(
    Options.withFallbackConfig(Config.integer(env)),
    Options.withDefault(fallback),
    Options.withSchema(
      Schema.Int.pipe(Schema.between(1, max, { message: () => `${name} must be between 1 and ${max}` }))
    )
  )

/**
 * @since 0.1.0
 */
export const pipelineOptions = {
  currentSystemPath: text("current-system-path", "NIXFLEET_AGENT_CURRENT_SYSTEM_PATH", "/run/current-system").pipe(
    Options.withDescription("the link whose basename is the running closure")
  ),
  systemProfile: text("system-profile", "NIXFLEET_AGENT_SYSTEM_PROFILE", "/nix/var/nix/profiles/system").pipe(
    Options.withDescription("the profile that nix-env --set writes")
  ),
  switchMethod: Options.choice("switch-method", ["systemd-run", "direct", "darwin"]).pipe(
    Options.withFallbackConfig(Config.literal("systemd-run", "direct", "darwin")("NIXFLEET_AGENT_SWITCH_METHOD")),
    Options.withDefault(process.platform === "darwin" ? "darwin" as const : "systemd-run" as const),
    Options.withDescription("systemd-run, direct (a detached child: hosts without systemd, tests) or darwin")
  ),
  switchLockPath: text("switch-lock-path", "NIXFLEET_AGENT_SWITCH_LOCK_PATH", "/run/nixos/switch-to-configuration.lock")
    .pipe(Options.withDescription("held by a switch in progress")),
  healthChecksFile: text(
    "health-checks-file",
    "NIXFLEET_AGENT_HEALTH_CHECKS_FILE",
    "/etc/nixfleet/agent/health-checks.json"
  )
    .pipe(Options.withDescription("probe declarations")),
  sustainedFailureSecs: seconds("sustained-failure-secs", "NIXFLEET_AGENT_SUSTAINED_FAILURE_SECS", 120).pipe(
    Options.withDescription("how long an enforce probe may fail before Soaking → Failed")
  ),
  verifyTimeoutSecs: seconds("verify-timeout-secs", "NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS", 300, 359).pipe(
    Options.withDescription("verify budget; must stay below the control plane's confirm deadline (360)")
  ),
  realiseTimeoutSecs: seconds("realise-timeout-secs", "NIXFLEET_AGENT_REALISE_TIMEOUT_SECS", 3600).pipe(
    Options.withDescription("budget for nix-store --realise")
  ),
  stateDir: text("state-dir", "NIXFLEET_AGENT_STATE_DIR", "/var/lib/nixfleet-agent").pipe(
    Options.withDescription("outbox, caches, GC roots and switch logs")
  ),
  logFormat: Options.choice("log-format", ["json", "pretty"]).pipe(
    Options.withFallbackConfig(Config.literal("json", "pretty")("NIXFLEET_AGENT_LOG_FORMAT")),
    Options.withDefault("json" as const),
    Options.withDescription("json (one object per line, for journald) or pretty")
  )
}

/**
 * A value given to `run` (by its flag or its environment variable) that the setting cannot
 * use. `run` does not exit on it: the setting takes its default, and the agent says so once
 * at ERROR and in `status` (see `AgentConfig`'s `settingWarnings`).
 *
 * @since 0.1.0
 */
export interface UnusableValue {
  readonly _tag: "UnusableValue"
  readonly text: string
}

/**
 * The flag of `rule`, read as text from the command line or else its environment variable;
 * an empty value is none (as the `Config` readers take it).
 */
const given = (rule: Settings.SettingRule<unknown>) =>
  Options.text((rule.flag ?? rule.key).replace(/^--/, "")).pipe(
    Options.withFallbackConfig(Config.string(rule.key)),
    Options.optional,
    Options.map(Option.filter((text) => text !== ""))
  )

const parsed = <A, B>(rule: Settings.SettingRule<A>, text: string, some: (value: A) => B): B | UnusableValue =>
  Either.match(rule.parse(text), {
    onLeft: (): B | UnusableValue => ({ _tag: "UnusableValue", text }),
    onRight: some
  })

/**
 * `run`'s flag for a setting with a default: the value, the default when absent, or the text
 * it cannot use.
 *
 * @since 0.1.0
 */
export const lenientOption = <A>(rule: Settings.SettingRule<A>): Options.Options<A | UnusableValue> =>
  given(rule).pipe(
    Options.map(
      Option.match({ onNone: (): A | UnusableValue => rule.fallback, onSome: (text) => parsed(rule, text, identity) })
    )
  )

/**
 * `run`'s flag for a setting that may be left out: `None` when absent.
 *
 * @since 0.1.0
 */
export const lenientOptional = <A>(
  rule: Settings.SettingRule<A | null>
): Options.Options<Option.Option<A> | UnusableValue> =>
  given(rule).pipe(
    Options.map(Option.match({
      onNone: (): Option.Option<A> | UnusableValue => Option.none(),
      onSome: (text) => parsed(rule, text, (value) => Option.fromNullable(value))
    }))
  )

/**
 * A value of a lenient flag as its `ConfigProvider` entry: an unusable text goes through as
 * given, for `AgentConfig` to report.
 *
 * @since 0.1.0
 */
export const configText = (value: string | number | UnusableValue): string =>
  typeof value === "object" ? value.text : String(value)

/**
 * The value `run` itself uses (before the configuration is read): the default for an
 * unusable text.
 *
 * @since 0.1.0
 */
export const usable = <A>(rule: Settings.SettingRule<A>, value: A | UnusableValue): A =>
  isUnusable(value) ? rule.fallback : value

/** @since 0.1.0 */
export const isUnusable = (value: unknown): value is UnusableValue =>
  typeof value === "object" && value !== null && "_tag" in value && value._tag === "UnusableValue"

/**
 * The pipeline's flags as `run` reads them: an unusable value is not an exit but the
 * default (`activate` and `rollback`, run by hand, keep {@link pipelineOptions}' checks).
 *
 * @since 0.1.0
 */
export const runPipelineOptions = {
  currentSystemPath: lenientOption(Settings.currentSystemPath).pipe(
    Options.withDescription("the link whose basename is the running closure (default /run/current-system)")
  ),
  systemProfile: lenientOption(Settings.systemProfile).pipe(
    Options.withDescription("the profile that nix-env --set writes (default /nix/var/nix/profiles/system)")
  ),
  switchMethod: lenientOption(Settings.switchMethod).pipe(
    Options.withDescription("systemd-run (default), direct (a detached child: hosts without systemd, tests) or darwin")
  ),
  switchLockPath: lenientOption(Settings.switchLockPath).pipe(
    Options.withDescription("held by a switch in progress (default /run/nixos/switch-to-configuration.lock)")
  ),
  healthChecksFile: lenientOption(Settings.healthChecksFile).pipe(
    Options.withDescription("probe declarations (default /etc/nixfleet/agent/health-checks.json)")
  ),
  sustainedFailureSecs: lenientOption(Settings.sustainedFailureSecs).pipe(
    Options.withDescription("how long an enforce probe may fail before Soaking → Failed (default 120)")
  ),
  verifyTimeoutSecs: lenientOption(Settings.verifyTimeoutSecs).pipe(
    Options.withDescription("verify budget, at most 359: below the control plane's confirm deadline (default 300)")
  ),
  realiseTimeoutSecs: lenientOption(Settings.realiseTimeoutSecs).pipe(
    Options.withDescription("budget for nix-store --realise (default 3600)")
  ),
  stateDir: lenientOption(Settings.stateDir).pipe(
    Options.withDescription("outbox, caches, GC roots and switch logs (default /var/lib/nixfleet-agent)")
  ),
  logFormat: lenientOption(Settings.logFormat).pipe(
    Options.withDescription("json (default: one object per line, for journald) or pretty")
  )
}

type OptionValue<O> = O extends Options.Options<infer A> ? A : never

/** @since 0.1.0 */
export type RunPipelineOptions = {
  readonly [K in keyof typeof runPipelineOptions]: OptionValue<(typeof runPipelineOptions)[K]>
}

/** @since 0.1.0 */
export type PipelineOptions = {
  readonly [K in keyof typeof pipelineOptions]: OptionValue<(typeof pipelineOptions)[K]>
}

/** @since 0.1.0 */
export const toPipelineConfig = (options: PipelineOptions, storeDir = "/nix/store"): PipelineConfigShape => ({
  currentSystemPath: options.currentSystemPath,
  systemProfile: options.systemProfile,
  switchMethod: options.switchMethod,
  switchLockPath: options.switchLockPath,
  stateDir: options.stateDir,
  verifyTimeoutSecs: options.verifyTimeoutSecs,
  realiseTimeoutSecs: options.realiseTimeoutSecs,
  storeDir
})
