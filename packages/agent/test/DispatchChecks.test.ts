import { describe, expect, it } from "@effect/vitest"
import type { DispatchResponse } from "@nixfleet/proto"
import { Effect, Either, Layer, Metric } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentConfig } from "../src/config/AgentConfig.js"
import { ControlPlaneClient, ControlPlaneTransport } from "../src/controlplane/ControlPlaneClient.js"
import { checkDispatch, refusedDispatches } from "../src/controlplane/DispatchChecks.js"
import { ManifestCache } from "../src/controlplane/ManifestCache.js"
import { HostLedger } from "../src/runtime/HostLedger.js"
import { type Answer, fakeControlPlane, type RecordedRequest } from "./support/fakeControlPlane.js"
import { TARGET } from "./support/fixtures.js"
import {
  type Artifact,
  fleetDocument,
  makeSigner,
  manifestDocument,
  signArtifact,
  type Signer,
  writeTrustFile
} from "./support/signing.js"

const CI_COMMIT = "0123456789abcdef0123456789abcdef01234567"
const ROLLOUT = `stable@${CI_COMMIT}`
const OTHER = "1a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-web-02"

/** A control plane serving one rollout manifest (and its fleet). */
const serve =
  (artifacts: { readonly manifest: Artifact; readonly fleet: Artifact }) => (request: RecordedRequest): Answer => {
    const pick = (artifact: Artifact, sig: boolean): Answer => ({
      status: 200,
      body: sig ? artifact.signature : artifact.bytes
    })
    switch (request.url) {
      case `/v1/rollouts/${encodeURIComponent(ROLLOUT)}`:
        return pick(artifacts.manifest, false)
      case `/v1/rollouts/${encodeURIComponent(ROLLOUT)}/sig`:
        return pick(artifacts.manifest, true)
      case "/v1/fleet.resolved":
        return pick(artifacts.fleet, false)
      case "/v1/fleet.resolved/sig":
        return pick(artifacts.fleet, true)
      default:
        return { status: 404 }
    }
  }

const artifacts = (
  signer: Signer,
  options: { readonly signedAt?: Date; readonly target?: string; readonly manifestSigner?: Signer } = {}
) => {
  const signedAt = options.signedAt ?? new Date()
  const hosts = [{ hostname: "web-01", targetClosure: options.target ?? TARGET }, {
    hostname: "web-02",
    targetClosure: OTHER
  }]
  const fleet = signArtifact(fleetDocument({ channel: "stable", ciCommit: CI_COMMIT, hosts, signedAt }), signer)
  const manifest = signArtifact(
    manifestDocument({ channel: "stable", ciCommit: CI_COMMIT, fleetHash: fleet.hash, hosts, signedAt }),
    options.manifestSigner ?? signer
  )
  return { fleet, manifest }
}

const dispatch = (fields: Partial<DispatchResponse> = {}): DispatchResponse => ({
  hostname: "web-01",
  rolloutId: ROLLOUT,
  targetClosure: TARGET,
  soakDueAt: new Date("2030-01-01T00:00:00Z"),
  enqueuedAt: new Date(),
  ...fields
})

/** Runs `body` with the dispatch checks against a control plane serving `served`. */
const check = (
  served: ReturnType<typeof artifacts>,
  signer: Signer,
  run: (stateDir: string) => Effect.Effect<void, unknown, ManifestCache | HostLedger>,
  options: { readonly windowSecs?: number } = {}
) =>
  Effect.gen(function*() {
    const fake = yield* fakeControlPlane(serve(served))
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-dispatch-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
    const trustFile = writeTrustFile(dir, signer)
    const layer = ManifestCache.layer.pipe(
      Layer.provideMerge(ControlPlaneClient.layer),
      Layer.provideMerge(HostLedger.layer),
      Layer.provide(ControlPlaneTransport.layer),
      Layer.provideMerge(AgentConfig.make({
        machineId: "web-01",
        stateDir: dir,
        controlPlaneUrl: fake.url,
        trustFile,
        manifestFreshnessWindowSecs: options.windowSecs ?? 3600
      }))
    )
    yield* Effect.provide(run(dir), layer)
  })

const refusal = (d: DispatchResponse) =>
  Effect.map(Effect.either(checkDispatch(d, "web-01")), (result) => Either.isLeft(result) ? result.left : undefined)

