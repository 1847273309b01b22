import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import type { HostRolloutState } from "@nixfleet/state-machine"
import { ConfigProvider, Effect, Exit, Layer, Ref, Stream, SubscriptionRef } from "effect"
import {
  ActivationPipeline,
  type ActivationPipelineService,
  PipelineError,
  RealiseFailed,
  RollbackFailed,
  SignatureMismatch,
  SwitchFailed,
  VerifyMismatch
} from "../src/pipeline/ActivationPipeline.js"
import { activationEvent } from "../src/runtime/ActivationWorker.js"
import * as ActivationWorker from "../src/runtime/ActivationWorker.js"
import { Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import { manifestSet, PRIOR, reducerLayer, ROLLOUT, TARGET } from "./support/fixtures.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"
import { MemoryOutboxHandle } from "./support/memoryOutbox.js"

const at = new Date("2026-05-17T12:00:00Z")

const workerLayer = (script: Partial<ActivationPipelineService>, env: Map<string, string> = new Map()) =>
  ActivationWorker.layer.pipe(
    Layer.provideMerge(reducerLayer()),
    Layer.provide(Layer.merge(ActivationPipeline.scripted(script), NodeContext.layer)),
    Layer.provideMerge(captureLogs),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(env)))
  )

const waitFor = (predicate: (record: HostRolloutState | undefined) => boolean) =>
  Effect.flatMap(Reducer, (reducer) =>
    reducer.records.changes.pipe(
      Stream.map((records) => records.get(ROLLOUT)),
      Stream.filter(predicate),
      Stream.runHead,
      Effect.timeout("5 seconds"),
      Effect.map((found) => found.pipe((o) => o._tag === "Some" ? o.value : undefined))
    ))

const dispatch = Effect.gen(function*() {
  const reducer = yield* Reducer
  yield* reducer.submit(ReducerInput.ManifestSetUpdated({ set: manifestSet("rollback-and-halt") }))
  yield* reducer.submit(ReducerInput.HostEvent({
    rolloutId: ROLLOUT,
    event: {
      _tag: "LocalActivate",
      currentClosureAtDispatch: PRIOR,
      targetClosure: TARGET,
      receivedAt: at,
      soakDueAt: at,
      seq: 0
    }
  }))
})

const queued = Effect.flatMap(
  MemoryOutboxHandle,
  (outbox) =>
    Effect.map(
      Ref.get(outbox.rows),
      (rows) => rows.map((row) => ({ kind: row.kind, seq: row.seq, body: JSON.parse(row.body) }))
    )
)

describe("activationEvent (spec activation-pipeline §1.8)", () => {
  const failure = (error: Parameters<typeof Exit.fail>[0]) => activationEvent(Exit.fail(error as never), at)

  it("maps each outcome to its event, exit class and text", () => {
    expect(activationEvent(Exit.succeed({ _tag: "FiredAndPolled", closure: TARGET }), at)).toStrictEqual({
      _tag: "LocalActivationCompleted",
      observedCurrentClosure: TARGET,
      exitCode: 0,
      completedAt: at,
      seq: 0
    })
    expect(activationEvent(Exit.succeed({ _tag: "DeferredPendingReboot", closure: TARGET, component: "dbus" }), at))
      .toStrictEqual({ _tag: "LocalActivationDeferred", component: "dbus", deferredAt: at, seq: 0 })
    expect(failure(new SignatureMismatch({ closure: TARGET, stderrTail: "lacks a signature by a trusted key" })))
      .toMatchObject({
        exitCode: -2,
        stderrTail: `signature mismatch on ${TARGET}: lacks a signature by a trusted key`
      })
    expect(failure(new VerifyMismatch({ expected: TARGET, actual: "third" }))).toMatchObject({
      exitCode: -3,
      stderrTail: `verify mismatch: expected=${TARGET} actual=third`
    })
    expect(failure(new RealiseFailed({ phase: "realise", reason: "path not valid" }))).toMatchObject({
      exitCode: -1,
      stderrTail: "realise failed: path not valid"
    })
    expect(failure(new SwitchFailed({ phase: "nix-env-set", subprocessExitCode: 7, detail: "" }))).toMatchObject({
      exitCode: 7,
      stderrTail: "switch failed at phase nix-env-set"
    })
    expect(failure(new SwitchFailed({ phase: "switch-poll-timeout", subprocessExitCode: null, detail: "" })))
      .toMatchObject({ exitCode: -1 })
    expect(failure(new PipelineError({ phase: "spawn", detail: "ENOENT nix-env" }))).toMatchObject({
      _tag: "LocalActivationFailed",
      exitCode: -1,
      stderrTail: "activation pipeline error: ENOENT nix-env (phase spawn)"
    })
  })

  it("a defect becomes a generic failure, never a crash", () => {
    expect(activationEvent(Exit.die(new Error("boom")), at)).toMatchObject({
      _tag: "LocalActivationFailed",
      exitCode: -1,
      stderrTail: expect.stringContaining("activation pipeline error: Error: boom")
    })
  })
})

