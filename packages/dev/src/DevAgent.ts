/**
 * The agent `dev` runs: the same runtime as `run`, configured through a `ConfigProvider`
 * of its own (never the process's environment: a stray `NIXFLEET_AGENT_*` variable must
 * not change the demo), every path in the sandbox, the `direct` switch method, and
 * timings short enough for a demo.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { ActivationPipelineLive, AgentRuntime, PipelineConfig, StatusServer } from "@nixfleet/agent"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Layer from "effect/Layer"
import { HOSTNAME } from "./DemoHost.js"
import { type Environment, withEnvironment } from "./NixEnvironment.js"
import type { SandboxLayout } from "./Sandbox.js"

/**
 * How long an enforce probe may fail before the rollout fails (production: 120 s). The
 * advance tick (5 s) decides when it is noticed.
 *
 * @since 0.1.0
 */
export const SUSTAINED_FAILURE_SECS = 2

/**
 * The agent's configuration.
 *
 * @since 0.1.0
 */
export const configProvider = (settings: {
  readonly sandbox: SandboxLayout
  readonly controlPlaneUrl: string
  readonly trustFile: string
  readonly testMode: boolean
}): ConfigProvider.ConfigProvider => {
  const { sandbox } = settings
  return ConfigProvider.fromMap(
    new Map([
      ["NIXFLEET_AGENT_CP_URL", settings.controlPlaneUrl],
      ["NIXFLEET_AGENT_MACHINE_ID", HOSTNAME],
      ["NIXFLEET_AGENT_TRUST_FILE", settings.trustFile],
      ["NIXFLEET_AGENT_STATE_DIR", sandbox.stateDir],
      ["NIXFLEET_AGENT_CURRENT_SYSTEM_PATH", sandbox.currentSystem],
      ["NIXFLEET_AGENT_SYSTEM_PROFILE", sandbox.profile],
      ["NIXFLEET_AGENT_SWITCH_METHOD", "direct"],
      ["NIXFLEET_AGENT_SWITCH_LOCK_PATH", sandbox.lockPath],
      ["NIXFLEET_AGENT_HEALTH_CHECKS_FILE", sandbox.healthChecksFile],
      // Absent: no evidence probe here, and plain http on loopback needs no client key.
      ["NIXFLEET_AGENT_SSH_HOST_KEY_FILE", `${sandbox.root}/ssh_host_ed25519_key`],
      ["NIXFLEET_AGENT_SUSTAINED_FAILURE_SECS", String(SUSTAINED_FAILURE_SECS)],
      ["NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS", "60"],
      ["NIXFLEET_AGENT_REALISE_TIMEOUT_SECS", "120"],
      ...(settings.testMode ? [["NIXFLEET_AGENT_ACTIVATION_TEST_MODE", "1"] as const] : [])
    ])
  )
}

/**
 * The runtime with the real pipeline; every subprocess it runs (Nix, probes, the switch's
 * watchers) gets `environment` on top of the process's.
 *
 * @since 0.1.0
 */
export const agentLayer = (environment: Environment) =>
  // The status socket too, so `nixfleet-agent status --state-dir <sandbox>/state` answers live.
  StatusServer.pipe(
    Layer.provideMerge(AgentRuntime.layer()),
    Layer.provide(ActivationPipelineLive.pipe(Layer.provide(PipelineConfig.layer))),
    Layer.provide(withEnvironment(environment)),
    Layer.provide(NodeContext.layer)
  )