describe("dispatch checks", () => {
  it.scopedLive("a dispatch that matches the signed manifest is accepted, and the manifest is cached", () => {
    const signer = makeSigner()
    return check(artifacts(signer), signer, (dir) =>
      Effect.gen(function*() {
        const accepted = yield* checkDispatch(dispatch(), "web-01")
        expect(accepted).toStrictEqual({
          rolloutId: ROLLOUT,
          targetClosure: TARGET,
          waveIndex: 0,
          soakDueAt: new Date("2030-01-01T00:00:00Z")
        })
        expect(Fs.existsSync(Path.join(dir, "rollouts", `${ROLLOUT}.json`))).toBe(true)
        expect(Fs.existsSync(Path.join(dir, "rollouts", `${ROLLOUT}.json.sig`))).toBe(true)
      }))
  })

  it.scopedLive("each refusal has its reason, activates nothing and is counted", () => {
    const signer = makeSigner()
    return check(artifacts(signer), signer, () =>
      Effect.gen(function*() {
        const before = (yield* Metric.value(Metric.tagged(refusedDispatches, "reason", "wrong-hostname"))).count
        expect(yield* refusal(dispatch({ hostname: "web-02" }))).toMatchObject({ reason: "wrong-hostname" })
        expect((yield* Metric.value(Metric.tagged(refusedDispatches, "reason", "wrong-hostname"))).count).toBe(
          before + 1
        )
        expect(yield* refusal(dispatch({ rolloutId: "stable@../../etc" }))).toMatchObject({
          reason: "invalid-rollout-id"
        })
        expect(yield* refusal(dispatch({ rolloutId: "stable@ffff" }))).toMatchObject({
          reason: "manifest",
          detail: expect.stringContaining("missing")
        })
        expect(yield* refusal(dispatch({ targetClosure: OTHER }))).toMatchObject({ reason: "target-mismatch" })
      }))
  })

  it.scopedLive("a host missing from the manifest is refused", () => {
    const signer = makeSigner()
    return check(artifacts(signer), signer, () =>
      Effect.gen(function*() {
        const result = yield* Effect.either(checkDispatch(dispatch({ hostname: "web-09" }), "web-09"))
        expect(Either.isLeft(result) && result.left.reason).toBe("not-in-manifest")
      }))
  })

  it.scopedLive("a forged signature is refused", () => {
    const signer = makeSigner()
    return check(artifacts(signer, { manifestSigner: makeSigner() }), signer, () =>
      Effect.gen(function*() {
        expect(yield* refusal(dispatch())).toMatchObject({
          reason: "manifest",
          detail: expect.stringContaining("BadSignature")
        })
      }))
  })

  it.scopedLive("a stale manifest is refused, unless the configured window allows it", () => {
    const signer = makeSigner()
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000)
    return Effect.gen(function*() {
      yield* check(artifacts(signer, { signedAt: twoHoursAgo }), signer, () =>
        Effect.gen(function*() {
          expect(yield* refusal(dispatch())).toMatchObject({
            reason: "manifest",
            detail: expect.stringContaining("Stale")
          })
        }))
      yield* check(artifacts(signer, { signedAt: twoHoursAgo }), signer, () =>
        Effect.gen(function*() {
          expect(yield* refusal(dispatch())).toBeUndefined()
        }), { windowSecs: 3 * 3600 })
    })
  })

  it.scopedLive("a future-dated manifest is refused", () => {
    const signer = makeSigner()
    return check(
      artifacts(signer, { signedAt: new Date(Date.now() + 10 * 60_000) }),
      signer,
      () =>
        Effect.gen(function*() {
          expect(yield* refusal(dispatch())).toMatchObject({
            reason: "manifest",
            detail: expect.stringContaining("FutureDated")
          })
        })
    )
  })

  it.scopedLive("a hostile closure is refused even when the manifest names it", () => {
    const signer = makeSigner()
    const hostile = "../../../bin/sh"
    return check(artifacts(signer, { target: hostile }), signer, () =>
      Effect.gen(function*() {
        expect(yield* refusal(dispatch({ targetClosure: hostile }))).toMatchObject({ reason: "invalid-closure" })
      }))
  })

  it.scopedLive("a cached manifest is verified again and used when the control plane is down", () => {
    const signer = makeSigner()
    const served = artifacts(signer)
    return check(served, signer, (dir) =>
      Effect.gen(function*() {
        yield* checkDispatch(dispatch(), "web-01")
        // Tamper with the cache: it must not be trusted for being on disk.
        const cached = Path.join(dir, "rollouts", `${ROLLOUT}.json`)
        Fs.writeFileSync(cached, Fs.readFileSync(cached, "utf8").replace(TARGET, OTHER))
        expect(yield* refusal(dispatch())).toBeUndefined()
        expect(Fs.readFileSync(cached, "utf8")).toContain(TARGET)
      }))
  })
})
