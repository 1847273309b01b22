/**
 * The agent's configuration, read through Effect's `Config` (so an embedder's
 * `ConfigProvider` decides where it comes from; the CLI maps its flags onto it). Only the
 * machine id and the control-plane URL are required; any other setting whose value cannot
 * be used takes its default and is listed in `settingWarnings` (the runtime logs each once
 * at ERROR and `status` shows them): a unit is never stopped by an optional value.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import * as Settings from "./settings.js"
import type { SettingWarning } from "./settings.js"

/**
 * @since 0.1.0
 */
export interface AgentConfigShape {
  /** This host's name in the fleet; must match the machine id of its client certificate. */
  readonly machineId: string
  /** Where the outbox, caches and logs live. */
  readonly stateDir: string
  /** Base URL of the control plane, e.g. `https://cp.example:8443`. */
  readonly controlPlaneUrl: string
  /** How long an enforce-mode probe must keep failing before Soaking → Failed. */
  readonly sustainedFailureSecs: number
  /** Probe chatter (non-durable events) kept in the outbox before the oldest is dropped. */
  readonly outboxNonDurableCap: number
  /** The trust roots (`TrustConfig` JSON); re-read on every verification. */
  readonly trustFile: string
  /** How old a signed manifest may be (plus 60 s of clock skew). */
  readonly manifestFreshnessWindowSecs: number
  /** Extra CA (PEM) to trust for the control plane's certificate. */
  readonly caCert: string | null
  /** Client certificate (PEM) for mTLS. */
  readonly clientCert: string | null
  /** Client key: PEM, or the host's OpenSSH ed25519 key. */
  readonly clientKey: string | null
  /** The link whose basename is the running closure. */
  readonly currentSystemPath: string
  /** Probe declarations (`health-checks.json`); re-read on every probe reset. */
  readonly healthChecksFile: string
  /** The host's OpenSSH ed25519 key; its `.pub` verifies compliance evidence. */
  readonly sshHostKeyFile: string
  /** First-boot enrollment token: used when `clientCert` does not exist yet. */
  readonly bootstrapTokenFile: string | null
  /** Renew the client certificate when less than this fraction of its validity remains; null: never. */
  readonly renewalThresholdFraction: number | null
  /** The settings (this shape's, the activation pipeline's, the command line's) given a value that could not be used. */
  readonly settingWarnings: ReadonlyArray<SettingWarning>
}

/** The settings with a default (all but the machine id, state directory and URL), by field. */
const optionalSettings = {
  sustainedFailureSecs: Settings.sustainedFailureSecs,
  outboxNonDurableCap: Settings.outboxNonDurableCap,
  trustFile: Settings.trustFile,
  manifestFreshnessWindowSecs: Settings.manifestFreshnessWindowSecs,
  caCert: Settings.caCert,
  clientCert: Settings.clientCert,
  clientKey: Settings.clientKey,
  currentSystemPath: Settings.currentSystemPath,
  healthChecksFile: Settings.healthChecksFile,
  sshHostKeyFile: Settings.sshHostKeyFile,
  bootstrapTokenFile: Settings.bootstrapTokenFile,
  renewalThresholdFraction: Settings.renewalThresholdFraction
}

/**
 * The configuration, from `NIXFLEET_AGENT_*` keys of the current `ConfigProvider`.
 *
 * @since 0.1.0
 */
export const config: Config.Config<AgentConfigShape> = Config.all({
  machineId: Settings.required(Settings.machineId),
  stateDir: Settings.lenient(Settings.stateDir),
  controlPlaneUrl: Settings.required(Settings.controlPlaneUrl),
  optional: Settings.lenientAll(optionalSettings),
  settingWarnings: Settings.warningsConfig
}).pipe(Config.map(({ optional, ...required }) => ({ ...required, ...optional })))

/**
 * The production defaults of everything but the machine id, state directory and URL.
 *
 * @since 0.1.0
 */
export const defaults: Omit<AgentConfigShape, "machineId" | "stateDir" | "controlPlaneUrl"> = {
  ...Settings.fallbacks(optionalSettings),
  settingWarnings: []
}

/**
 * @since 0.1.0
 */
export class AgentConfig extends Context.Tag("@nixfleet/agent/AgentConfig")<AgentConfig, AgentConfigShape>() {
  /** Reads the configuration from the current `ConfigProvider`. */
  static readonly layer = Layer.effect(AgentConfig, config)
  /** A fixed configuration, for embedders and tests; what is not given takes its default. */
  static readonly make = (
    shape: Pick<AgentConfigShape, "machineId" | "stateDir" | "controlPlaneUrl"> & Partial<AgentConfigShape>
  ) => Layer.succeed(AgentConfig, { ...defaults, ...shape })
}

/**
 * The configuration read from the current `ConfigProvider`: `AgentConfig.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = AgentConfig.layer

/**
 * A fixed configuration: `AgentConfig.make`, as this module's `make`.
 *
 * @since 0.1.0
 */
export const make = AgentConfig.make
