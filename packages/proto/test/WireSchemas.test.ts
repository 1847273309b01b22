import { describe, expect, it } from "@effect/vitest"
import {
  ArtifactMeta,
  BootstrapClaims,
  BootstrapToken,
  ChannelEdge,
  DispatchResponse,
  EnrollRequest,
  EnrollResponse,
  EvidenceDetails,
  EvidenceFile,
  FleetResolved,
  HeartbeatRequest,
  HeartbeatResponse,
  HostRolloutSnapshot,
  HostRolloutState,
  implicitAllAtOnceWave,
  normalizeFleetResolved,
  normalizeRolloutPolicy,
  parseRfc3339,
  RenewRequest,
  RenewResponse,
  RolloutManifest,
  RolloutPolicy
} from "@nixfleet/proto"
import * as Arbitrary from "effect/Arbitrary"
import * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import {
  canonicalText,
  decodeOk,
  encodeOk,
  expectRejected,
  expectRoundTrip,
  expectTypeRoundTrip,
  nonObjects
} from "./support.js"

const ROLLOUT = "stable@5f2c0e1a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e"
const TARGET = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-web-01-26.05"
const PREVIOUS = "9z8y7x6w5v4s3r2q1p0n9m8l7k6j5i4h-nixos-system-web-01-26.05"

const utc = (text: string): Date => new Date(text)

/** Every top-level wire schema this suite covers. */
const topLevel: ReadonlyArray<readonly [string, Schema.Schema.AnyNoContext]> = [
  ["HeartbeatRequest", HeartbeatRequest],
  ["HeartbeatResponse", HeartbeatResponse],
  ["HostRolloutSnapshot", HostRolloutSnapshot],
  ["DispatchResponse", DispatchResponse],
  ["ArtifactMeta", ArtifactMeta],
  ["FleetResolved", FleetResolved],
  ["RolloutManifest", RolloutManifest],
  ["EvidenceFile", EvidenceFile],
  ["BootstrapToken", BootstrapToken],
  ["EnrollRequest", EnrollRequest],
  ["EnrollResponse", EnrollResponse],
  ["RenewRequest", RenewRequest],
  ["RenewResponse", RenewResponse]
]

describe("every top-level schema", () => {
  for (const [name, schema] of topLevel) {
    it(`${name} refuses non-objects without throwing`, () => {
      for (const bad of nonObjects) expectRejected(schema, bad)
      // An empty heartbeat answer is legal (see below); every other body has required keys.
      if (schema !== HeartbeatResponse) expectRejected(schema, {})
    })
  }

  it("carries an identifier", () => {
    for (const [name, schema] of topLevel) {
      expect(SchemaAST.getIdentifierAnnotation(schema.ast)).toStrictEqual(Option.some(name))
    }
  })
})

// §3.5 ------------------------------------------------------------------------------------

const soakingSnapshot = {
  rolloutId: ROLLOUT,
  hostname: "web-01",
  channel: "stable",
  state: "Soaking",
  targetClosure: TARGET,
  currentClosureAtDispatch: PREVIOUS,
  currentClosure: TARGET,
  dispatchedAt: "2026-05-17T11:50:00Z",
  dispatchAckedAt: "2026-05-17T11:50:02Z",
  activationStartedAt: "2026-05-17T11:50:03Z",
  activationCompletedAt: "2026-05-17T11:51:10Z",
  soakDueAt: "2026-05-17T12:20:00Z",
  lastEventSeq: 4
}

const pendingSnapshot = {
  rolloutId: "edge@def4567abc123def4567abc123def4567abc123d",
  hostname: "web-01",
  channel: "edge",
  state: "Pending",
  targetClosure: TARGET,
  dispatchedAt: "2026-05-17T11:50:00.250Z",
  lastEventSeq: 0
}

describe("HostRolloutSnapshot", () => {
  it("round-trips a full snapshot", () => {
    const decoded = expectRoundTrip(HostRolloutSnapshot, soakingSnapshot)
    expect(decoded).toStrictEqual({
      ...soakingSnapshot,
      dispatchedAt: utc("2026-05-17T11:50:00Z"),
      dispatchAckedAt: utc("2026-05-17T11:50:02Z"),
      activationStartedAt: utc("2026-05-17T11:50:03Z"),
      activationCompletedAt: utc("2026-05-17T11:51:10Z"),
      soakDueAt: utc("2026-05-17T12:20:00Z")
    })
  })

  it("omits absent fields and reads null like absent", () => {
    const decoded = expectRoundTrip(HostRolloutSnapshot, pendingSnapshot)
    expect(decoded).toMatchObject({
      currentClosureAtDispatch: null,
      currentClosure: null,
      dispatchAckedAt: null,
      activationStartedAt: null,
      activationCompletedAt: null,
      soakDueAt: null
    })
    const withNulls = decodeOk(HostRolloutSnapshot, {
      ...pendingSnapshot,
      currentClosureAtDispatch: null,
      currentClosure: null,
      dispatchAckedAt: null,
      activationStartedAt: null,
      activationCompletedAt: null,
      soakDueAt: null
    })
    expect(withNulls).toStrictEqual(decoded)
    expect(encodeOk(HostRolloutSnapshot, withNulls)).toStrictEqual(pendingSnapshot)
  })

  it("keeps the empty currentClosureAtDispatch of a synthesised acknowledgement", () => {
    const json = { ...pendingSnapshot, state: "Converged", currentClosureAtDispatch: "", lastEventSeq: 3 }
    expect(expectRoundTrip(HostRolloutSnapshot, json).currentClosureAtDispatch).toBe("")
  })

  it("accepts the seven states", () => {
    for (const state of ["Pending", "Activating", "Deferred", "Soaking", "Converged", "Failed", "Reverted"]) {
      expectRoundTrip(HostRolloutSnapshot, { ...soakingSnapshot, state })
    }
  })

  it("refuses legacy and mis-cased state names with the upstream message", () => {
    for (const legacy of ["Queued", "Dispatched", "ConfirmWindow", "Healthy", "Soaked", "pending", "SOAKING", ""]) {
      expectRejected(
        HostRolloutSnapshot,
        { ...soakingSnapshot, state: legacy },
        `unknown host_rollout_state: "${legacy}"`
      )
      expect(expectRejected(HostRolloutState, legacy)).toBe(`unknown host_rollout_state: "${legacy}"`)
    }
    expect(expectRejected(HostRolloutState, 3)).toBe("unknown host_rollout_state: 3")
  })

  it("refuses out-of-range lastEventSeq", () => {
    expectRoundTrip(HostRolloutSnapshot, { ...soakingSnapshot, lastEventSeq: Number.MAX_SAFE_INTEGER })
    for (const bad of [2 ** 53, -1, 4.5, "4", null]) {
      expectRejected(HostRolloutSnapshot, { ...soakingSnapshot, lastEventSeq: bad })
    }
  })

  it("refuses snake_case keys and bad timestamps", () => {
    const { rolloutId: _r, lastEventSeq: _s, ...rest } = soakingSnapshot
    expectRejected(HostRolloutSnapshot, { ...rest, rollout_id: ROLLOUT, last_event_seq: 4 }, "rolloutId")
    expectRejected(HostRolloutSnapshot, { ...soakingSnapshot, dispatchedAt: "2026-05-17T11:50:00" })
    expectRejected(HostRolloutSnapshot, { ...soakingSnapshot, soakDueAt: "2026-02-30T00:00:00Z" })
  })

  it.prop("round-trips from the type side", [Arbitrary.make(HostRolloutSnapshot)], ([value]) => {
    expectTypeRoundTrip(HostRolloutSnapshot, value)
  })
})

