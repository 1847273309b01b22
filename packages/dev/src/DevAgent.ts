/**
 * The agent `dev` runs: the same runtime as `run`, configured through a `ConfigProvider`
 * of its own (never the process's environment: a stray `NIXFLEET_AGENT_*` variable must
 * not change the demo), every path in the sandbox, the `direct` switch method, and
 * timings short enough for a demo.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { NixfleetAgent } from "@nixfleet/agent"
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
 * The agent's settings: the sandbox's paths, the dev control plane, `direct` switches.
 * Nothing comes from the environment.
 *
 * @since 0.1.0
 */
export const agentOptions = (settings: {
  readonly sandbox: SandboxLayout
  readonly controlPlaneUrl: string
  readonly trustFile: string
  readonly testMode: boolean
}): NixfleetAgent.Options => ({
  machineId: HOSTNAME,
  controlPlaneUrl: settings.controlPlaneUrl,
  trustFile: settings.trustFile,
  stateDir: settings.sandbox.stateDir,
  currentSystemPath: settings.sandbox.currentSystem,
  systemProfile: settings.sandbox.profile,
  switchMethod: "direct",
  switchLockPath: settings.sandbox.lockPath,
  healthChecksFile: settings.sandbox.healthChecksFile,
  // Absent: no evidence probe here, and plain http on loopback needs no client key.
  sshHostKeyFile: `${settings.sandbox.root}/ssh_host_ed25519_key`,
  sustainedFailureSecs: SUSTAINED_FAILURE_SECS,
  verifyTimeoutSecs: 60,
  realiseTimeoutSecs: 120,
  activationTestMode: settings.testMode
})

/**
 * The agent as `run` builds it (trust check, one agent per state directory, the status
 * socket, so `nixfleet-agent status --state-dir <sandbox>/state` answers live), with every
 * subprocess it runs (Nix, probes, the switch's watchers) given `environment` on top of
 * the process's.
 *
 * @since 0.1.0
 */
export const agentLayer = (options: NixfleetAgent.Options, environment: Environment) =>
  NixfleetAgent.layer(options).pipe(
    Layer.provide(withEnvironment(environment)),
    Layer.provide(NodeContext.layer)
  )
