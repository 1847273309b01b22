/**
 * The runtime end to end, through the durable SQLite outbox, against an in-process HTTP
 * server standing in for the control plane.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import {
  ConfigProvider,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Scope,
  Stream,
  Supervisor,
  TestClock,
  TestServices
} from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentRuntime, type AgentRuntimeService, runUntilShutdown } from "../src/AgentRuntime.js"
import { ActivationPipeline, type ActivationPipelineService, SwitchFailed } from "../src/pipeline/ActivationPipeline.js"
import { Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import { fakeControlPlane, type RecordedRequest } from "./support/fakeControlPlane.js"
import { manifestSet, PRIOR, ROLLOUT, TARGET, testConfig } from "./support/fixtures.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"

const liveSleep = (ms: number) => TestServices.provideLive(Effect.sleep(ms))

const eventPosts = (requests: () => ReadonlyArray<RecordedRequest>) =>
  requests().filter((r) => r.method === "POST" && r.url === "/v1/agent/events")

/** Waits, in real time, until the fake control plane has received `n` events. */
const eventsReceived = (requests: () => ReadonlyArray<RecordedRequest>, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000 && eventPosts(requests).length < n; i++) yield* liveSleep(10)
    return eventPosts(requests).map((r) => JSON.parse(r.body).event as { kind: string; seq: number })
  })

const dispatch = (soakSecs: number) =>
  Effect.gen(function*() {
    const reducer = yield* Reducer
    const now = new Date(yield* TestClock.currentTimeMillis)
    yield* reducer.submit(ReducerInput.ManifestSetUpdated({ set: manifestSet("rollback-and-halt") }))
    yield* reducer.submit(ReducerInput.HostEvent({
      rolloutId: ROLLOUT,
      event: {
        _tag: "LocalActivate",
        currentClosureAtDispatch: PRIOR,
        targetClosure: TARGET,
        receivedAt: now,
        soakDueAt: new Date(now.getTime() + soakSecs * 1000),
        seq: 0
      }
    }))
  })

const runtime = (
  stateDir: string,
  url: string,
  pipeline: Partial<ActivationPipelineService>,
  env: Record<string, string>
) =>
  AgentRuntime.layer({ config: testConfig({ stateDir, controlPlaneUrl: url }) }).pipe(
    Layer.provide(Layer.mergeAll(NodeContext.layer, ActivationPipeline.scripted(pipeline))),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
  )

/**
 * A temporary state directory. Removed with retries: after a forced exit the abandoned
 * fibers may still be writing their files into it (rm -r then meets ENOTEMPTY).
 */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-agent-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }))
)

