/**
 * Where the activation pipeline finds the host's system state, and its time budgets. Every
 * path is configurable so that the pipeline runs against a sandbox (tests, `dev` mode)
 * exactly as against a real host.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

/**
 * How the switch is fired.
 *
 * - `systemd-run`: a transient unit (`nixfleet-switch` / `nixfleet-rollback`), detached
 *   from the agent's cgroup, watched through its unit state.
 * - `direct`: a detached child in its own session, output appended to a log under the
 *   state directory, watched through its exit status (hosts without systemd, tests).
 * - `darwin`: nix-darwin's `activate` (and legacy `activate-user`), detached.
 *
 * @since 0.1.0
 */
export type SwitchMethod = "systemd-run" | "direct" | "darwin"

/**
 * @since 0.1.0
 */
export interface PipelineConfigShape {
  /** The link whose basename is the running closure (`/run/current-system`). */
  readonly currentSystemPath: string
  /** The profile `nix-env --set` writes (`/nix/var/nix/profiles/system`). */
  readonly systemProfile: string
  readonly switchMethod: SwitchMethod
  /** Held (shared flock) by a switch in progress: `/run/nixos/switch-to-configuration.lock`. */
  readonly switchLockPath: string
  /** GC roots, switch logs. */
  readonly stateDir: string
  /** Budget for the flip after the switch is fired; below the control plane's 360 s confirm deadline. */
  readonly verifyTimeoutSecs: number
  /** Budget for `nix-store --realise` (downloads can be large). */
  readonly realiseTimeoutSecs: number
  /** The Nix store directory (`/nix/store`). */
  readonly storeDir: string
}

/** systemd-run on Linux, darwin on macOS. */
const defaultSwitchMethod: SwitchMethod = globalThis.process?.platform === "darwin" ? "darwin" : "systemd-run"

const positive = (name: string, fallback: number, max?: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({
      message: max === undefined ? "must be a positive number of seconds" : `must be between 1 and ${max} seconds`,
      validation: (n) => n > 0 && (max === undefined || n <= max)
    })
  )

/**
 * The system profile alone (the activation worker checks rollback targets against its
 * generations).
 *
 * @since 0.1.0
 */
export const systemProfileConfig: Config.Config<string> = Config.nonEmptyString("NIXFLEET_AGENT_SYSTEM_PROFILE").pipe(
  Config.withDefault("/nix/var/nix/profiles/system")
)

/**
 * The pipeline configuration, from `NIXFLEET_AGENT_*` keys of the current `ConfigProvider`.
 *
 * @since 0.1.0
 */
export const pipelineConfig: Config.Config<PipelineConfigShape> = Config.all({
  currentSystemPath: Config.nonEmptyString("NIXFLEET_AGENT_CURRENT_SYSTEM_PATH").pipe(
    Config.withDefault("/run/current-system")
  ),
  systemProfile: systemProfileConfig,
  switchMethod: Config.literal("systemd-run", "direct", "darwin")("NIXFLEET_AGENT_SWITCH_METHOD").pipe(
    Config.withDefault(defaultSwitchMethod)
  ),
  switchLockPath: Config.nonEmptyString("NIXFLEET_AGENT_SWITCH_LOCK_PATH").pipe(
    Config.withDefault("/run/nixos/switch-to-configuration.lock")
  ),
  stateDir: Config.nonEmptyString("NIXFLEET_AGENT_STATE_DIR").pipe(Config.withDefault("/var/lib/nixfleet-agent")),
  // Must stay below the control plane's confirm deadline (360 s): a later answer splits state.
  verifyTimeoutSecs: positive("NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS", 300, 359),
  realiseTimeoutSecs: positive("NIXFLEET_AGENT_REALISE_TIMEOUT_SECS", 3600),
  storeDir: Config.nonEmptyString("NIXFLEET_AGENT_STORE_DIR").pipe(Config.withDefault("/nix/store"))
})

/**
 * @since 0.1.0
 */
export class PipelineConfig
  extends Context.Tag("@nixfleet/agent/PipelineConfig")<PipelineConfig, PipelineConfigShape>()
{
  static readonly layer = Layer.effect(PipelineConfig, pipelineConfig)
  static readonly make = (shape: PipelineConfigShape) => Layer.succeed(PipelineConfig, shape)
}
