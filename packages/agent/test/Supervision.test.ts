/**
 * The runtime's workers as one supervised set: a defect injected into each worker in turn
 * (through the `WorkerHook` seam) stops the whole runtime with `WorkerFailed`, one ERROR
 * line naming the worker, the fault in the status report and the watchdog gate closed;
 * events the outbox held are delivered by the next run on the same state directory.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Fiber, Layer, Option, Schema, TestServices } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentRuntime, type AgentRuntimeService, runUntilShutdown } from "../src/AgentRuntime.js"
import { FAIL_WORKER, WORKER_NAMES } from "../src/config/testGates.js"
import { ActivationPipeline } from "../src/pipeline/ActivationPipeline.js"
import { Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import * as TestFailWorker from "../src/runtime/testFailWorker.js"
import { WorkerHook } from "../src/runtime/Workers.js"
import { StatusReportJson } from "../src/status/StatusReport.js"
import { fakeControlPlane, type RecordedRequest } from "./support/fakeControlPlane.js"
import { manifestSet, PRIOR, ROLLOUT, TARGET, testConfig } from "./support/fixtures.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"

const liveSleep = (ms: number) => TestServices.provideLive(Effect.sleep(ms))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-agent-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }))
)

const runtime = (stateDir: string, url: string) =>
  AgentRuntime.layer({ config: testConfig({ stateDir, controlPlaneUrl: url }) }).pipe(
    Layer.provide(Layer.mergeAll(NodeContext.layer, ActivationPipeline.scripted({}))),
    Layer.provide(
      Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["NIXFLEET_AGENT_ACTIVATION_TEST_MODE", "1"]])))
    )
  )

/** Makes `target` die once `trigger` completes; every other worker runs as it is. */
const dieOn =
  (target: string, trigger: Deferred.Deferred<void>, seen: Set<string>) =>
  <E, R>(worker: string, effect: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> => {
    seen.add(worker)
    return worker === target
      ? Effect.raceFirst(effect, Effect.zipRight(Deferred.await(trigger), Effect.dieMessage(`injected into ${worker}`)))
      : effect
  }

const dispatch = Effect.gen(function*() {
  const reducer = yield* Reducer
  yield* reducer.submit(ReducerInput.ManifestSetUpdated({ set: manifestSet("rollback-and-halt") }))
  yield* reducer.submit(ReducerInput.HostEvent({
    rolloutId: ROLLOUT,
    event: {
      _tag: "LocalActivate",
      currentClosureAtDispatch: PRIOR,
      targetClosure: TARGET,
      receivedAt: new Date(0),
      soakDueAt: new Date(600_000),
      seq: 0
    }
  }))
})

const eventKinds = (requests: () => ReadonlyArray<RecordedRequest>) =>
  requests().filter((r) => r.method === "POST" && r.url === "/v1/agent/events").map((r) =>
    (JSON.parse(r.body) as { event: { kind: string } }).event.kind
  )

/** The workers every runtime forks (renewal and metrics only when configured). */
const WORKERS = [
  "Reducer",
  "ActivationWorker",
  "OutboundSender",
  "Longpoll",
  "Heartbeat",
  "ManifestPoll",
  "ProbeScheduler",
  "AdvanceTicker",
  "AgentStatus.lifecycle",
  "AgentStatus.writer"
]

/** Runs the runtime with a defect in `target`, fired once `ready` (given the handle) is done. */
const runWithFault = (
  dir: string,
  url: string,
  target: string,
  ready: (rt: AgentRuntimeService) => Effect.Effect<void> = () => Effect.void
) =>
  Effect.gen(function*() {
    const trigger = yield* Deferred.make<void>()
    const seen = new Set<string>()
    const handle = yield* Deferred.make<AgentRuntimeService>()
    const run = yield* runUntilShutdown(runtime(dir, url), {
      onStarted: (rt) => Deferred.succeed(handle, rt)
    }).pipe(
      Effect.provideService(WorkerHook, dieOn(target, trigger, seen)),
      Effect.either,
      Effect.zip(Effect.flatMap(CapturedLogs, (logs) => logs.lines)),
      Effect.provide(captureLogs),
      Effect.fork
    )
    const rt = yield* Deferred.await(handle)
    yield* ready(rt)
    expect(Option.isNone(yield* rt.workerFault)).toBe(true)
    yield* Deferred.succeed(trigger, undefined)
    const [result, lines] = yield* Fiber.join(run)
    return { result, lines, seen, fault: yield* rt.workerFault }
  })

describe("supervised workers", () => {
  for (const target of WORKERS) {
    it.scoped(
      `a defect in ${target} stops the agent with WorkerFailed, once logged, in status`,
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const fake = yield* fakeControlPlane()
          const { fault, lines, result, seen } = yield* runWithFault(dir, fake.url, target)
          expect([...seen].sort()).toStrictEqual([...WORKERS].sort())
          expect(result._tag).toBe("Left")
          if (result._tag === "Left") expect(result.left).toMatchObject({ _tag: "WorkerFailed", worker: target })
          const errors = lines.filter((line) => line.startsWith("ERROR") && line.includes("failed; the agent stops"))
          expect(errors).toHaveLength(1)
          expect(errors[0]).toContain(`worker ${target} failed`)
          expect(errors[0]).toContain(`injected into ${target}`)
          // What the watchdog gate reads.
          expect(Option.map(fault, (f) => f.worker)).toStrictEqual(Option.some(target))
          // The last report, written as the runtime stopped, names the worker.
          const report = Schema.decodeUnknownSync(StatusReportJson)(
            Fs.readFileSync(Path.join(dir, "status.json"), "utf8")
          )
          expect(report.workerFault).toMatchObject({ worker: target, reason: expect.stringContaining("injected") })
        }),
      20_000
    )
  }

  it.scoped("a worker that returns while the agent is not stopping is a fault too", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const fake = yield* fakeControlPlane()
      const trigger = yield* Deferred.make<void>()
      const hook = <E, R>(worker: string, effect: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> =>
        worker === "Heartbeat" ? Effect.raceFirst(effect, Deferred.await(trigger)) : effect
      const run = yield* runUntilShutdown(runtime(dir, fake.url), {
        onStarted: () => Deferred.succeed(trigger, undefined)
      }).pipe(Effect.provideService(WorkerHook, hook), Effect.either, Effect.fork)
      const result = yield* Fiber.join(run)
      expect(result).toMatchObject({ _tag: "Left", left: { _tag: "WorkerFailed", worker: "Heartbeat" } })
    }), 20_000)

  it.scoped(
    "the fail-worker test gate kills the worker it names through the seam, under the test's own hook",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const fake = yield* fakeControlPlane()
        const seen = new Set<string>()
        const outer = <E, R>(worker: string, effect: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> => {
          seen.add(worker)
          return effect
        }
        const gated = runtime(dir, fake.url).pipe(
          Layer.provide(TestFailWorker.layer),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([[FAIL_WORKER, "Longpoll"]]))))
        )
        const [result, lines] = yield* runUntilShutdown(gated, {}).pipe(
          Effect.provideService(WorkerHook, outer),
          Effect.either,
          Effect.zip(Effect.flatMap(CapturedLogs, (logs) => logs.lines)),
          Effect.provide(captureLogs)
        )
        expect(result).toMatchObject({ _tag: "Left", left: { _tag: "WorkerFailed", worker: "Longpoll" } })
        expect([...seen].sort()).toStrictEqual([...WORKERS].sort())
        const errors = lines.filter((line) => line.startsWith("ERROR"))
        expect(errors).toHaveLength(1)
        expect(errors[0]).toContain(`worker Longpoll failed`)
        expect(errors[0]).toContain(`test hook ${FAIL_WORKER}: Longpoll dies now`)
        // Every worker the runtime forks is one the gate may name.
        expect(WORKER_NAMES).toStrictEqual(expect.arrayContaining(WORKERS))
      }),
    20_000
  )

  it.scoped("a shutdown is not a fault", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const fake = yield* fakeControlPlane()
      const result = yield* runUntilShutdown(runtime(dir, fake.url), { onStarted: (rt) => rt.shutdown }).pipe(
        Effect.either
      )
      expect(result._tag).toBe("Right")
    }), 20_000)

  it.scoped(
    "events held in the outbox when the sender dies are delivered by the next run",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const fake = yield* fakeControlPlane()
        // The control plane refuses events for now: they stay in the outbox.
        fake.answer((request) => request.url === "/v1/agent/events" ? { status: 503 } : { status: 204 })
        const { result } = yield* runWithFault(dir, fake.url, "OutboundSender", (rt) =>
          Effect.gen(function*() {
            yield* Effect.provide(dispatch, Layer.succeed(Reducer, rt.reducer))
            for (let i = 0; i < 500; i++) {
              const report = yield* rt.status.report
              if ((report.outbox?.depth ?? 0) >= 3) return
              yield* liveSleep(10)
            }
            expect.fail("the outbox never held the dispatch's events")
          }))
        expect(result).toMatchObject({ _tag: "Left", left: { worker: "OutboundSender" } })
        const refused = eventKinds(fake.requests).length
        fake.answer(() => ({ status: 204 }))
        const again = yield* runUntilShutdown(runtime(dir, fake.url), {
          onStarted: (rt) =>
            Effect.gen(function*() {
              for (
                let i = 0;
                i < 500 && !eventKinds(fake.requests).slice(refused).includes("ActivationCompleted");
                i++
              ) {
                yield* liveSleep(10)
              }
              yield* rt.shutdown
            })
        }).pipe(Effect.either)
        expect(again._tag).toBe("Right")
        const delivered = eventKinds(fake.requests).slice(refused)
        expect(delivered.slice(0, 3)).toStrictEqual(["DispatchAck", "ActivationStarted", "ActivationCompleted"])
      }),
    30_000
  )
})