describe("AgentRuntime", () => {
  it.scoped(
    "in test mode a dispatch becomes DispatchAck(1), ActivationStarted, ActivationCompleted, then Converged",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const fake = yield* fakeControlPlane()
        yield* Effect.gen(function*() {
          yield* dispatch(60)
          // The probe scheduler declares the (here empty) probe topology after the activation.
          const first = yield* eventsReceived(fake.requests, 4)
          expect(first.map((e) => `${e.kind}#${e.seq}`)).toStrictEqual([
            "DispatchAck#1",
            "ActivationStarted#2",
            "ActivationCompleted#3",
            "ProbeTopologyDeclared#4"
          ])
          yield* TestClock.adjust("59 seconds")
          expect(eventPosts(fake.requests)).toHaveLength(4)
          yield* TestClock.adjust("6 seconds")
          const all = yield* eventsReceived(fake.requests, 5)
          expect(all[4]).toStrictEqual({
            kind: "Converged",
            convergedAt: "1970-01-01T00:01:00Z",
            currentClosure: TARGET,
            seq: 5
          })
          expect(Object.keys(all[0]!)).toStrictEqual(["kind", "currentClosureAtDispatch", "receivedAt", "seq"])
          expect(Object.keys(all[2]!)).toStrictEqual([
            "kind",
            "observedCurrentClosure",
            "exitCode",
            "completedAt",
            "seq"
          ])
        }).pipe(
          Effect.provide(runtime(dir, fake.url, { activate: () => Effect.dieMessage("test mode must not activate") }, {
            NIXFLEET_AGENT_ACTIVATION_TEST_MODE: "1"
          }))
        )
      }),
    20_000
  )

  it.scoped(
    "a failure under rollback-and-halt becomes ActivationFailed then RollbackComplete, never a second ActivationStarted",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const fake = yield* fakeControlPlane()
        yield* Effect.gen(function*() {
          yield* dispatch(60)
          const events = yield* eventsReceived(fake.requests, 4)
          expect(events.map((e) => `${e.kind}#${e.seq}`)).toStrictEqual([
            "DispatchAck#1",
            "ActivationStarted#2",
            "ActivationFailed#3",
            "RollbackComplete#4"
          ])
          expect(events[2]).toMatchObject({ exitCode: 7, stderrTail: "switch failed at phase systemd-run-fire" })
          expect(events[3]).toMatchObject({ revertedToClosure: PRIOR, exitCode: 0 })
          yield* liveSleep(200)
          expect(eventPosts(fake.requests)).toHaveLength(4)
        }).pipe(
          Effect.provide(runtime(dir, fake.url, {
            activate: () =>
              Effect.fail(new SwitchFailed({ phase: "systemd-run-fire", subprocessExitCode: 7, detail: "" }))
          }, {}))
        )
      }),
    20_000
  )

  it.scopedLive(
    "an embedding program runs the agent from an in-memory config provider and stops it with no fiber left",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const fake = yield* fakeControlPlane()
        const supervisor = yield* Supervisor.track
        const scope = yield* Scope.make()
        const provider = ConfigProvider.fromMap(
          new Map([
            ["NIXFLEET_AGENT_MACHINE_ID", "web-01"],
            ["NIXFLEET_AGENT_STATE_DIR", dir],
            ["NIXFLEET_AGENT_CP_URL", fake.url],
            ["NIXFLEET_AGENT_ACTIVATION_TEST_MODE", "1"]
          ])
        )
        const layer = AgentRuntime.layer().pipe(
          Layer.provide(Layer.mergeAll(NodeContext.layer, ActivationPipeline.scripted())),
          Layer.provide(Layer.setConfigProvider(provider))
        )
        const context = yield* Layer.buildWithScope(layer, scope).pipe(Effect.supervised(supervisor))
        const reducer = yield* Effect.provide(Reducer, context)
        yield* Effect.provide(dispatch(0), context)
        yield* reducer.records.changes.pipe(
          Stream.filter((records) => records.get(ROLLOUT)?.state === "Converged"),
          Stream.runHead,
          Effect.timeout("15 seconds")
        )
        yield* eventsReceived(fake.requests, 4)
        expect(yield* supervisor.value.pipe(Effect.map((fibers) => fibers.length))).toBeGreaterThan(0)
        yield* Effect.flatMap(AgentRuntime, (rt) => rt.shutdown).pipe(Effect.provide(context))
        yield* Scope.close(scope, Exit.void)
        expect(yield* supervisor.value).toStrictEqual([])
      }),
    30_000
  )
})

describe("runUntilShutdown", () => {
  it.scoped("stops within the drain deadline even when an activation will not let go", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const fake = yield* fakeControlPlane()
      const started = yield* Deferred.make<AgentRuntimeService>()
      const stuck = yield* Deferred.make<void>()
      const layer = runtime(dir, fake.url, {
        activate: () => Effect.zipRight(Deferred.succeed(stuck, undefined), Effect.uninterruptible(Effect.never))
      }, {})
      const run = yield* Effect.fork(
        runUntilShutdown(layer, { onStarted: (rt) => Deferred.succeed(started, rt) }).pipe(
          Effect.zipRight(Effect.flatMap(CapturedLogs, (logs) => logs.lines)),
          Effect.provide(captureLogs)
        )
      )
      const rt = yield* Deferred.await(started)
      yield* Effect.provide(dispatch(60), Layer.succeed(Reducer, rt.reducer))
      yield* Deferred.await(stuck)
      yield* rt.shutdown
      yield* TestClock.adjust("24 seconds")
      expect(yield* Fiber.poll(run)).toStrictEqual(Option.none())
      yield* TestClock.adjust("1 second")
      const lines = yield* Fiber.join(run)
      expect(lines.some((line) => line.includes("drain exceeded 25s; forcing exit"))).toBe(true)
    }), 20_000)

  it.scoped("stops at once when nothing holds it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const fake = yield* fakeControlPlane()
      const run = yield* Effect.fork(
        runUntilShutdown(runtime(dir, fake.url, {}, {}), { onStarted: (rt) => rt.shutdown }).pipe(
          Effect.zipRight(Effect.flatMap(CapturedLogs, (logs) => logs.lines)),
          Effect.provide(captureLogs)
        )
      )
      const lines = yield* Fiber.join(run)
      expect(lines.some((line) => line.includes("stopped"))).toBe(true)
    }), 20_000)
})