describe("ActivationWorker", () => {
  it.scoped("a forward intent reports started, then completed", () =>
    Effect.gen(function*() {
      yield* dispatch
      expect((yield* waitFor((r) => r?.state === "Soaking"))?.currentClosure).toBe(TARGET)
      expect((yield* queued).map((row) => `${row.kind}#${row.seq}`)).toStrictEqual([
        "DispatchAck#1",
        "ActivationStarted#2",
        "ActivationCompleted#3"
      ])
      expect((yield* queued)[1]?.body).toMatchObject({ switchMethod: "switch-to-configuration" })
    }).pipe(Effect.provide(workerLayer({}))))

  it.scoped("a failure under rollback-and-halt runs the rollback, which never reports started", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make<ReadonlyArray<string>>([])
      yield* Effect.provide(
        Effect.gen(function*() {
          yield* dispatch
          const reverted = yield* waitFor((r) => r?.state === "Reverted")
          expect(reverted?.revertedTo).toBe(PRIOR)
          expect((yield* queued).map((row) => row.kind)).toStrictEqual([
            "DispatchAck",
            "ActivationStarted",
            "ActivationFailed",
            "RollbackComplete"
          ])
        }),
        workerLayer({
          activate: (target) =>
            Effect.zipRight(
              Ref.update(calls, (c) => [...c, `activate ${target}`]),
              Effect.fail(new SwitchFailed({ phase: "nix-env-set", subprocessExitCode: 3, detail: "" }))
            ),
          rollback: (closure) =>
            Effect.as(Ref.update(calls, (c) => [...c, `rollback ${closure}`]), {
              _tag: "RolledBack" as const,
              revertedToClosure: closure,
              fallback: null
            })
        })
      )
      expect(yield* Ref.get(calls)).toStrictEqual([`activate ${TARGET}`, `rollback ${PRIOR}`])
    }))

  it.scoped("a defect in the pipeline becomes ActivationFailed with exit code -1 and the worker carries on", () =>
    Effect.gen(function*() {
      yield* dispatch
      yield* waitFor((r) => r?.state === "Reverted")
      const failed = (yield* queued).find((row) => row.kind === "ActivationFailed")
      expect(failed?.body).toMatchObject({
        exitCode: -1,
        stderrTail: expect.stringContaining("activation pipeline error")
      })
    }).pipe(Effect.provide(workerLayer({ activate: () => Effect.die(new Error("unexpected")) }))))

  it.scoped("a failed rollback is logged loudly and the host stays Failed", () =>
    Effect.gen(function*() {
      yield* dispatch
      yield* waitFor((r) => r?.state === "Failed")
      const logs = yield* CapturedLogs
      yield* Effect.gen(function*() {
        while (!(yield* logs.lines).some((line) => line.includes("rollback failed at phase nix-env-rollback"))) {
          yield* Effect.yieldNow()
        }
      }).pipe(Effect.timeout("5 seconds"))
      expect((yield* logs.lines).filter((line) => line.startsWith("ERROR")).join("\n")).toContain(
        "rollback failed at phase nix-env-rollback; the host stays Failed"
      )
    }).pipe(
      Effect.provide(workerLayer({
        activate: () => Effect.fail(new RealiseFailed({ phase: "realise", reason: "x" })),
        rollback: () =>
          Effect.fail(new RollbackFailed({ phase: "nix-env-rollback", subprocessExitCode: 1, detail: "" }))
      }))
    ))

  it.scoped("test mode short-circuits every intent with a warning, read on every intent", () =>
    Effect.gen(function*() {
      yield* dispatch
      yield* waitFor((r) => r?.state === "Soaking")
      const logs = yield* CapturedLogs
      expect((yield* logs.lines).filter((line) => line.includes("NOT activating anything"))).toHaveLength(1)
      expect((yield* logs.lines).some((line) => line.startsWith("WARN"))).toBe(true)
    }).pipe(
      Effect.provide(workerLayer(
        { activate: () => Effect.dieMessage("the pipeline must not run in test mode") },
        new Map([["NIXFLEET_AGENT_ACTIVATION_TEST_MODE", "1"]])
      ))
    ))

  it.scoped("unsetting test mode takes effect at the next intent (read from the environment each time)", () =>
    Effect.gen(function*() {
      const KEY = "NIXFLEET_AGENT_ACTIVATION_TEST_MODE"
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const previous = process.env[KEY]
          process.env[KEY] = "1"
          return previous
        }),
        (previous) =>
          Effect.sync(() => {
            if (previous === undefined) delete process.env[KEY]
            else process.env[KEY] = previous
          })
      )
      const ran = yield* Ref.make(0)
      const layer = ActivationWorker.layer.pipe(
        Layer.provideMerge(reducerLayer()),
        Layer.provide(ActivationPipeline.scripted({
          activate: (target) => Effect.as(Ref.update(ran, (n) => n + 1), { _tag: "FiredAndPolled", closure: target })
        })),
        Layer.provide(NodeContext.layer),
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromEnv()))
      )
      yield* Effect.provide(
        Effect.gen(function*() {
          yield* dispatch
          yield* waitFor((r) => r?.state === "Soaking")
          expect(yield* Ref.get(ran)).toBe(0)
          delete process.env[KEY]
          const reducer = yield* Reducer
          yield* reducer.submit(ReducerInput.HostEvent({
            rolloutId: "stable@def456",
            event: {
              _tag: "LocalActivate",
              currentClosureAtDispatch: PRIOR,
              targetClosure: TARGET,
              receivedAt: at,
              soakDueAt: at,
              seq: 0
            }
          }))
          yield* reducer.records.changes.pipe(
            Stream.filter((records) => records.get("stable@def456")?.state === "Soaking"),
            Stream.runHead,
            Effect.timeout("5 seconds")
          )
          expect(yield* Ref.get(ran)).toBe(1)
        }),
        layer
      )
    }))

  it.scoped("a closure that is not a store basename is refused without running anything", () =>
    Effect.gen(function*() {
      const reducer = yield* Reducer
      yield* reducer.submit(ReducerInput.ManifestSetUpdated({ set: manifestSet("halt") }))
      yield* reducer.submit(ReducerInput.HostEvent({
        rolloutId: ROLLOUT,
        event: {
          _tag: "LocalActivate",
          currentClosureAtDispatch: PRIOR,
          targetClosure: "../../etc/passwd; rm -rf /",
          receivedAt: at,
          soakDueAt: at,
          seq: 0
        }
      }))
      const failed = yield* waitFor((r) => r?.state === "Failed")
      expect(failed?.activationFailedAt).not.toBeNull()
      expect((yield* queued).find((row) => row.kind === "ActivationFailed")?.body).toMatchObject({
        exitCode: -1,
        stderrTail: expect.stringContaining("not a Nix store basename")
      })
    }).pipe(Effect.provide(workerLayer({ activate: () => Effect.dieMessage("must not run") }))))
})

describe("records", () => {
  it.scoped("are published after every input", () =>
    Effect.gen(function*() {
      const reducer = yield* Reducer
      yield* dispatch
      expect((yield* SubscriptionRef.get(reducer.records)).size).toBe(1)
    }).pipe(Effect.provide(workerLayer({}))))
})