// §2.1 ------------------------------------------------------------------------------------

describe("HeartbeatRequest", () => {
  const json = { hostname: "web-01", current_closure: TARGET, at: "2026-05-17T12:00:00Z" }

  it("round-trips the reference agent's heartbeat, camelCase in memory", () => {
    expect(expectRoundTrip(HeartbeatRequest, json)).toStrictEqual({
      hostname: "web-01",
      rolloutId: null,
      currentClosure: TARGET,
      at: utc("2026-05-17T12:00:00Z")
    })
  })

  it("writes rollout_id when set and omits both optional keys when null", () => {
    expectRoundTrip(HeartbeatRequest, { ...json, rollout_id: ROLLOUT })
    expectRoundTrip(HeartbeatRequest, { hostname: "web-01", at: "2026-05-17T12:00:00.250Z" })
    const decoded = decodeOk(HeartbeatRequest, {
      hostname: "web-01",
      rollout_id: null,
      current_closure: null,
      at: json.at
    })
    expect(encodeOk(HeartbeatRequest, decoded)).toStrictEqual({ hostname: "web-01", at: json.at })
  })

  it("does not take camelCase keys for the snake_case ones", () => {
    const decoded = decodeOk(HeartbeatRequest, {
      hostname: "web-01",
      rolloutId: ROLLOUT,
      currentClosure: TARGET,
      at: json.at
    })
    expect(decoded).toMatchObject({ rolloutId: null, currentClosure: null })
  })

  it("refuses a missing or bad at", () => {
    expectRejected(HeartbeatRequest, { hostname: "web-01" }, "at")
    expectRejected(HeartbeatRequest, { hostname: "web-01", at: "2026-05-17T12:00:00" })
    expectRejected(HeartbeatRequest, { hostname: "web-01", at: "2026-05-17T24:00:00Z" })
    expectRejected(HeartbeatRequest, { ...json, current_closure: 7 })
  })

  it.prop("round-trips from the type side", [Arbitrary.make(HeartbeatRequest)], ([value]) => {
    expectTypeRoundTrip(HeartbeatRequest, value)
  })
})

describe("HeartbeatResponse", () => {
  it("round-trips an answer with bootstrap snapshots", () => {
    const json = { received_at: "2026-05-17T12:00:00Z", bootstrap_rollouts: [soakingSnapshot, pendingSnapshot] }
    const decoded = expectRoundTrip(HeartbeatResponse, json)
    expect(decoded.receivedAt).toStrictEqual(utc("2026-05-17T12:00:00Z"))
    expect(decoded.bootstrapRollouts.map((snapshot) => snapshot.state)).toStrictEqual(["Soaking", "Pending"])
  })

  it("omits bootstrap_rollouts when empty and reads absent or null as empty", () => {
    const json = { received_at: "2026-05-17T12:00:00.250Z" }
    expect(expectRoundTrip(HeartbeatResponse, json).bootstrapRollouts).toStrictEqual([])
    expect(encodeOk(HeartbeatResponse, decodeOk(HeartbeatResponse, { ...json, bootstrap_rollouts: [] })))
      .toStrictEqual(json)
    expect(decodeOk(HeartbeatResponse, { ...json, bootstrap_rollouts: null }).bootstrapRollouts).toStrictEqual([])
  })

  it("always writes received_at, null when unset, and reads an empty answer", () => {
    expect(expectRoundTrip(HeartbeatResponse, { received_at: null }).receivedAt).toBeNull()
    const empty = decodeOk(HeartbeatResponse, {})
    expect(empty).toStrictEqual({ receivedAt: null, bootstrapRollouts: [] })
    expect(encodeOk(HeartbeatResponse, empty)).toStrictEqual({ received_at: null })
  })

  it("does not take camelCase keys for the snake_case ones", () => {
    const decoded = decodeOk(HeartbeatResponse, {
      receivedAt: "2026-05-17T12:00:00Z",
      bootstrapRollouts: [soakingSnapshot]
    })
    expect(decoded).toStrictEqual({ receivedAt: null, bootstrapRollouts: [] })
  })

  it("refuses a bad snapshot or a bad received_at", () => {
    expectRejected(HeartbeatResponse, {
      received_at: null,
      bootstrap_rollouts: [{ ...soakingSnapshot, state: "Healthy" }]
    }, "unknown host_rollout_state: \"Healthy\"")
    expectRejected(HeartbeatResponse, {
      received_at: null,
      bootstrap_rollouts: [{ ...soakingSnapshot, lastEventSeq: -1 }]
    })
    expectRejected(HeartbeatResponse, { received_at: null, bootstrap_rollouts: soakingSnapshot })
    expectRejected(HeartbeatResponse, { received_at: "yesterday" })
  })

  it.prop("round-trips from the type side", [Arbitrary.make(HeartbeatResponse)], ([value]) => {
    expectTypeRoundTrip(HeartbeatResponse, value)
  })
})

// §2.2 ------------------------------------------------------------------------------------

