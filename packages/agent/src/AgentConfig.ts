/**
 * The agent's configuration, read through Effect's `Config` (so an embedder's
 * `ConfigProvider` decides where it comes from; the CLI maps its flags onto it).
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

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
}

/**
 * The configuration, from `NIXFLEET_AGENT_*` keys of the current `ConfigProvider`.
 *
 * @since 0.1.0
 */
export const config: Config.Config<AgentConfigShape> = Config.all({
  machineId: Config.nonEmptyString("NIXFLEET_AGENT_MACHINE_ID"),
  stateDir: Config.nonEmptyString("NIXFLEET_AGENT_STATE_DIR").pipe(Config.withDefault("/var/lib/nixfleet-agent")),
  controlPlaneUrl: Config.nonEmptyString("NIXFLEET_AGENT_CP_URL"),
  sustainedFailureSecs: Config.integer("NIXFLEET_AGENT_SUSTAINED_FAILURE_SECS").pipe(
    Config.withDefault(120),
    Config.validate({ message: "must be a positive number of seconds", validation: (n) => n > 0 })
  ),
  outboxNonDurableCap: Config.integer("NIXFLEET_AGENT_OUTBOX_NONDURABLE_CAP").pipe(
    Config.withDefault(10_000),
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 })
  )
})

/**
 * @since 0.1.0
 */
export class AgentConfig extends Context.Tag("@nixfleet/agent/AgentConfig")<AgentConfig, AgentConfigShape>() {
  /** Reads the configuration from the current `ConfigProvider`. */
  static readonly layer = Layer.effect(AgentConfig, config)
  /** A fixed configuration, for embedders and tests. */
  static readonly make = (shape: AgentConfigShape) => Layer.succeed(AgentConfig, shape)
}
