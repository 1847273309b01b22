import { describe, expect, it } from "@effect/vitest"
import {
  canonicalizeText,
  FleetResolved,
  RolloutManifest,
  sha256Hex,
  TrustConfig,
  verifyArtifact
} from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Buffer } from "node:buffer"
import * as Fs from "node:fs"
import { type DevControlPlane, start } from "../src/index.js"
import { closure, request } from "./support.js"

const WINDOW = 3600

const fetchSigned = (cp: DevControlPlane, path: string) =>
  Effect.gen(function*() {
    const document = yield* request(`${cp.url}${path}`, { headers: { "x-nixfleet-protocol": "1" } })
    const signature = yield* request(`${cp.url}${path}/sig`, { headers: { "x-nixfleet-protocol": "1" } })
    expect(document.status).toBe(200)
    expect(document.headers["content-type"]).toBe("application/json")
    expect(signature.status).toBe(200)
    expect(signature.headers["content-type"]).toBe("application/octet-stream")
    expect(signature.body.length).toBe(64)
    return { bytes: new Uint8Array(document.body), signature: new Uint8Array(signature.body), text: document.text }
  })

const trustSlot = (cp: DevControlPlane) =>
  Schema.decodeUnknownSync(TrustConfig)(JSON.parse(Fs.readFileSync(cp.trustFile, "utf8"))).ciReleaseKey

const verify = (cp: DevControlPlane, signed: { bytes: Uint8Array; signature: Uint8Array }, now = new Date()) =>
  verifyArtifact({ ...signed, trust: trustSlot(cp), now, freshnessWindowSecs: WINDOW })

