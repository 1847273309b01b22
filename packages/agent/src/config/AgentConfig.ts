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
import * as Option from "effect/Option"
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

const optionalPath = (name: string) => Config.option(Config.nonEmptyString(name)).pipe(Config.map(Option.getOrNull))

/**
 * The configuration, from `NIXFLEET_AGENT_*` keys of the current `ConfigProvider`.
 *
 * @since 0.1.0
 */
export const config: Config.Config<AgentConfigShape> = Config.all({
  machineId: Config.nonEmptyString("NIXFLEET_AGENT_MACHINE_ID"),
  stateDir: Settings.lenient(Settings.stateDir),
  controlPlaneUrl: Config.nonEmptyString("NIXFLEET_AGENT_CP_URL"),
  sustainedFailureSecs: Settings.lenient(Settings.sustainedFailureSecs),
  outboxNonDurableCap: Settings.lenient(Settings.outboxNonDurableCap),
  trustFile: Config.nonEmptyString("NIXFLEET_AGENT_TRUST_FILE").pipe(
    Config.withDefault("/etc/nixfleet/agent/trust.json")
  ),
  manifestFreshnessWindowSecs: Settings.lenient(Settings.manifestFreshnessWindowSecs),
  caCert: optionalPath("NIXFLEET_AGENT_CA_CERT"),
  clientCert: optionalPath("NIXFLEET_AGENT_CLIENT_CERT"),
  clientKey: optionalPath("NIXFLEET_AGENT_CLIENT_KEY"),
  currentSystemPath: Settings.lenient(Settings.currentSystemPath),
  healthChecksFile: Settings.lenient(Settings.healthChecksFile),
  sshHostKeyFile: Settings.lenient(Settings.sshHostKeyFile),
  bootstrapTokenFile: optionalPath("NIXFLEET_AGENT_BOOTSTRAP_TOKEN_FILE"),
  renewalThresholdFraction: Settings.lenient(Settings.renewalThresholdFraction),
  settingWarnings: Settings.warningsConfig
})

/**
 * The production defaults of everything but the machine id, state directory and URL.
 *
 * @since 0.1.0
 */
export const defaults: Omit<AgentConfigShape, "machineId" | "stateDir" | "controlPlaneUrl"> = {
  sustainedFailureSecs: 120,
  outboxNonDurableCap: 10_000,
  trustFile: "/etc/nixfleet/agent/trust.json",
  manifestFreshnessWindowSecs: 3600,
  caCert: null,
  clientCert: null,
  clientKey: null,
  currentSystemPath: "/run/current-system",
  healthChecksFile: "/etc/nixfleet/agent/health-checks.json",
  sshHostKeyFile: "/etc/ssh/ssh_host_ed25519_key",
  bootstrapTokenFile: null,
  renewalThresholdFraction: null,
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
