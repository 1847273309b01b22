/**
 * Shared test fixtures: configuration, a signed-manifest set and reducer layers.
 */
import { FleetResolved, type OnHealthFailure, RolloutManifest } from "@nixfleet/proto"
import { Layer, Schema } from "effect"
import { AgentConfig, type AgentConfigShape } from "../../src/config/AgentConfig.js"
import { HostLedger } from "../../src/runtime/HostLedger.js"
import type { ManifestSet } from "../../src/runtime/ManifestSet.js"
import { Reducer } from "../../src/runtime/Reducer.js"
import { type Capacities, defaultCapacities, RuntimeChannels } from "../../src/runtime/RuntimeChannels.js"
import { Shutdown } from "../../src/runtime/Shutdown.js"
import { memoryOutboxLayer } from "./memoryOutbox.js"

export const ROLLOUT = "stable@abc123"
export const TARGET = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-web-01"
export const PRIOR = "9z8y7x6w5v4s3r2q1p0n9m8l7k6j5i4h-nixos-system-web-01"

export const testConfig = (overrides: Partial<AgentConfigShape> = {}): AgentConfigShape => ({
  machineId: "web-01",
  stateDir: "/nonexistent/nixfleet-agent-test",
  controlPlaneUrl: "http://127.0.0.1:9",
  sustainedFailureSecs: 120,
  outboxNonDurableCap: 1000,
  trustFile: "/nonexistent/trust.json",
  manifestFreshnessWindowSecs: 3600,
  caCert: null,
  clientCert: null,
  clientKey: null,
  currentSystemPath: "/nonexistent/current-system",
  healthChecksFile: "/nonexistent/health-checks.json",
  sshHostKeyFile: "/nonexistent/ssh_host_ed25519_key",
  bootstrapTokenFile: null,
  renewalThresholdFraction: null,
  settingWarnings: [],
  ...overrides
})

/** A verified fleet whose channel `stable` uses a policy with the given failure handling. */
export const manifestSet = (onHealthFailure: OnHealthFailure = "rollback-and-halt"): ManifestSet => {
  const fleet = Schema.decodeUnknownSync(FleetResolved)({
    schemaVersion: 1,
    hosts: { "web-01": { platform: "x86_64-linux", tags: [], channel: "stable", closureHash: TARGET, pubkey: null } },
    channels: {
      stable: { rolloutPolicy: "p", reconcileIntervalMinutes: 30, freshnessWindow: 180, signingIntervalMinutes: 60 }
    },
    rolloutPolicies: { p: { strategy: "all-at-once", waves: [], healthGate: {}, onHealthFailure } },
    waves: { stable: [{ hosts: ["web-01"], soakMinutes: 0 }] },
    meta: { schemaVersion: 1, signedAt: "2026-05-01T00:00:00Z", ciCommit: "abc123" }
  })
  const manifest = Schema.decodeUnknownSync(RolloutManifest)({
    schemaVersion: 1,
    displayName: "stable@abc123",
    channel: "stable",
    channelRef: "abc123",
    fleetResolvedHash: "0".repeat(64),
    hostSet: [{ hostname: "web-01", waveIndex: 0, targetClosure: TARGET }],
    healthGate: {},
    disruptionBudgets: [],
    meta: { schemaVersion: 1, signedAt: "2026-05-01T00:00:00Z", ciCommit: "abc123", signatureAlgorithm: "ed25519" }
  })
  return { fleet, fleetHash: "0".repeat(64), rollouts: new Map([["stable", manifest]]) }
}

/** The reducer over an in-memory outbox, with the channels and a shutdown signal exposed. */
export const reducerLayer = (
  config: Partial<AgentConfigShape> = {},
  capacities: Capacities = defaultCapacities
) =>
  Reducer.layer.pipe(
    Layer.provideMerge(Layer.merge(memoryOutboxLayer, HostLedger.layerMemory)),
    Layer.provideMerge(
      Layer.mergeAll(RuntimeChannels.layer(capacities), Shutdown.layer, AgentConfig.make(testConfig(config)))
    )
  )