describe("DispatchResponse", () => {
  const json = {
    hostname: "web-01",
    rollout_id: ROLLOUT,
    target_closure: TARGET,
    soak_due_at: "2026-05-17T12:20:00Z",
    enqueued_at: "2026-05-17T11:50:00Z"
  }

  it("round-trips the spec example, camelCase in memory", () => {
    expect(expectRoundTrip(DispatchResponse, json)).toStrictEqual({
      hostname: "web-01",
      rolloutId: ROLLOUT,
      targetClosure: TARGET,
      soakDueAt: utc("2026-05-17T12:20:00Z"),
      enqueuedAt: utc("2026-05-17T11:50:00Z")
    })
  })

  it("requires every field", () => {
    for (const key of Object.keys(json)) {
      const partial: Record<string, unknown> = { ...json }
      delete partial[key]
      expectRejected(DispatchResponse, partial, key)
      expectRejected(DispatchResponse, { ...json, [key]: null })
    }
  })

  it("refuses camelCase keys", () => {
    expectRejected(DispatchResponse, {
      hostname: "web-01",
      rolloutId: ROLLOUT,
      targetClosure: TARGET,
      soakDueAt: json.soak_due_at,
      enqueuedAt: json.enqueued_at
    })
  })

  it("refuses bad timestamps", () => {
    expectRejected(DispatchResponse, { ...json, soak_due_at: "2026-05-17T12:20:00" })
    expectRejected(DispatchResponse, { ...json, enqueued_at: "2026-02-30T11:50:00Z" })
  })

  it.prop("round-trips from the type side", [Arbitrary.make(DispatchResponse)], ([value]) => {
    expectTypeRoundTrip(DispatchResponse, value)
  })
})

// §3.7 ------------------------------------------------------------------------------------

describe("ArtifactMeta", () => {
  it("writes signedAt and ciCommit as null and omits signatureAlgorithm when unset", () => {
    expect(expectRoundTrip(ArtifactMeta, { schemaVersion: 1, signedAt: null, ciCommit: null })).toStrictEqual({
      schemaVersion: 1,
      signedAt: null,
      ciCommit: null,
      signatureAlgorithm: null
    })
    expect(encodeOk(ArtifactMeta, decodeOk(ArtifactMeta, { schemaVersion: 1 }))).toStrictEqual({
      schemaVersion: 1,
      signedAt: null,
      ciCommit: null
    })
    expect(encodeOk(ArtifactMeta, decodeOk(ArtifactMeta, { schemaVersion: 1, signatureAlgorithm: null })))
      .toStrictEqual({ schemaVersion: 1, signedAt: null, ciCommit: null })
  })

  it("round-trips a stamped meta and keeps any algorithm name", () => {
    const json = {
      schemaVersion: 1,
      signedAt: "2026-04-24T10:00:00Z",
      ciCommit: "deadbeef",
      signatureAlgorithm: "ed25519"
    }
    expect(expectRoundTrip(ArtifactMeta, json).signedAt).toStrictEqual(utc("2026-04-24T10:00:00Z"))
    expectRoundTrip(ArtifactMeta, { ...json, signatureAlgorithm: "ecdsa-p256" })
    expectRoundTrip(ArtifactMeta, { ...json, signatureAlgorithm: "ml-dsa-65" })
  })

  it("refuses a bad schemaVersion or signedAt", () => {
    expectRejected(ArtifactMeta, { schemaVersion: -1 })
    expectRejected(ArtifactMeta, { schemaVersion: 2 ** 32 })
    expectRejected(ArtifactMeta, { schemaVersion: "1" })
    expectRejected(ArtifactMeta, { schemaVersion: 1, signedAt: "2026-04-24T10:00:00" })
  })

  it.prop("round-trips from the type side", [Arbitrary.make(ArtifactMeta)], ([value]) => {
    expectTypeRoundTrip(ArtifactMeta, value)
  })
})

/** §8.2 V2, the canonical fleet.resolved with the current `platform` key (737 bytes). */
const V2_CANONICAL =
  `{"channelEdges":[],"channels":{"stable":{"freshnessWindow":180,"reconcileIntervalMinutes":30,"rolloutPolicy":"none","signingIntervalMinutes":60}},"disruptionBudgets":[],"edges":[],"hosts":{"h1":{"channel":"stable","closureHash":"sha256-abc123","platform":"x86_64-linux","pubkey":"ssh-ed25519 AAAA...","tags":["production"]}},"meta":{"ciCommit":"deadbeef","schemaVersion":1,"signatureAlgorithm":"ed25519","signedAt":"2026-04-24T10:00:00Z"},"rolloutPolicies":{"none":{"healthGate":{"systemdFailedUnits":{"max":0}},"onHealthFailure":"halt","strategy":"all-at-once","waves":[{"selector":{"all":true,"channel":null,"hosts":[],"tags":[],"tagsAny":[]},"soakMinutes":0}]}},"schemaVersion":1,"waves":{"stable":[{"hosts":["h1"],"soakMinutes":0}]}}`

/** The repository's every-nullable fixture, with `platform` and without the dropped channel fields. */
const everyNullable = {
  channels: {
    stable: { freshnessWindow: 180, reconcileIntervalMinutes: 30, rolloutPolicy: "none", signingIntervalMinutes: 60 }
  },
  disruptionBudgets: [],
  edges: [],
  hosts: { h1: { channel: "stable", closureHash: null, pubkey: null, platform: "x86_64-linux", tags: [] } },
  meta: { ciCommit: null, schemaVersion: 1, signedAt: null },
  rolloutPolicies: {
    none: {
      healthGate: {},
      onHealthFailure: "halt",
      strategy: "all-at-once",
      waves: [{ selector: { all: true, channel: null, hosts: [], tags: [], tagsAny: [] }, soakMinutes: 0 }]
    }
  },
  schemaVersion: 1,
  waves: { stable: [{ hosts: ["h1"], soakMinutes: 0 }] }
}

