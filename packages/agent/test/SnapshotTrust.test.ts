/**
 * Only signed data selects a closure (issue 17): the control plane's snapshots are
 * bookkeeping. Each case here failed before the fix: a snapshot chose the closure that
 * was switched to, or the one a rollback went to, or pushed the seq counter to 2^53.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { start } from "@nixfleet/dev-control-plane"
import type { HostRolloutSnapshot } from "@nixfleet/proto"
import type { LocalEvent } from "@nixfleet/state-machine"
import { Chunk, ConfigProvider, Effect, Layer, Metric, Queue, Ref, Stream, SubscriptionRef, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentConfig } from "../src/config/AgentConfig.js"
import { ControlPlaneClient, ControlPlaneTransport } from "../src/controlplane/ControlPlaneClient.js"
import { MAX_SNAPSHOTS_PER_ANSWER, sendHeartbeat } from "../src/controlplane/Heartbeat.js"
import { ActivationPipeline } from "../src/pipeline/ActivationPipeline.js"
import * as ActivationWorker from "../src/runtime/ActivationWorker.js"
import { HostLedger } from "../src/runtime/HostLedger.js"
import { droppedEvents, Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import { RuntimeChannels } from "../src/runtime/RuntimeChannels.js"
import { manifestSet, PRIOR, reducerLayer, ROLLOUT, TARGET } from "./support/fixtures.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"
import { MemoryOutboxHandle } from "./support/memoryOutbox.js"

const EVIL = "1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s-nixos-system-evil"
const secs = (n: number) => new Date(n * 1000)
const now = Effect.map(TestClock.currentTimeMillis, (ms) => new Date(ms))

const submit = (input: ReducerInput) => Effect.flatMap(Reducer, (reducer) => reducer.submit(input))
const manifests = submit(ReducerInput.ManifestSetUpdated({ set: manifestSet("rollback-and-halt") }))
const send = (event: LocalEvent, rolloutId = ROLLOUT) => submit(ReducerInput.HostEvent({ rolloutId, event }))

const activate = (fields: { rolloutId?: string; soakDueAt?: Date; waveIndex?: number } = {}) =>
  Effect.flatMap(now, (at) =>
    submit(ReducerInput.HostEvent({
      rolloutId: fields.rolloutId ?? ROLLOUT,
      event: {
        _tag: "LocalActivate",
        currentClosureAtDispatch: PRIOR,
        targetClosure: TARGET,
        receivedAt: at,
        soakDueAt: fields.soakDueAt ?? secs(600),
        seq: 0
      },
      ...(fields.waveIndex === undefined ? {} : { waveIndex: fields.waveIndex })
    })))

const snapshot = (fields: Partial<HostRolloutSnapshot> = {}): HostRolloutSnapshot => ({
  rolloutId: ROLLOUT,
  hostname: "web-01",
  channel: "stable",
  state: "Pending",
  targetClosure: TARGET,
  currentClosureAtDispatch: null,
  currentClosure: null,
  dispatchedAt: secs(0),
  dispatchAckedAt: null,
  activationStartedAt: null,
  activationCompletedAt: null,
  soakDueAt: null,
  lastEventSeq: 0,
  ...fields
})
const rehydrate = (fields: Partial<HostRolloutSnapshot> = {}) =>
  submit(ReducerInput.BootstrapHost({ snapshot: snapshot(fields) }))

const records = Effect.flatMap(Reducer, (reducer) => SubscriptionRef.get(reducer.records))
const record = (rolloutId = ROLLOUT) => Effect.map(records, (all) => all.get(rolloutId))
const intents = Effect.flatMap(
  RuntimeChannels,
  (channels) => Effect.map(Queue.takeAll(channels.activationIntents), Chunk.toArray)
)
const refused = Effect.map(
  Metric.value(Metric.tagged(droppedEvents, "reason", "snapshot_refused")),
  (state) => state.count
)
const switchOf = (rolloutId = ROLLOUT) => Effect.flatMap(HostLedger, (ledger) => ledger.switchOf(rolloutId))

const complete = (closure: string) =>
  Effect.flatMap(
    now,
    (at) =>
      send({ _tag: "LocalActivationCompleted", observedCurrentClosure: closure, exitCode: 0, completedAt: at, seq: 0 })
  )

const failProbe = Effect.flatMap(now, (at) =>
  send({
    _tag: "LocalProbeResult",
    probeName: "p",
    mode: "enforce",
    status: "fail",
    observedAt: at,
    failureReason: "down",
    subResults: null,
    seq: 0
  }))

describe("snapshots never choose a closure", () => {
  it.scoped("a Pending snapshot naming another target: the dispatch switches to the signed target", () =>
    Effect.gen(function*() {
      yield* manifests
      yield* rehydrate({ targetClosure: EVIL, lastEventSeq: 2 })
      yield* activate()
      expect(yield* intents).toStrictEqual([{ rolloutId: ROLLOUT, closure: TARGET, rollback: false }])
      expect(yield* record()).toMatchObject({ state: "Activating", targetClosure: TARGET, lastEventSeq: 3 })
      // Recorded before the switch: what to come back to, and the signed target.
      expect(yield* switchOf()).toMatchObject({ target: TARGET, previous: PRIOR })
    }).pipe(Effect.provide(reducerLayer())))

  it.scoped("a warm record keeps its own closures whatever a later snapshot says", () =>
    Effect.gen(function*() {
      yield* manifests
      yield* activate()
      yield* rehydrate({ state: "Soaking", currentClosureAtDispatch: EVIL, currentClosure: TARGET, lastEventSeq: 3 })
      expect(yield* record()).toMatchObject({
        state: "Soaking",
        targetClosure: TARGET,
        currentClosureAtDispatch: PRIOR
      })
      // A snapshot that names another target than the signed one is refused outright.
      const before = yield* refused
      yield* rehydrate({ state: "Soaking", targetClosure: EVIL, lastEventSeq: 3 })
      expect(yield* refused).toBe(before + 1)
      expect((yield* record())?.targetClosure).toBe(TARGET)
    }).pipe(Effect.provide(reducerLayer())))

  it.scoped("after a restart the ledger's own record outranks the snapshot's closures and soak", () =>
    Effect.gen(function*() {
      const ledger = yield* HostLedger
      yield* ledger.recordSwitch({
        rolloutId: ROLLOUT,
        target: TARGET,
        previous: PRIOR,
        soakDueAt: secs(900),
        recordedAt: secs(0)
      })
      yield* rehydrate({
        state: "Soaking",
        currentClosureAtDispatch: EVIL,
        currentClosure: TARGET,
        soakDueAt: secs(1),
        lastEventSeq: 3
      })
      expect(yield* record()).toMatchObject({ currentClosureAtDispatch: PRIOR, soakDueAt: secs(900) })
    }).pipe(Effect.provide(reducerLayer())))

  const hostile: ReadonlyArray<readonly [string, Partial<HostRolloutSnapshot>]> = [
    ["a target that is not a store basename", { targetClosure: "../../../tmp/evil" }],
    ["a rollback target that is not a store basename", { currentClosureAtDispatch: "evil; rm -rf /" }],
    ["a current closure with a NUL", { currentClosure: `${TARGET}\u0000` }],
    ["a seq of 2^53 - 1", { lastEventSeq: Number.MAX_SAFE_INTEGER }],
    ["a channel that is not the rollout id's", { channel: "beta" }],
    ["a rollout id that is not one", { rolloutId: "../x", channel: "../x" }],
    ["another host", { hostname: "web-02" }]
  ]
  for (const [name, fields] of hostile) {
    it.scoped(`a snapshot with ${name} is refused, not merged`, () =>
      Effect.gen(function*() {
        yield* manifests
        yield* rehydrate(fields)
        expect(yield* records).toStrictEqual(new Map())
      }).pipe(Effect.provide(reducerLayer())))
  }

  it.scoped("a channel the verified fleet does not have is refused", () =>
    Effect.gen(function*() {
      yield* manifests
      yield* rehydrate({ rolloutId: "edge@abc123", channel: "edge" })
      expect(yield* records).toStrictEqual(new Map())
    }).pipe(Effect.provide(reducerLayer())))

  it.scoped("snapshots cannot grow the map without bound; finished rollouts are evicted and stay finished", () =>
    Effect.gen(function*() {
      yield* manifests
      for (let i = 0; i < 80; i++) yield* rehydrate({ rolloutId: `stable@a${i.toString(16)}` })
      expect((yield* records).size).toBe(64)
      // Finished rollouts beyond 16 leave the map; neither a dispatch nor a snapshot brings one back.
      const outbox = yield* MemoryOutboxHandle
      for (let i = 0; i < 20; i++) {
        yield* rehydrate({ rolloutId: `stable@a${i.toString(16)}`, state: "Converged", lastEventSeq: 5 })
      }
      const kept = yield* records
      expect([...kept.values()].filter((r) => r.state === "Converged")).toHaveLength(16)
      expect(kept.has("stable@a0")).toBe(false)
      yield* Ref.set(outbox.rows, [])
      yield* activate({ rolloutId: "stable@a0" })
      expect(yield* intents).toStrictEqual([])
      yield* rehydrate({ rolloutId: "stable@a0", state: "Soaking", lastEventSeq: 5 })
      expect((yield* records).has("stable@a0")).toBe(false)
    }).pipe(Effect.provide(reducerLayer())))
})

describe("the soak deadline is bounded by the signed policy", () => {
  const withSoak = (minutes: number) => {
    const set = manifestSet("rollback-and-halt")
    return { ...set, fleet: { ...set.fleet, waves: { stable: [{ hosts: ["web-01"], soakMinutes: minutes }] } } }
  }

  it.scoped("a deadline in the past is raised, one far in the future lowered", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(secs(10_000).getTime())
      yield* submit(ReducerInput.ManifestSetUpdated({ set: withSoak(30) }))
      yield* activate({ soakDueAt: secs(0), waveIndex: 0 })
      expect((yield* record())?.soakDueAt).toStrictEqual(secs(10_000 + 29 * 60))
      yield* activate({ rolloutId: "stable@1a7e2", soakDueAt: secs(10_000_000), waveIndex: 0 })
      expect((yield* record("stable@1a7e2"))?.soakDueAt).toStrictEqual(secs(10_000 + 31 * 60))
      // Within the tolerance the control plane's deadline stands.
      yield* activate({ rolloutId: "stable@e4ac7", soakDueAt: secs(10_000 + 30 * 60 + 20), waveIndex: 0 })
      expect((yield* record("stable@e4ac7"))?.soakDueAt).toStrictEqual(secs(10_000 + 30 * 60 + 20))
    }).pipe(Effect.provide(reducerLayer())))
})

describe("rollbacks go only where this host has been", () => {
  const worker = (env: ReadonlyArray<readonly [string, string]> = []) =>
    ActivationWorker.layer.pipe(
      Layer.provideMerge(reducerLayer({ sustainedFailureSecs: 10 })),
      Layer.provide(Layer.merge(ActivationPipeline.scripted({}), NodeContext.layer)),
      Layer.provideMerge(captureLogs),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(env))))
    )

  const revertedTo = Effect.flatMap(Reducer, (reducer) =>
    reducer.records.changes.pipe(
      Stream.map((all) => all.get(ROLLOUT)),
      Stream.filter((r) => r?.state === "Reverted"),
      Stream.runHead,
      Effect.timeout("2 seconds"),
      Effect.map((found) => found._tag === "Some" ? found.value?.revertedTo : undefined),
      Effect.orElseSucceed(() => undefined)
    ))

  /** A cold Soaking snapshot (after a restart), then a sustained probe failure under rollback-and-halt. */
  const failAfterSnapshot = (rollbackTarget: string) =>
    Effect.gen(function*() {
      yield* manifests
      yield* rehydrate({
        state: "Soaking",
        currentClosureAtDispatch: rollbackTarget,
        currentClosure: TARGET,
        soakDueAt: secs(600),
        lastEventSeq: 3
      })
      yield* failProbe
      yield* TestClock.adjust("11 seconds")
      yield* submit(ReducerInput.AdvanceTick())
      expect((yield* record())?.state).toBe("Failed")
    })

  it.scoped("a rollback target named only by a snapshot is refused with one ERROR line", () =>
    Effect.gen(function*() {
      yield* failAfterSnapshot(EVIL)
      const logs = yield* CapturedLogs
      const refusals = Effect.map(logs.lines, (lines) => lines.filter((line) => line.includes("refusing to roll back")))
      // The worker reads the profile from disk: wait in real time, not on the test clock.
      for (let i = 0; i < 200 && (yield* refusals).length === 0; i++) {
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
      }
      expect((yield* record())?.state).toBe("Failed")
      const errors = yield* refusals
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/^ERROR/)
      expect(errors[0]).toContain(EVIL)
    }).pipe(Effect.provide(worker([["NIXFLEET_AGENT_ACTIVATION_TEST_MODE", "1"]]))))

  it.scoped("the closure recorded before switching is a valid rollback target", () =>
    Effect.gen(function*() {
      yield* manifests
      yield* activate()
      yield* complete(TARGET)
      yield* failProbe
      yield* TestClock.adjust("11 seconds")
      yield* submit(ReducerInput.AdvanceTick())
      expect(yield* revertedTo).toBe(PRIOR)
    }).pipe(Effect.provide(worker([["NIXFLEET_AGENT_ACTIVATION_TEST_MODE", "1"]]))))

  it.scoped("a generation of the system profile is a valid rollback target", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-profile-"))),
        (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "system-7-link"))
      Fs.symlinkSync("system-7-link", Path.join(dir, "system"))
      yield* Effect.gen(function*() {
        yield* failAfterSnapshot(PRIOR)
        expect(yield* revertedTo).toBe(PRIOR)
      }).pipe(Effect.provide(worker([
        ["NIXFLEET_AGENT_ACTIVATION_TEST_MODE", "1"],
        ["NIXFLEET_AGENT_SYSTEM_PROFILE", Path.join(dir, "system")]
      ])))
    }))
})

