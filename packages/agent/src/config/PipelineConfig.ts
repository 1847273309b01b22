/**
 * Where the activation pipeline finds the host's system state, and its time budgets. Every
 * path is configurable so that the pipeline runs against a sandbox (tests, `dev` mode)
 * exactly as against a real host.
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import * as Settings from "./settings.js"

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
export type SwitchMethod = (typeof Settings.SWITCH_METHODS)[number]

/**
 * @since 0.1.0
 */
export interface PipelineConfigShape {
  /** The link whose basename is the running closure. */
  readonly currentSystemPath: string
  /** The profile `nix-env --set` writes. */
  readonly systemProfile: string
  readonly switchMethod: SwitchMethod
  /** Held (shared flock) by a switch in progress. */
  readonly switchLockPath: string
  /** GC roots, switch logs. */
  readonly stateDir: string
  /** Budget for the flip after the switch is fired; below the control plane's 360 s confirm deadline. */
  readonly verifyTimeoutSecs: number
  /** Budget for `nix-store --realise` (downloads can be large). */
  readonly realiseTimeoutSecs: number
  /** The Nix store directory. */
  readonly storeDir: string
}

/**
 * The system profile alone (the activation worker checks rollback targets against its
 * generations).
 *
 * @since 0.1.0
 */
export const systemProfileConfig: Config.Config<string> = Settings.lenient(Settings.systemProfile)

/**
 * The pipeline configuration, from `NIXFLEET_AGENT_*` keys of the current `ConfigProvider`.
 * Every value is optional: one that cannot be used is its default (`AgentConfig`'s
 * `settingWarnings` says so), so reading never fails.
 *
 * @since 0.1.0
 */
export const pipelineConfig: Config.Config<PipelineConfigShape> = Settings.lenientAll({
  currentSystemPath: Settings.currentSystemPath,
  systemProfile: Settings.systemProfile,
  switchMethod: Settings.switchMethod,
  switchLockPath: Settings.switchLockPath,
  stateDir: Settings.stateDir,
  verifyTimeoutSecs: Settings.verifyTimeoutSecs,
  realiseTimeoutSecs: Settings.realiseTimeoutSecs,
  storeDir: Settings.storeDir
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

/**
 * The configuration read from the current `ConfigProvider`: `PipelineConfig.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = PipelineConfig.layer

/**
 * A fixed configuration: `PipelineConfig.make`, as this module's `make`.
 *
 * @since 0.1.0
 */
export const make = PipelineConfig.make