describe("signed artifacts", () => {
  it.scopedLive("fleet.resolved and the manifest verify against the trust file, with the §4.4 identity and binding", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const hosts = [
        { hostname: "web-02", targetClosure: closure("web-02") },
        { hostname: "db-01", targetClosure: closure("db-01") },
        { hostname: "web-01", targetClosure: closure("web-01") }
      ]
      const signedAt = new Date(Date.now() - 5 * 60_000)
      const { rolloutId } = yield* cp.publishRollout({
        channel: "edge-1",
        hosts,
        onHealthFailure: "halt",
        soakMinutes: 7,
        signedAt
      })

      const fleetSigned = yield* fetchSigned(cp, "/v1/fleet.resolved")
      // Served pretty-printed: the bytes are not their canonical form, the signature is over it.
      expect(fleetSigned.text).not.toBe(canonicalizeText(fleetSigned.text))
      const fleetVerified = yield* verify(cp, fleetSigned)
      expect(fleetVerified.sha256).toBe(sha256Hex(canonicalizeText(fleetSigned.text)))
      expect(fleetVerified.sha256).not.toBe(sha256Hex(fleetSigned.text))
      const fleet = Schema.decodeUnknownSync(FleetResolved)(fleetVerified.json)
      expect(fleet.meta.signedAt?.getTime()).toBe(signedAt.getTime())
      expect(fleet.meta.signatureAlgorithm).toBe("ed25519")
      expect(fleet.meta.ciCommit).toMatch(/^[0-9a-f]{40}$/)
      expect(fleet.channels["edge-1"]?.rolloutPolicy).toBe("edge-1")
      const policy = fleet.rolloutPolicies["edge-1"]
      expect(policy?.onHealthFailure).toBe("halt")
      expect(policy?.waves.map((wave) => [wave.selector.hosts, wave.soakMinutes])).toEqual([
        [["db-01"], 7],
        [["web-01"], 7],
        [["web-02"], 7]
      ])
      expect(fleet.waves["edge-1"]).toEqual([
        { hosts: ["db-01"], soakMinutes: 7 },
        { hosts: ["web-01"], soakMinutes: 7 },
        { hosts: ["web-02"], soakMinutes: 7 }
      ])
      for (const host of hosts) {
        expect(fleet.hosts[host.hostname]).toMatchObject({
          channel: "edge-1",
          closureHash: host.targetClosure,
          pubkey: null
        })
      }

      // Projection: the channel's expected rollout id is channel@ciCommit.
      expect(rolloutId).toBe(`edge-1@${fleet.meta.ciCommit}`)
      const manifestSigned = yield* fetchSigned(cp, `/v1/rollouts/${rolloutId}`)
      const manifestVerified = yield* verify(cp, manifestSigned)
      const manifest = Schema.decodeUnknownSync(RolloutManifest)(manifestVerified.json)
      expect(`${manifest.channel}@${manifest.channelRef}`).toBe(rolloutId)
      expect(manifest.fleetResolvedHash).toBe(fleetVerified.sha256)
      expect(manifest.displayName).toBe(`edge-1@${fleet.meta.ciCommit?.slice(0, 8)}`)
      expect(manifest.meta).toEqual(fleet.meta)
      expect(manifest.hostSet).toEqual([
        { hostname: "db-01", waveIndex: 0, targetClosure: closure("db-01") },
        { hostname: "web-01", waveIndex: 1, targetClosure: closure("web-01") },
        { hostname: "web-02", waveIndex: 2, targetClosure: closure("web-02") }
      ])
      // `%40` is the same id.
      const encoded = yield* request(`${cp.url}/v1/rollouts/${rolloutId.replace("@", "%40")}`)
      expect(encoded.body.equals(Buffer.from(manifestSigned.bytes))).toBe(true)
    }))

  it.scopedLive("a forged publish's manifest does not verify, while its fleet.resolved does", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: "web-01", targetClosure: closure("web-01") }],
        forge: true
      })
      const manifest = yield* fetchSigned(cp, `/v1/rollouts/${rolloutId}`)
      const refused = yield* Effect.flip(verify(cp, manifest))
      expect(refused._tag).toBe("BadSignature")
      yield* verify(cp, yield* fetchSigned(cp, "/v1/fleet.resolved"))
    }))

  it.scopedLive("signedAt is the publish's: old artifacts are Stale, future ones FutureDated", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const hosts = [{ hostname: "web-01", targetClosure: closure("web-01") }]
      const old = yield* cp.publishRollout({ channel: "stable", hosts, signedAt: new Date(Date.now() - 2 * 3600_000) })
      const stale = yield* Effect.flip(verify(cp, yield* fetchSigned(cp, `/v1/rollouts/${old.rolloutId}`)))
      expect(stale._tag).toBe("Stale")
      const future = yield* cp.publishRollout({ channel: "stable", hosts, signedAt: new Date(Date.now() + 3600_000) })
      const early = yield* Effect.flip(verify(cp, yield* fetchSigned(cp, `/v1/rollouts/${future.rolloutId}`)))
      expect(early._tag).toBe("FutureDated")
      const fleetEarly = yield* Effect.flip(verify(cp, yield* fetchSigned(cp, "/v1/fleet.resolved")))
      expect(fleetEarly._tag).toBe("FutureDated")
    }))

  it.scopedLive("every publish replaces fleet.resolved; earlier manifests stay served", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const first = yield* cp.publishRollout({
        channel: "a",
        hosts: [{ hostname: "h1", targetClosure: closure("h1") }]
      })
      const second = yield* cp.publishRollout({
        channel: "b",
        hosts: [{ hostname: "h2", targetClosure: closure("h2") }]
      })
      expect(first.rolloutId).not.toBe(second.rolloutId)
      const fleet = Schema.decodeUnknownSync(FleetResolved)(
        (yield* verify(cp, yield* fetchSigned(cp, "/v1/fleet.resolved"))).json
      )
      expect(Object.keys(fleet.channels)).toEqual(["b"])
      yield* verify(cp, yield* fetchSigned(cp, `/v1/rollouts/${first.rolloutId}`))
    }))

  it.scopedLive("rollout ids failing the validator or unknown are 404", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.publishRollout({ channel: "stable", hosts: [{ hostname: "h", targetClosure: closure("h") }] })
      for (
        const id of [
          "stable",
          "Stable@abc",
          "stable@ABC",
          "stable@",
          "@abc",
          "stable@abc@def",
          "stable@xyz",
          "%ZZ",
          "stable@abcdef0123"
        ]
      ) {
        expect((yield* request(`${cp.url}/v1/rollouts/${id}`)).status, id).toBe(404)
        expect((yield* request(`${cp.url}/v1/rollouts/${id}/sig`)).status, id).toBe(404)
      }
      expect((yield* request(`${cp.url}/v1/rollouts/a/b/c`)).status).toBe(404)
    }))

  it.scopedLive("the trust file carries the release key as ciReleaseKey.current", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const slot = trustSlot(cp)
      expect(slot.current?.algorithm).toBe("ed25519")
      expect(Buffer.from(slot.current?.public ?? "", "base64").length).toBe(32)
      expect(cp.caFile).toBeNull()
    }))
})