describe("a heartbeat answer is capped", () => {
  it.scopedLive(`more than ${MAX_SNAPSHOTS_PER_ANSWER} snapshots: the answer is refused whole, with one ERROR line`, () =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      const wire = (n: number) =>
        JSON.stringify({
          bootstrap_rollouts: Array.from({ length: n }, (_, i) => ({
            rolloutId: `stable@a${i.toString(16)}`,
            hostname: "web-01",
            channel: "stable",
            state: "Soaking",
            targetClosure: TARGET,
            dispatchedAt: "2026-05-01T00:00:00Z",
            lastEventSeq: 1
          }))
        })
      const beat = sendHeartbeat("5 seconds").pipe(
        Effect.provide(ControlPlaneClient.layer.pipe(
          Layer.provide(ControlPlaneTransport.layer),
          Layer.provideMerge(
            AgentConfig.make({ machineId: "web-01", stateDir: "/nonexistent", controlPlaneUrl: cp.url })
          )
        )),
        Effect.provide(NodeContext.layer)
      )
      yield* cp.setFault("heartbeat", { _tag: "Status", status: 200, body: wire(MAX_SNAPSHOTS_PER_ANSWER) })
      expect(yield* beat).toHaveLength(MAX_SNAPSHOTS_PER_ANSWER)
      yield* cp.setFault("heartbeat", { _tag: "Status", status: 200, body: wire(MAX_SNAPSHOTS_PER_ANSWER + 1) })
      expect(yield* beat).toStrictEqual([])
      const errors = (yield* (yield* CapturedLogs).lines).filter((line) => line.includes("heartbeat answer refused"))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/^ERROR/)
    }).pipe(Effect.provide(captureLogs)))
})