/** A fleet exercising every optional part. */
const richFleet = {
  schemaVersion: 1,
  hosts: {
    "web-01": {
      platform: "x86_64-linux",
      tags: ["production", "web"],
      channel: "stable",
      closureHash: TARGET,
      pubkey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake root@web-01",
      pin: { commit: "def4567", reason: "kernel regression", expiresAt: "2026-06-01T00:00:00Z" }
    },
    "db-01": {
      platform: "aarch64-darwin",
      tags: [],
      channel: "edge",
      closureHash: null,
      pubkey: null,
      pin: { commit: "abc1234", reason: "hold" }
    }
  },
  channels: {
    stable: { rolloutPolicy: "canary", reconcileIntervalMinutes: 30, freshnessWindow: 180, signingIntervalMinutes: 60 },
    edge: { rolloutPolicy: "fast", reconcileIntervalMinutes: 5, freshnessWindow: 60, signingIntervalMinutes: 30 }
  },
  rolloutPolicies: {
    canary: {
      strategy: "canary",
      waves: [
        { selector: { tags: ["canary"], tagsAny: [], hosts: [], channel: null, all: false }, soakMinutes: 30 },
        {
          selector: { tags: [], tagsAny: ["web", "db"], hosts: ["web-01"], channel: "stable", all: false },
          soakMinutes: 0
        }
      ],
      healthGate: {},
      onHealthFailure: "rollback-and-halt"
    },
    fast: {
      strategy: "all-at-once",
      waves: [],
      healthGate: { systemdFailedUnits: { max: 2 } },
      onHealthFailure: "halt"
    }
  },
  waves: { stable: [{ hosts: ["web-01"], soakMinutes: 30 }], edge: [] },
  edges: [{ gated: "web-01", gates: "db-01", reason: "schema first" }, { gated: "a", gates: "b", reason: null }],
  channelEdges: [{ gates: "edge", gated: "stable", reason: "edge first" }, { gates: "x", gated: "y", reason: null }],
  disruptionBudgets: [
    {
      selector: { tags: ["production"], tagsAny: [], hosts: [], channel: null, all: false },
      maxInFlight: 1,
      maxInFlightPct: null
    },
    { selector: { tags: [], tagsAny: [], hosts: [], channel: null, all: true }, maxInFlight: null, maxInFlightPct: 25 }
  ],
  meta: {
    schemaVersion: 1,
    signedAt: "2026-05-17T12:00:00.250Z",
    ciCommit: "5f2c0e1a",
    signatureAlgorithm: "ecdsa-p256"
  }
}

