/**
 * Signed artifacts for agent tests: a CI key, a trust file, a fleet and a rollout manifest
 * signed over their canonical JSON, as CI produces them.
 */
import { canonicalize, sha256Hex } from "@nixfleet/proto"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"

export interface Signer {
  readonly publicKeyBase64: string
  readonly sign: (canonical: string) => Uint8Array
}

export const makeSigner = (): Signer => {
  const { privateKey, publicKey } = Crypto.generateKeyPairSync("ed25519")
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32)
  return {
    publicKeyBase64: Buffer.from(raw).toString("base64"),
    sign: (canonical) => new Uint8Array(Crypto.sign(null, Buffer.from(canonical, "utf8"), privateKey))
  }
}

export const writeTrustFile = (dir: string, signer: Signer): string => {
  const file = Path.join(dir, "trust.json")
  Fs.writeFileSync(
    file,
    JSON.stringify({
      schemaVersion: 1,
      ciReleaseKey: {
        current: { algorithm: "ed25519", public: signer.publicKeyBase64 },
        previous: null,
        rejectBefore: null
      },
      cacheKeys: []
    })
  )
  return file
}

export interface Artifact {
  readonly bytes: Uint8Array
  readonly signature: Uint8Array
  readonly hash: string
}

/** Pretty-printed bytes (as served) signed over their canonical form. */
export const signArtifact = (value: unknown, signer: Signer): Artifact => {
  const canonical = canonicalize(value)
  return {
    bytes: new TextEncoder().encode(JSON.stringify(value, null, 2)),
    signature: signer.sign(canonical),
    hash: sha256Hex(canonical)
  }
}

export const fleetDocument = (options: {
  readonly channel: string
  readonly ciCommit: string
  readonly hosts: ReadonlyArray<{ readonly hostname: string; readonly targetClosure: string }>
  readonly signedAt: Date
  readonly onHealthFailure?: "halt" | "rollback-and-halt"
}) => ({
  schemaVersion: 1,
  hosts: Object.fromEntries(
    options.hosts.map((
      h
    ) => [h.hostname, {
      platform: "x86_64-linux",
      tags: [],
      channel: options.channel,
      closureHash: h.targetClosure,
      pubkey: null
    }])
  ),
  channels: {
    [options.channel]: {
      rolloutPolicy: "p",
      reconcileIntervalMinutes: 30,
      freshnessWindow: 180,
      signingIntervalMinutes: 60
    }
  },
  rolloutPolicies: {
    p: {
      strategy: "all-at-once",
      waves: [],
      healthGate: {},
      onHealthFailure: options.onHealthFailure ?? "rollback-and-halt"
    }
  },
  waves: { [options.channel]: [] },
  edges: [],
  channelEdges: [],
  disruptionBudgets: [],
  meta: {
    schemaVersion: 1,
    signedAt: options.signedAt.toISOString(),
    ciCommit: options.ciCommit,
    signatureAlgorithm: "ed25519"
  }
})

export const manifestDocument = (options: {
  readonly channel: string
  readonly ciCommit: string
  readonly fleetHash: string
  readonly hosts: ReadonlyArray<{ readonly hostname: string; readonly targetClosure: string }>
  readonly signedAt: Date
}) => ({
  schemaVersion: 1,
  displayName: `${options.channel}@${options.ciCommit.slice(0, 8)}`,
  channel: options.channel,
  channelRef: options.ciCommit,
  fleetResolvedHash: options.fleetHash,
  hostSet: [...options.hosts].sort((a, b) => a.hostname.localeCompare(b.hostname)).map((h) => ({
    hostname: h.hostname,
    waveIndex: 0,
    targetClosure: h.targetClosure
  })),
  healthGate: {},
  disruptionBudgets: [],
  meta: {
    schemaVersion: 1,
    signedAt: options.signedAt.toISOString(),
    ciCommit: options.ciCommit,
    signatureAlgorithm: "ed25519"
  }
})
