/**
 * Resuming after a restart: a switch or rollback released by a previous run of the agent
 * (recorded in the host ledger) whose outcome was never recorded is finished from the host's
 * state, once the control plane's snapshot brings the record back. The decision itself, then
 * each row through the real reducer and worker (scripted pipeline, a real current-system link).
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import type { HostRolloutSnapshot } from "@nixfleet/proto"
import type { HostRolloutState } from "@nixfleet/state-machine"
import { ConfigProvider, Deferred, Effect, Layer, Option, Ref, Stream } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentConfig } from "../src/config/AgentConfig.js"
import { Outbox } from "../src/outbox/Outbox.js"
import { ActivationPipeline, type ActivationPipelineService } from "../src/pipeline/ActivationPipeline.js"
import * as ActivationWorker from "../src/runtime/ActivationWorker.js"
import { HostLedger, LEDGER_FILE } from "../src/runtime/HostLedger.js"
import { Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import { resumeDecision } from "../src/runtime/resume.js"
import { manifestSet, PRIOR, reducerLayer, ROLLOUT, TARGET, testConfig } from "./support/fixtures.js"
import { captureLogs } from "./support/logs.js"
import { MemoryOutboxHandle } from "./support/memoryOutbox.js"

const OTHER = "1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s-nixos-system-web-01"
const secs = (n: number) => new Date(Date.UTC(2026, 4, 17, 12, 0, n))

describe("resumeDecision", () => {
  const decide = (rollback: boolean, current: string | null) =>
    resumeDecision({ rollback, current, target: TARGET, previous: PRIOR })._tag

  it("a switch: on the target it completes, on the previous closure it runs again, else it is not guessed", () => {
    expect(decide(false, TARGET)).toBe("Complete")
    expect(decide(false, PRIOR)).toBe("Rerun")
    expect(decide(false, OTHER)).toBe("Unknown")
    expect(decide(false, null)).toBe("Unknown")
    expect(resumeDecision({ rollback: false, current: PRIOR, target: TARGET, previous: null })).toMatchObject({
      _tag: "Unknown",
      reason: expect.stringContaining("none recorded")
    })
  })

  it("a rollback: on its closure it is done, on the target it runs again, else it is not guessed", () => {
    expect(decide(true, PRIOR)).toBe("RolledBack")
    expect(decide(true, TARGET)).toBe("RollbackAgain")
    expect(decide(true, OTHER)).toBe("Unknown")
    expect(decide(true, null)).toBe("Unknown")
  })
})

/** A host directory: the current-system link and a system profile holding `profile`. */
const makeHost = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "nixfleet-resume-"))),
  (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
)

const pointAt = (link: string, closure: string) =>
  Effect.promise(async () => {
    await Fs.rm(link, { force: true })
    await Fs.symlink(`/nix/store/${closure}`, link)
  })

describe("the host ledger's released rollbacks", () => {
  it.scoped("persist across a restart, read a ledger written before they existed, and record a failure", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      // A ledger as the previous version wrote it: no rollbacks.
      yield* Effect.promise(() =>
        Fs.writeFile(
          Path.join(dir, LEDGER_FILE),
          JSON.stringify({
            version: 1,
            switches: [{
              rolloutId: ROLLOUT,
              target: TARGET,
              previous: PRIOR,
              soakDueAt: null,
              recordedAt: "2026-05-17T12:00:00Z"
            }],
            manifests: [],
            fleet: null
          })
        )
      )
      const ledger = HostLedger.layer.pipe(Layer.provide(AgentConfig.make(testConfig({ stateDir: dir }))))
      yield* Effect.gen(function*() {
        const first = yield* HostLedger
        expect((yield* first.switchOf(ROLLOUT))?.previous).toBe(PRIOR)
        expect(yield* first.rollbackOf(ROLLOUT)).toBeUndefined()
        yield* first.recordRollback({ rolloutId: ROLLOUT, closure: PRIOR, releasedAt: secs(5), failedAt: null })
      }).pipe(Effect.provide(ledger))
      yield* Effect.gen(function*() {
        const second = yield* HostLedger
        expect(yield* second.rollbackOf(ROLLOUT)).toStrictEqual({
          rolloutId: ROLLOUT,
          closure: PRIOR,
          releasedAt: secs(5),
          failedAt: null
        })
        yield* second.recordRollbackFailed(ROLLOUT, secs(9))
        expect((yield* second.rollbackOf(ROLLOUT))?.failedAt).toStrictEqual(secs(9))
        expect((yield* second.switchOf(ROLLOUT))?.target).toBe(TARGET)
      }).pipe(Effect.provide(ledger))
    }))
})