describe("FleetResolved", () => {
  it("round-trips V2 byte for byte after canonicalisation", () => {
    expect(V2_CANONICAL).toHaveLength(737)
    const json: unknown = JSON.parse(V2_CANONICAL)
    const decoded = expectRoundTrip(FleetResolved, json)
    expect(canonicalText(encodeOk(FleetResolved, decoded))).toBe(V2_CANONICAL)
    expect(decoded.hosts["h1"]).toStrictEqual({
      platform: "x86_64-linux",
      tags: ["production"],
      channel: "stable",
      closureHash: "sha256-abc123",
      pubkey: "ssh-ed25519 AAAA...",
      pin: null
    })
    expect(decoded.meta.signedAt).toStrictEqual(utc("2026-04-24T10:00:00Z"))
    expect(decoded.rolloutPolicies["none"]?.healthGate).toStrictEqual({ systemdFailedUnits: { max: 0 } })
  })

  it("round-trips a fleet using every optional part", () => {
    const decoded = expectRoundTrip(FleetResolved, richFleet)
    expect(decoded.hosts["db-01"]?.pin).toStrictEqual({ commit: "abc1234", reason: "hold", expiresAt: null })
    expect(decoded.hosts["web-01"]?.pin?.expiresAt).toStrictEqual(utc("2026-06-01T00:00:00Z"))
  })

  it("writes explicit nulls where upstream does and adds the defaulted channelEdges", () => {
    const decoded = decodeOk(FleetResolved, everyNullable)
    expect(encodeOk(FleetResolved, decoded)).toStrictEqual({ ...everyNullable, channelEdges: [] })
  })

  it("fills the serde defaults and writes them back", () => {
    const { rolloutPolicies: _p, edges: _e, disruptionBudgets: _d, ...minimal } = everyNullable
    const decoded = decodeOk(FleetResolved, {
      ...minimal,
      hosts: { h1: { channel: "stable", platform: "x86_64-linux", tags: [] } },
      meta: { schemaVersion: 1 }
    })
    expect(decoded.rolloutPolicies).toStrictEqual({})
    expect(decoded.edges).toStrictEqual([])
    expect(decoded.channelEdges).toStrictEqual([])
    expect(decoded.disruptionBudgets).toStrictEqual([])
    expect(decoded.hosts["h1"]).toMatchObject({ closureHash: null, pubkey: null, pin: null })
    expect(encodeOk(FleetResolved, decoded)).toStrictEqual({
      ...minimal,
      hosts: { h1: { channel: "stable", platform: "x86_64-linux", tags: [], closureHash: null, pubkey: null } },
      meta: { schemaVersion: 1, signedAt: null, ciCommit: null },
      rolloutPolicies: {},
      edges: [],
      channelEdges: [],
      disruptionBudgets: []
    })
  })

  it("fills selector and health-gate defaults", () => {
    const fleet = {
      ...everyNullable,
      rolloutPolicies: {
        p: { strategy: "canary", waves: [{ selector: { tags: ["a"] }, soakMinutes: 5 }], onHealthFailure: "halt" }
      }
    }
    const decoded = decodeOk(FleetResolved, fleet)
    expect(decoded.rolloutPolicies["p"]).toStrictEqual({
      strategy: "canary",
      waves: [{ selector: { tags: ["a"], tagsAny: [], hosts: [], channel: null, all: false }, soakMinutes: 5 }],
      healthGate: { systemdFailedUnits: null },
      onHealthFailure: "halt"
    })
    expect(encodeOk(FleetResolved, decoded).rolloutPolicies?.["p"]).toStrictEqual({
      strategy: "canary",
      waves: [{ selector: { tags: ["a"], tagsAny: [], hosts: [], channel: null, all: false }, soakMinutes: 5 }],
      healthGate: {},
      onHealthFailure: "halt"
    })
  })

  it("drops fields the Rust types ignore", () => {
    const json: Record<string, unknown> = JSON.parse(V2_CANONICAL)
    const withExtras = {
      ...json,
      effectiveHealthChecks: { h1: [] },
      rolloutPolicies: {
        none: {
          healthGate: { systemdFailedUnits: { max: 0 } },
          onHealthFailure: "halt",
          strategy: "all-at-once",
          waves: [{
            selector: { all: true, channel: null, hosts: [], tags: [], tagsAny: [], and: [], not: null },
            soakMinutes: 0
          }]
        }
      }
    }
    expect(canonicalText(encodeOk(FleetResolved, decodeOk(FleetResolved, withExtras)))).toBe(V2_CANONICAL)
  })

  it("reads the v0.2 reference's `system` key and writes it back as it was read", () => {
    // The v0.2 reference's golden fleet (its Rust `Host` and the Nix emitter write `system`).
    const v3 = V2_CANONICAL.replace(
      `"platform":"x86_64-linux","pubkey":"ssh-ed25519 AAAA..."`,
      `"pubkey":"ssh-ed25519 AAAA...","system":"x86_64-linux"`
    )
    const decoded = expectRoundTrip(FleetResolved, JSON.parse(v3))
    expect(canonicalText(encodeOk(FleetResolved, decoded))).toBe(v3)
    expect(decoded.hosts["h1"]).toStrictEqual({
      platform: "x86_64-linux",
      platformKey: "system",
      tags: ["production"],
      channel: "stable",
      closureHash: "sha256-abc123",
      pubkey: "ssh-ed25519 AAAA...",
      pin: null
    })
    const { platform, ...nullable } = everyNullable.hosts.h1
    expectRoundTrip(FleetResolved, {
      ...everyNullable,
      channelEdges: [],
      hosts: { h1: { ...nullable, system: platform } }
    })
  })

  it("keeps each host's own key in a fleet that mixes both", () => {
    const { platform: _web, ...web } = richFleet.hosts["web-01"]
    const mixed = { ...richFleet, hosts: { ...richFleet.hosts, "web-01": { ...web, system: "x86_64-linux" } } }
    const decoded = expectRoundTrip(FleetResolved, mixed)
    expect(decoded.hosts["web-01"]?.platformKey).toBe("system")
    expect(decoded.hosts["db-01"]).not.toHaveProperty("platformKey")
  })

  it("writes `platform` for a host made in memory without a key, `system` when asked", () => {
    const host = { platform: "aarch64-linux", tags: [], channel: "stable", closureHash: null, pubkey: null, pin: null }
    const fleet = decodeOk(FleetResolved, everyNullable)
    const encoded = (h1: typeof host & { readonly platformKey?: "system" }) =>
      encodeOk(FleetResolved, { ...fleet, hosts: { h1 } }).hosts?.["h1"]
    expect(encoded(host)).toStrictEqual({
      platform: "aarch64-linux",
      tags: [],
      channel: "stable",
      closureHash: null,
      pubkey: null
    })
    expect(encoded({ ...host, platformKey: "system" })).toStrictEqual({
      system: "aarch64-linux",
      tags: [],
      channel: "stable",
      closureHash: null,
      pubkey: null
    })
  })

  it("refuses a host with both keys or neither, naming the field", () => {
    const json: { hosts: { h1: Record<string, unknown> } } = JSON.parse(V2_CANONICAL)
    const { platform, ...host } = json.hosts.h1
    expectRejected(
      FleetResolved,
      { ...json, hosts: { h1: { ...host, platform, system: platform } } },
      "duplicate field `system`"
    )
    expectRejected(
      FleetResolved,
      { ...json, hosts: { h1: host } },
      "missing field `system` (or its later name \"platform\")"
    )
    expectRejected(FleetResolved, { ...json, hosts: { h1: { ...host, system: 42 } } }, "system")
    expectRejected(FleetResolved, { ...json, hosts: { h1: [] } })
  })

  it("does not take a `platformKey` from the wire", () => {
    const json: { hosts: { h1: Record<string, unknown> } } = JSON.parse(V2_CANONICAL)
    const decoded = decodeOk(FleetResolved, { ...json, hosts: { h1: { ...json.hosts.h1, platformKey: "system" } } })
    expect(canonicalText(encodeOk(FleetResolved, decoded))).toBe(V2_CANONICAL)
  })

  it("refuses required fields that are missing or null", () => {
    const json: Record<string, unknown> = JSON.parse(V2_CANONICAL)
    for (const key of ["schemaVersion", "hosts", "channels", "waves", "meta"]) {
      const partial = { ...json }
      delete partial[key]
      expectRejected(FleetResolved, partial, key)
    }
    expectRejected(FleetResolved, { ...json, edges: null })
    expectRejected(FleetResolved, { ...json, rolloutPolicies: null })
  })

  it("refuses an unknown health-failure policy and out-of-range numbers", () => {
    const json = JSON.parse(V2_CANONICAL)
    const policy = json.rolloutPolicies.none
    expectRejected(FleetResolved, { ...json, rolloutPolicies: { none: { ...policy, onHealthFailure: "halt-only" } } })
    expectRejected(FleetResolved, {
      ...json,
      channels: { stable: { ...json.channels.stable, freshnessWindow: -180 } }
    })
    expectRejected(FleetResolved, { ...json, waves: { stable: [{ hosts: ["h1"], soakMinutes: 2 ** 32 }] } })
    expectRejected(FleetResolved, {
      ...json,
      disruptionBudgets: [{ selector: {}, maxInFlight: 1.5, maxInFlightPct: null }]
    })
  })

  it.prop("round-trips from the type side", [Arbitrary.make(FleetResolved)], ([value]) => {
    expectTypeRoundTrip(FleetResolved, value)
  }, { fastCheck: { numRuns: 40 } })
})

