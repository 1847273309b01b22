/**
 * The options `run`, `activate` and `rollback` share: where the host's system state is,
 * and how the switch runs. Each has an environment variable `NIXFLEET_AGENT_<NAME>` (read
 * when the flag is absent) and the production default.
 *
 * @since 0.1.0
 */
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Schema from "effect/Schema"
import type { PipelineConfigShape } from "../PipelineConfig.js"

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

type OptionValue<O> = O extends Options.Options<infer A> ? A : never

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