interface Calls {
  readonly activate: Array<string>
  readonly rollback: Array<string>
}

const harness = (dir: string, calls: Calls, script: Partial<ActivationPipelineService> = {}) => {
  const env = new Map([
    ["NIXFLEET_AGENT_CURRENT_SYSTEM_PATH", Path.join(dir, "current-system")],
    ["NIXFLEET_AGENT_SYSTEM_PROFILE", Path.join(dir, "system")],
    ["NIXFLEET_AGENT_SWITCH_METHOD", "direct"],
    ["NIXFLEET_AGENT_SWITCH_LOCK_PATH", Path.join(dir, "switch.lock")],
    ["NIXFLEET_AGENT_STATE_DIR", dir]
  ])
  return ActivationWorker.layer.pipe(
    Layer.provideMerge(reducerLayer()),
    Layer.provide(Layer.merge(
      ActivationPipeline.scripted({
        activate: (target) =>
          Effect.suspend(() => {
            calls.activate.push(target)
            return script.activate?.(target) ?? Effect.succeed({ _tag: "FiredAndPolled", closure: target } as const)
          }),
        rollback: (closure) =>
          Effect.sync(() => calls.rollback.push(closure)).pipe(
            Effect.as({ _tag: "RolledBack", revertedToClosure: closure, fallback: null } as const)
          )
      }),
      NodeContext.layer
    )),
    Layer.provideMerge(captureLogs),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(env)))
  )
}

const snapshot = (fields: Partial<HostRolloutSnapshot>): HostRolloutSnapshot => ({
  rolloutId: ROLLOUT,
  hostname: "web-01",
  channel: "stable",
  state: "Activating",
  targetClosure: TARGET,
  currentClosureAtDispatch: PRIOR,
  currentClosure: PRIOR,
  dispatchedAt: secs(0),
  dispatchAckedAt: secs(0),
  activationStartedAt: secs(1),
  activationCompletedAt: null,
  soakDueAt: secs(600),
  lastEventSeq: 2,
  ...fields
})

const waitFor = (predicate: (record: HostRolloutState | undefined) => boolean) =>
  Effect.flatMap(Reducer, (reducer) =>
    reducer.records.changes.pipe(
      Stream.map((records) => records.get(ROLLOUT)),
      Stream.filter(predicate),
      Stream.runHead,
      Effect.timeoutFail({ duration: "3 seconds", onTimeout: () => new Error("the rollout never got there") }),
      Effect.map(Option.getOrUndefined)
    ))

const queued = Effect.flatMap(MemoryOutboxHandle, (outbox) =>
  Effect.map(
    Ref.get(outbox.rows),
    (rows) => rows.map((row) => ({ kind: row.kind, seq: row.seq, body: JSON.parse(row.body) as unknown }))
  ))
const kinds = Effect.map(queued, (rows) => rows.map((row) => `${row.kind}#${row.seq}`))

/**
 * The state a previous run left: the policy cached, the ledger's switch record (and the
 * released rollback when `rollbackReleased`), the host on `current`; then the control
 * plane's snapshot arrives as at boot.
 */