describe("ChannelEdge", () => {
  it("reads the legacy before/after keys and writes gates/gated", () => {
    const decoded = decodeOk(ChannelEdge, { before: "edge", after: "stable", reason: "test canary" })
    expect(decoded).toStrictEqual({ gates: "edge", gated: "stable", reason: "test canary" })
    expect(encodeOk(ChannelEdge, decoded)).toStrictEqual({ gates: "edge", gated: "stable", reason: "test canary" })
  })

  it("accepts one alias of a pair next to the current name of the other", () => {
    expect(decodeOk(ChannelEdge, { gates: "edge", after: "stable" })).toStrictEqual({
      gates: "edge",
      gated: "stable",
      reason: null
    })
    expect(decodeOk(ChannelEdge, { before: "edge", gated: "stable", reason: null })).toStrictEqual({
      gates: "edge",
      gated: "stable",
      reason: null
    })
  })

  it("writes a missing reason as null", () => {
    expect(encodeOk(ChannelEdge, decodeOk(ChannelEdge, { gates: "a", gated: "b" }))).toStrictEqual({
      gates: "a",
      gated: "b",
      reason: null
    })
  })

  it("refuses a field given under both names, or under neither", () => {
    expectRejected(ChannelEdge, { gates: "a", before: "a", gated: "b" }, "duplicate field `gates`")
    expectRejected(ChannelEdge, { gates: "a", gated: "b", after: "c" }, "duplicate field `gated`")
    expectRejected(ChannelEdge, { gated: "b" }, "missing field `gates`")
    expectRejected(ChannelEdge, { before: "a" }, "missing field `gated`")
    expectRejected(ChannelEdge, { gates: 1, gated: "b" })
    expectRejected(ChannelEdge, { gates: null, before: "a", gated: "b" })
    for (const bad of nonObjects) expectRejected(ChannelEdge, bad)
  })

  it("normalises legacy keys inside a fleet", () => {
    const json = JSON.parse(V2_CANONICAL)
    const decoded = decodeOk(FleetResolved, {
      ...json,
      channelEdges: [{ before: "edge", after: "stable", reason: null }]
    })
    expect(encodeOk(FleetResolved, decoded).channelEdges).toStrictEqual([{
      gates: "edge",
      gated: "stable",
      reason: null
    }])
  })
})

describe("normalizeRolloutPolicy", () => {
  const allAtOnce = decodeOk(RolloutPolicy, { strategy: "all-at-once", waves: [], onHealthFailure: "halt" })

  it("gives an all-at-once policy without waves one implicit wave over every host", () => {
    const normalized = normalizeRolloutPolicy(allAtOnce)
    expect(normalized).toStrictEqual({
      strategy: "all-at-once",
      waves: [{ selector: { tags: [], tagsAny: [], hosts: [], channel: null, all: true }, soakMinutes: 0 }],
      healthGate: { systemdFailedUnits: null },
      onHealthFailure: "halt"
    })
    expect(normalized.waves[0]).toStrictEqual(implicitAllAtOnceWave)
    expect(allAtOnce.waves).toStrictEqual([])
  })

  it("leaves other policies alone", () => {
    const canary = decodeOk(RolloutPolicy, { strategy: "canary", waves: [], onHealthFailure: "halt" })
    expect(normalizeRolloutPolicy(canary)).toBe(canary)
    const withWaves = decodeOk(RolloutPolicy, {
      strategy: "all-at-once",
      waves: [{ selector: { hosts: ["h1"] }, soakMinutes: 10 }],
      onHealthFailure: "rollback-and-halt"
    })
    expect(normalizeRolloutPolicy(withWaves)).toBe(withWaves)
  })

  it("normalises every policy of a fleet in memory only", () => {
    const fleet = decodeOk(FleetResolved, richFleet)
    const normalized = normalizeFleetResolved(fleet)
    expect(normalized.rolloutPolicies["fast"]?.waves).toStrictEqual([implicitAllAtOnceWave])
    expect(normalized.rolloutPolicies["canary"]).toBe(fleet.rolloutPolicies["canary"])
    expect(fleet.rolloutPolicies["fast"]?.waves).toStrictEqual([])
    expect(encodeOk(FleetResolved, fleet)).toStrictEqual(richFleet)
  })

  it("gives the state machine the policy shape it takes", () => {
    const accepts = (
      policy: {
        strategy: string
        waves: ReadonlyArray<{ selector: unknown; soakMinutes: number }>
        healthGate: object
        onHealthFailure: "halt" | "rollback-and-halt"
      }
    ) => policy.onHealthFailure
    expect(accepts(normalizeRolloutPolicy(allAtOnce))).toBe("halt")
  })
})

/** §8.2 V1, the canonical rollout manifest. */
const V1_CANONICAL =
  `{"channel":"stable","channelRef":"def4567abc123def4567abc123def4567abc123d","displayName":"stable@def4567","disruptionBudgets":[],"fleetResolvedHash":"1111111111111111111111111111111111111111111111111111111111111111","healthGate":{},"hostSet":[{"hostname":"agent-01","targetClosure":"0000000000000000000000000000000000000000-host-a","waveIndex":0},{"hostname":"agent-02","targetClosure":"1111111111111111111111111111111111111111-host-b","waveIndex":1}],"meta":{"ciCommit":"def45678","schemaVersion":1,"signatureAlgorithm":"ed25519","signedAt":"2026-04-30T12:00:00Z"},"schemaVersion":1}`

describe("RolloutManifest", () => {
  it("round-trips V1 byte for byte after canonicalisation", () => {
    const json: unknown = JSON.parse(V1_CANONICAL)
    const decoded = expectRoundTrip(RolloutManifest, json)
    expect(canonicalText(encodeOk(RolloutManifest, decoded))).toBe(V1_CANONICAL)
    expect(decoded.hostSet.map((host) => [host.hostname, host.waveIndex])).toStrictEqual([["agent-01", 0], [
      "agent-02",
      1
    ]])
    expect(decoded.healthGate).toStrictEqual({ systemdFailedUnits: null })
    expect(decoded.meta.signedAt).toStrictEqual(utc("2026-04-30T12:00:00Z"))
  })

  it("keeps the host order it was given", () => {
    const json = JSON.parse(V1_CANONICAL)
    const reversed = { ...json, hostSet: [...json.hostSet].reverse() }
    expect(encodeOk(RolloutManifest, decodeOk(RolloutManifest, reversed))).toStrictEqual(reversed)
  })

  it("round-trips disruption budgets and defaults them to []", () => {
    const json = JSON.parse(V1_CANONICAL)
    expectRoundTrip(RolloutManifest, {
      ...json,
      healthGate: { systemdFailedUnits: { max: 0 } },
      disruptionBudgets: [
        {
          selector: { tags: ["production"], tagsAny: [], hosts: [], channel: null, all: false },
          hosts: ["agent-01", "agent-02"],
          maxInFlight: 1,
          maxInFlightPct: null
        }
      ]
    })
    const { disruptionBudgets: _d, ...withoutBudgets } = json
    expect(encodeOk(RolloutManifest, decodeOk(RolloutManifest, withoutBudgets))).toStrictEqual(json)
  })

  it("ignores the legacy complianceFrameworks field", () => {
    const json = JSON.parse(V1_CANONICAL)
    expect(encodeOk(RolloutManifest, decodeOk(RolloutManifest, { ...json, complianceFrameworks: ["anssi-bp028"] })))
      .toStrictEqual(json)
  })

  it("refuses out-of-range wave indexes and missing fields", () => {
    const json = JSON.parse(V1_CANONICAL)
    const host = json.hostSet[0]
    expectRoundTrip(RolloutManifest, { ...json, hostSet: [{ ...host, waveIndex: 2 ** 32 - 1 }] })
    expectRejected(RolloutManifest, { ...json, hostSet: [{ ...host, waveIndex: 2 ** 32 }] })
    expectRejected(RolloutManifest, { ...json, hostSet: [{ ...host, waveIndex: -1 }] })
    expectRejected(RolloutManifest, { ...json, hostSet: [{ ...host, waveIndex: 0.5 }] })
    expectRejected(RolloutManifest, { ...json, hostSet: [{ hostname: "a", wave_index: 0, target_closure: "x" }] })
    for (const key of ["channel", "channelRef", "fleetResolvedHash", "hostSet", "healthGate", "meta"]) {
      const partial = { ...json }
      delete partial[key]
      expectRejected(RolloutManifest, partial, key)
    }
  })

  it.prop("round-trips from the type side", [Arbitrary.make(RolloutManifest)], ([value]) => {
    expectTypeRoundTrip(RolloutManifest, value)
  })
})

// §6 --------------------------------------------------------------------------------------

/** The upstream evidence-format fixture (its `_sync` notes dropped). */
const evidence = {
  schemaVersion: 1,
  hostname: "water-plant-01",
  collectedAt: "2026-04-05T10:00:00Z",
  controls: [
    {
      controlId: "access-control",
      passed: true,
      frameworkArticles: { "nis2-essential": ["art21.i"], iso27001: ["A.5.1"], "anssi-bp028": ["HYG-21"] },
      details: { password_auth_disabled: true, root_login_restricted: true, idle_timeout_secs: 1800 },
      schema: "anssi-bp028/v1"
    },
    {
      controlId: "secure-boot",
      passed: false,
      frameworkArticles: { "nis2-essential": ["art21.e"], "anssi-bp028": ["BL-01"] },
      details: { secureboot_enabled: false, error: "EFI variable SecureBoot reads 0" },
      schema: "anssi-bp028/v1"
    },
    {
      controlId: "synthetic",
      passed: false,
      frameworkArticles: {},
      details: { always_fail: true, note: "opt-in always-fail control for end-to-end rollback path testing" }
    }
  ]
}

describe("EvidenceFile", () => {
  it("round-trips the upstream fixture", () => {
    const decoded = expectRoundTrip(EvidenceFile, evidence)
    expect(decoded.collectedAt).toStrictEqual(utc("2026-04-05T10:00:00Z"))
    expect(decoded.controls[2]).toMatchObject({ controlId: "synthetic", schema: null, frameworkArticles: {} })
  })

  it("keeps details of any JSON shape", () => {
    for (
      const details of [
        { "BH-03": { compliant: true, checks_passed: 5, checks_total: 5 }, nested: [1, "two", null, [false]] },
        ["a", 1.5, -2],
        "free text",
        0,
        false,
        {}
      ]
    ) {
      const json = { ...evidence, controls: [{ controlId: "c", passed: true, frameworkArticles: {}, details }] }
      expect(expectRoundTrip(EvidenceFile, json).controls[0]?.details).toStrictEqual(details)
    }
  })

  it("omits absent details and schema, reads null like absent and defaults frameworkArticles to {}", () => {
    const minimal = { controlId: "c", passed: true, frameworkArticles: {} }
    expectRoundTrip(EvidenceFile, { ...evidence, controls: [minimal] })
    const decoded = decodeOk(EvidenceFile, {
      ...evidence,
      controls: [{ controlId: "c", passed: true, details: null, schema: null }]
    })
    expect(decoded.controls[0]).toStrictEqual({ ...minimal, details: null, schema: null })
    expect(encodeOk(EvidenceFile, decoded)).toStrictEqual({ ...evidence, controls: [minimal] })
  })

  it("refuses the superseded pre-v0.2 shape and bad fields", () => {
    expectRejected(EvidenceFile, {
      host: "water-plant-01",
      timestamp: "2026-04-05T10:00:00Z",
      controls: [{ control: "baseline-hardening", status: "compliant", framework_articles: {} }],
      overall: "1/1 controls compliant"
    })
    const { schemaVersion: _v, ...unversioned } = evidence
    expectRejected(EvidenceFile, unversioned, "schemaVersion")
    expectRejected(EvidenceFile, { ...evidence, collectedAt: "2026-04-05T10:00:00" })
    expectRejected(EvidenceFile, { ...evidence, controls: [{ controlId: "c", passed: "true" }] })
    expectRejected(EvidenceFile, {
      ...evidence,
      controls: [{ controlId: "c", passed: true, frameworkArticles: { nis2: "21(a)" } }]
    })
    expectRejected(EvidenceFile, { ...evidence, controls: [{ controlId: "c", passed: true, schema: 1 }] })
  })

  it("refuses values JSON cannot hold in details", () => {
    for (const details of [Number.NaN, Number.POSITIVE_INFINITY, [undefined], { f: () => 1 }, { n: 10n }]) {
      expectRejected(EvidenceDetails, details)
    }
  })

  it.prop("round-trips from the type side", [Arbitrary.make(EvidenceFile)], ([value]) => {
    expectTypeRoundTrip(EvidenceFile, value)
  }, { fastCheck: { numRuns: 50 } })
})

// §5.2–§5.4 -------------------------------------------------------------------------------

/** §8.2 V4: the claims and signature of the test bootstrap token. */
const token = {
  version: 1,
  claims: {
    hostname: "krach",
    expectedPubkeyFingerprint: "WI7OI6P7PqLDRBMNdVCBK9KGq6DoOcmi93AruaLOq3o=",
    issuedAt: "2026-05-01T00:00:00Z",
    expiresAt: "2026-05-02T00:00:00Z",
    nonce: "00112233445566778899aabbccddeeff"
  },
  signature: "LtIAkQ6OhMVSBuo8hfnN4k21Kx5ycCFlV0+FEfMBaQG+0AFuieXAEr15nMslQii8bmxUcz7f3xTbiNoeBegFDA=="
}