const restartWith = (dir: string, args: {
  readonly current: string
  readonly snapshot: Partial<HostRolloutSnapshot>
  readonly rollbackReleased?: "pending" | "failed"
}) =>
  Effect.gen(function*() {
    const reducer = yield* Reducer
    const ledger = yield* HostLedger
    yield* reducer.submit(ReducerInput.ManifestSetUpdated({ set: manifestSet("rollback-and-halt") }))
    yield* ledger.recordSwitch({
      rolloutId: ROLLOUT,
      target: TARGET,
      previous: PRIOR,
      soakDueAt: secs(600),
      recordedAt: secs(0)
    })
    if (args.rollbackReleased !== undefined) {
      yield* ledger.recordRollback({
        rolloutId: ROLLOUT,
        closure: PRIOR,
        releasedAt: secs(5),
        failedAt: args.rollbackReleased === "failed" ? secs(9) : null
      })
    }
    yield* pointAt(Path.join(dir, "current-system"), args.current)
    // The profile holds what runs (as after a switch), so the profile check has nothing to set.
    yield* pointAt(Path.join(dir, "system-1-link"), args.current)
    yield* Effect.promise(() => Fs.symlink("system-1-link", Path.join(dir, "system")))
    yield* reducer.submit(ReducerInput.BootstrapHost({ snapshot: snapshot(args.snapshot) }))
  })

const newCalls = (): Calls => ({ activate: [], rollback: [] })