const V4_CLAIMS_CANONICAL =
  `{"expectedPubkeyFingerprint":"WI7OI6P7PqLDRBMNdVCBK9KGq6DoOcmi93AruaLOq3o=","expiresAt":"2026-05-02T00:00:00Z","hostname":"krach","issuedAt":"2026-05-01T00:00:00Z","nonce":"00112233445566778899aabbccddeeff"}`

const CSR =
  "-----BEGIN CERTIFICATE REQUEST-----\nMIGbMEMCAQAwEDEOMAwGA1UEAwwFa3JhY2gwKjAFBgMrZXADIQBcYQYtztxpAbE4\n-----END CERTIFICATE REQUEST-----\n"
const CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

describe("BootstrapToken", () => {
  it("round-trips V4 and re-encodes the claims to the signed canonical bytes", () => {
    const decoded = expectRoundTrip(BootstrapToken, token)
    expect(canonicalText(encodeOk(BootstrapClaims, decoded.claims))).toBe(V4_CLAIMS_CANONICAL)
  })

  it("keeps claim timestamps verbatim, nanoseconds included, so the signature still matches", () => {
    const claims = {
      ...token.claims,
      issuedAt: "2026-05-01T10:23:45.123456789Z",
      expiresAt: "2026-05-02T10:23:45.123456789Z"
    }
    const decoded = expectRoundTrip(BootstrapToken, { ...token, claims })
    expect(decoded.claims.issuedAt).toBe("2026-05-01T10:23:45.123456789Z")
    expect(parseRfc3339(decoded.claims.expiresAt)).toStrictEqual(utc("2026-05-02T10:23:45.123Z"))
  })

  it("refuses any version but 1", () => {
    for (const version of [0, 2, "1", null]) {
      expectRejected(BootstrapToken, { ...token, version }, "unsupported bootstrap token version")
    }
    const { version: _v, ...unversioned } = token
    expectRejected(BootstrapToken, unversioned, "version")
  })

  it("refuses a signature that is not standard padded base64", () => {
    for (
      const signature of [
        "",
        "not base64!",
        "LtIAkQ6O-_",
        "LtIAkQ6OhMVSBuo8hfnN4k21Kx5ycCFlV0+FEfMBaQG+0AFuieXAEr15nMslQii8bmxUcz7f3xTbiNoeBegFDA",
        "ab=c",
        "abc==="
      ]
    ) {
      expectRejected(BootstrapToken, { ...token, signature }, "base64")
    }
  })

  it("refuses missing claims and bad claim timestamps", () => {
    const { nonce: _n, ...noNonce } = token.claims
    expectRejected(BootstrapToken, { ...token, claims: noNonce }, "nonce")
    expectRejected(BootstrapToken, { ...token, claims: { ...token.claims, issuedAt: "2026-05-01T00:00:00" } })
    expectRejected(BootstrapToken, { ...token, claims: { ...token.claims, expiresAt: "2026-02-30T00:00:00Z" } })
    const { expectedPubkeyFingerprint, ...rest } = token.claims
    expectRejected(BootstrapToken, {
      ...token,
      claims: { ...rest, expected_pubkey_fingerprint: expectedPubkeyFingerprint }
    })
  })

  it.prop("round-trips from the type side", [Arbitrary.make(BootstrapToken)], ([value]) => {
    expectTypeRoundTrip(BootstrapToken, value)
  })
})

describe("enroll and renew bodies", () => {
  it("round-trips an enroll request", () => {
    const decoded = expectRoundTrip(EnrollRequest, { token, csrPem: CSR })
    expect(decoded.token.claims.hostname).toBe("krach")
    expectRejected(EnrollRequest, { token, csr_pem: CSR }, "csrPem")
    expectRejected(EnrollRequest, { token: { ...token, version: 2 }, csrPem: CSR })
  })

  it("round-trips enroll and renew responses", () => {
    expect(expectRoundTrip(EnrollResponse, { certPem: CERT, notAfter: "2026-06-16T00:00:00Z" }).notAfter)
      .toStrictEqual(utc("2026-06-16T00:00:00Z"))
    expectRoundTrip(RenewResponse, { certPem: CERT, notAfter: "2026-06-16T00:00:00.250Z" })
    expectRejected(EnrollResponse, { certPem: CERT, not_after: "2026-06-16T00:00:00Z" }, "notAfter")
    expectRejected(RenewResponse, { certPem: CERT, notAfter: "2026-06-16" })
  })

  it("round-trips a renew request", () => {
    expectRoundTrip(RenewRequest, { csrPem: CSR })
    expectRejected(RenewRequest, { csr_pem: CSR }, "csrPem")
    expectRejected(RenewRequest, { csrPem: null })
  })

  it.prop(
    "round-trips from the type side",
    {
      enroll: Arbitrary.make(EnrollRequest),
      enrolled: Arbitrary.make(EnrollResponse),
      renew: Arbitrary.make(RenewRequest),
      renewed: Arbitrary.make(RenewResponse)
    },
    ({ enroll, enrolled, renew, renewed }) => {
      expectTypeRoundTrip(EnrollRequest, enroll)
      expectTypeRoundTrip(EnrollResponse, enrolled)
      expectTypeRoundTrip(RenewRequest, renew)
      expectTypeRoundTrip(RenewResponse, renewed)
    }
  )
})

describe("other type-side round trips", () => {
  it.prop(
    "round-trip from the type side",
    [Arbitrary.make(ChannelEdge), Arbitrary.make(EvidenceDetails)],
    ([edge, details]) => {
      expectTypeRoundTrip(ChannelEdge, edge)
      expectTypeRoundTrip(EvidenceDetails, details)
    }
  )

  it.prop(
    "JSON text of any encoded fleet decodes to the same fleet",
    [Arbitrary.make(FleetResolved)],
    ([fleet]) => {
      const text = JSON.stringify(encodeOk(FleetResolved, fleet))
      expect(decodeOk(FleetResolved, JSON.parse(text))).toStrictEqual(fleet)
    },
    { fastCheck: { numRuns: 30 } }
  )
})