describe("resuming after a restart (reducer and worker)", () => {
  it.live("Activating, the host on the target: no switch, ActivationCompleted once (started was reported)", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      yield* Effect.gen(function*() {
        yield* restartWith(dir, { current: TARGET, snapshot: {} })
        const soaking = yield* waitFor((r) => r?.state === "Soaking")
        expect(soaking?.currentClosure).toBe(TARGET)
        expect(yield* kinds).toStrictEqual(["ActivationCompleted#3"])
        expect(calls.activate).toStrictEqual([])
      }).pipe(Effect.provide(harness(dir, calls)))
    }).pipe(Effect.scoped))

  it.live("Activating, the host on the target, started never recorded: ActivationStarted then Completed", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      yield* Effect.gen(function*() {
        yield* restartWith(dir, { current: TARGET, snapshot: { activationStartedAt: null, lastEventSeq: 1 } })
        yield* waitFor((r) => r?.state === "Soaking")
        expect(yield* kinds).toStrictEqual(["ActivationStarted#2", "ActivationCompleted#3"])
        expect(calls.activate).toStrictEqual([])
      }).pipe(Effect.provide(harness(dir, calls)))
    }).pipe(Effect.scoped))

  it.live("Activating, the host on the previous closure: the activation runs again, without a second Started", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      yield* Effect.gen(function*() {
        yield* restartWith(dir, { current: PRIOR, snapshot: {} })
        yield* waitFor((r) => r?.state === "Soaking")
        expect(calls.activate).toStrictEqual([TARGET])
        expect(yield* kinds).toStrictEqual(["ActivationCompleted#3"])
      }).pipe(Effect.provide(harness(dir, calls)))
    }).pipe(Effect.scoped))

  it.live("Activating, the host on a third closure: ActivationFailed saying so, then the rollback to the ledger's", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      yield* Effect.gen(function*() {
        yield* restartWith(dir, { current: OTHER, snapshot: {} })
        const reverted = yield* waitFor((r) => r?.state === "Reverted")
        expect(reverted?.revertedTo).toBe(PRIOR)
        expect(calls).toStrictEqual({ activate: [], rollback: [PRIOR] })
        const rows = yield* queued
        expect(rows.map((row) => row.kind)).toStrictEqual(["ActivationFailed", "RollbackComplete"])
        expect(rows[0]?.body).toMatchObject({
          exitCode: -1,
          stderrTail: expect.stringContaining(`after a restart the host runs ${OTHER}, neither the target`)
        })
        expect((yield* (yield* HostLedger).rollbackOf(ROLLOUT))?.closure).toBe(PRIOR)
      }).pipe(Effect.provide(harness(dir, calls)))
    }).pipe(Effect.scoped))

  it.live("Failed mid-rollback, the host on the rollback's closure: RollbackComplete, nothing run again", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      yield* Effect.gen(function*() {
        yield* restartWith(dir, {
          current: PRIOR,
          rollbackReleased: "pending",
          snapshot: { state: "Failed", currentClosure: TARGET, activationCompletedAt: secs(3), lastEventSeq: 4 }
        })
        const reverted = yield* waitFor((r) => r?.state === "Reverted")
        expect(reverted?.revertedTo).toBe(PRIOR)
        expect(calls).toStrictEqual({ activate: [], rollback: [] })
        expect(yield* kinds).toStrictEqual(["RollbackComplete#5"])
      }).pipe(Effect.provide(harness(dir, calls)))
    }).pipe(Effect.scoped))

  it.live("Failed mid-rollback, the host still on the target: the rollback runs again", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      yield* Effect.gen(function*() {
        yield* restartWith(dir, {
          current: TARGET,
          rollbackReleased: "pending",
          snapshot: { state: "Failed", currentClosure: TARGET, activationCompletedAt: secs(3), lastEventSeq: 4 }
        })
        yield* waitFor((r) => r?.state === "Reverted")
        expect(calls).toStrictEqual({ activate: [], rollback: [PRIOR] })
        expect(yield* kinds).toStrictEqual(["RollbackComplete#5"])
      }).pipe(Effect.provide(harness(dir, calls)))
    }).pipe(Effect.scoped))

  it.live("nothing is resumed for a rollback that failed", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      yield* Effect.gen(function*() {
        yield* restartWith(dir, {
          current: TARGET,
          rollbackReleased: "failed",
          snapshot: { state: "Failed", currentClosure: TARGET, lastEventSeq: 4 }
        })
        yield* Effect.sleep("300 millis")
        expect(calls).toStrictEqual({ activate: [], rollback: [] })
        expect((yield* (yield* Reducer).records.get).get(ROLLOUT)?.state).toBe("Failed")
        expect(yield* kinds).toStrictEqual([])
      }).pipe(Effect.provide(harness(dir, calls)))
    }).pipe(Effect.scoped))

  it.live("nothing is resumed while the outbox holds events of the rollout the control plane has not seen", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        yield* outbox.enqueue({
          rolloutId: ROLLOUT,
          seq: 3,
          hostname: "web-01",
          durable: true,
          event: {
            _tag: "ActivationCompleted",
            observedCurrentClosure: TARGET,
            exitCode: 0,
            completedAt: secs(4),
            seq: 3
          }
        })
        yield* restartWith(dir, { current: TARGET, snapshot: {} })
        yield* Effect.sleep("300 millis")
        expect(calls).toStrictEqual({ activate: [], rollback: [] })
        expect(yield* kinds).toStrictEqual(["ActivationCompleted#3"])
      }).pipe(Effect.provide(harness(dir, calls)))
    }).pipe(Effect.scoped))

  it.live("a snapshot during this process's own activation resumes nothing: one switch", () =>
    Effect.gen(function*() {
      const dir = yield* makeHost
      const calls = newCalls()
      const gate = yield* Deferred.make<void>()
      yield* Effect.gen(function*() {
        const reducer = yield* Reducer
        yield* reducer.submit(ReducerInput.ManifestSetUpdated({ set: manifestSet("rollback-and-halt") }))
        yield* pointAt(Path.join(dir, "current-system"), PRIOR)
        yield* reducer.submit(ReducerInput.HostEvent({
          rolloutId: ROLLOUT,
          event: {
            _tag: "LocalActivate",
            currentClosureAtDispatch: PRIOR,
            targetClosure: TARGET,
            receivedAt: secs(0),
            soakDueAt: secs(600),
            seq: 0
          }
        }))
        yield* waitFor((r) => r?.activationStartedAt !== null && r?.activationStartedAt !== undefined)
        yield* reducer.submit(ReducerInput.BootstrapHost({ snapshot: snapshot({}) }))
        yield* Effect.sleep("200 millis")
        yield* Deferred.succeed(gate, undefined)
        yield* waitFor((r) => r?.state === "Soaking")
        expect(calls.activate).toStrictEqual([TARGET])
      }).pipe(Effect.provide(harness(dir, calls, {
        activate: (target) => Effect.as(Deferred.await(gate), { _tag: "FiredAndPolled", closure: target } as const)
      })))
    }).pipe(Effect.scoped))
})
