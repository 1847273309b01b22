/**
 * The probe scheduler with TestClock, real exec probes (`test -e <file>`, so a test flips a
 * probe by creating or removing a file) and the real reducer over an in-memory outbox.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Layer, Metric, Option, Ref, TestClock, TestServices } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { invalidHealthChecks } from "../src/probes/HealthChecks.js"
import * as ProbeScheduler from "../src/probes/ProbeScheduler.js"
import { Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import { Shutdown } from "../src/runtime/Shutdown.js"
import { StatusBoard } from "../src/runtime/StatusBoard.js"
import { WorkerHook, Workers } from "../src/runtime/Workers.js"
import { manifestSet, PRIOR, reducerLayer, TARGET } from "./support/fixtures.js"
import { MemoryOutboxHandle } from "./support/memoryOutbox.js"

const ROLLOUT_A = "stable@aaaa"
const ROLLOUT_B = "stable@bbbb"

interface Setup {
  readonly dir: string
  readonly healthChecks: string
  readonly flag: (name: string, up: boolean) => void
}

const setup = (): Setup => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-probes-"))
  return {
    dir,
    healthChecks: Path.join(dir, "health-checks.json"),
    flag: (name, up) =>
      up ? Fs.writeFileSync(Path.join(dir, name), "") : Fs.rmSync(Path.join(dir, name), { force: true })
  }
}

const declare = (s: Setup, probes: Record<string, Record<string, unknown>>) =>
  Fs.writeFileSync(s.healthChecks, JSON.stringify(probes))

/** An exec probe that passes while `<dir>/<flag>` exists. */
const fileProbe = (s: Setup, flag: string, extra: Record<string, unknown> = {}) => ({
  kind: "exec",
  mode: "enforce",
  command: ["test", "-e", Path.join(s.dir, flag)],
  intervalSeconds: 10,
  ...extra
})

const layer = (s: Setup, env: ReadonlyArray<readonly [string, string]> = []) =>
  ProbeScheduler.layer.pipe(
    Layer.provideMerge(reducerLayer({ healthChecksFile: s.healthChecks, stateDir: s.dir })),
    Layer.provide(NodeContext.layer),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(env))))
  )

/** Drives a rollout to Soaking: its activation completion resets the probes. */
const soak = (rolloutId: string, soakSecs = 3600) =>
  Effect.gen(function*() {
    const reducer = yield* Reducer
    yield* reducer.submit(ReducerInput.ManifestSetUpdated({ set: manifestSet() }))
    const at = new Date(yield* TestClock.currentTimeMillis)
    yield* reducer.submit(ReducerInput.HostEvent({
      rolloutId,
      event: {
        _tag: "LocalActivate",
        currentClosureAtDispatch: PRIOR,
        targetClosure: TARGET,
        receivedAt: at,
        soakDueAt: new Date(at.getTime() + soakSecs * 1000),
        seq: 0
      }
    }))
    yield* reducer.submit(ReducerInput.HostEvent({
      rolloutId,
      event: { _tag: "LocalActivationCompleted", observedCurrentClosure: TARGET, exitCode: 0, completedAt: at, seq: 0 }
    }))
  })

const rows = Effect.flatMap(MemoryOutboxHandle, (outbox) => Ref.get(outbox.rows))
const kinds = (rolloutId: string, filter?: string) =>
  Effect.map(rows, (all) =>
    all.filter((r) => r.rolloutId === rolloutId).map((r) => {
      const body = JSON.parse(r.body)
      return body.probeName === undefined || filter === undefined || body.probeName === filter
        ? `${r.kind}${body.status === undefined ? "" : `:${body.status}`}`
        : null
    }).filter((k): k is string => k !== null))

/** Waits (real time: probes are real processes) until `condition` holds. */
const settle = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      if (yield* condition) return
      yield* TestServices.provideLive(Effect.sleep(10))
    }
    throw new Error("condition never held")
  })

const countOf = (rolloutId: string, kind: string) =>
  Effect.map(kinds(rolloutId), (k) => k.filter((x) => x.startsWith(kind)).length)

describe("ProbeScheduler", () => {
  it.scoped("a probe ticker that dies is a worker fault: named, and the runtime is asked to stop", () => {
    const s = setup()
    s.flag("up", true)
    declare(s, { web: fileProbe(s, "up") })
    const hook = <E, R>(worker: string, effect: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> =>
      worker === "ProbeScheduler.web" ? Effect.dieMessage("injected into the ticker") : effect
    const supervised = ProbeScheduler.layer.pipe(
      Layer.provideMerge(Workers.layer),
      Layer.provideMerge(StatusBoard.layer),
      Layer.provideMerge(reducerLayer({ healthChecksFile: s.healthChecks, stateDir: s.dir })),
      Layer.provide(NodeContext.layer),
      Layer.provide(Layer.succeed(WorkerHook, hook))
    )
    return Effect.gen(function*() {
      yield* soak(ROLLOUT_A)
      const workers = yield* Workers
      yield* settle(Effect.map(workers.fault, Option.isSome))
      const fault = yield* workers.fault
      expect(Option.getOrThrow(fault)).toMatchObject({ worker: "ProbeScheduler.web" })
      expect(Option.getOrThrow(fault).reason).toContain("injected into the ticker")
      expect(yield* Deferred.isDone(yield* Shutdown)).toBe(true)
    }).pipe(Effect.provide(supervised))
  })

  it.scoped("declares the topology (disabled probes included) before any result, first run at once", () => {
    const s = setup()
    s.flag("up", true)
    declare(s, {
      web: fileProbe(s, "up"),
      legacy: { kind: "http", mode: "disabled" },
      audit: fileProbe(s, "up", { mode: "observe" })
    })
    return Effect.gen(function*() {
      yield* soak(ROLLOUT_A)
      yield* settle(Effect.map(countOf(ROLLOUT_A, "ProbeResult"), (n) => n === 2))
      const sequence = yield* kinds(ROLLOUT_A)
      expect(sequence.slice(0, 4)).toStrictEqual([
        "DispatchAck",
        "ActivationCompleted",
        "ProbeTopologyDeclared",
        sequence[3]
      ])
      const topology = JSON.parse((yield* rows).find((r) => r.kind === "ProbeTopologyDeclared")!.body).probes
      expect(topology).toStrictEqual([
        { probeName: "web", kind: "exec", mode: "enforce" },
        { probeName: "legacy", kind: "http", mode: "disabled" },
        { probeName: "audit", kind: "exec", mode: "observe" }
      ])
      expect(sequence.indexOf("ProbeTopologyDeclared")).toBeLessThan(
        sequence.findIndex((k) => k.startsWith("Probe") && k !== "ProbeTopologyDeclared")
      )
      expect(sequence.filter((k) => k === "ProbeObservedFirst")).toHaveLength(2)
    }).pipe(Effect.provide(layer(s)))
  })

  it.scoped("runs every interval, floored at 5 s; runOnce runs once", () => {
    const s = setup()
    s.flag("up", true)
    declare(s, { fast: fileProbe(s, "up", { intervalSeconds: 1 }), once: fileProbe(s, "up", { runOnce: true }) })
    return Effect.gen(function*() {
      yield* soak(ROLLOUT_A)
      yield* settle(Effect.map(countOf(ROLLOUT_A, "ProbeResult"), (n) => n === 2))
      yield* TestClock.adjust("4 seconds")
      yield* TestServices.provideLive(Effect.sleep(200))
      expect(yield* countOf(ROLLOUT_A, "ProbeResult")).toBe(2)
      yield* TestClock.adjust("1 second")
      yield* settle(Effect.map(countOf(ROLLOUT_A, "ProbeResult"), (n) => n === 3))
      yield* TestClock.adjust("30 seconds")
      yield* settle(
        Effect.map(kinds(ROLLOUT_A, "fast"), (k) => k.filter((x) => x.startsWith("ProbeResult")).length >= 4)
      )
      expect((yield* kinds(ROLLOUT_A, "once")).filter((x) => x.startsWith("ProbeResult"))).toHaveLength(1)
    }).pipe(Effect.provide(layer(s)))
  })

  it.scoped("reports FailureFirst on every pass-to-fail edge", () => {
    const s = setup()
    declare(s, { web: fileProbe(s, "up") })
    return Effect.gen(function*() {
      const step = (up: boolean, results: number) =>
        Effect.gen(function*() {
          s.flag("up", up)
          if (results > 1) yield* TestClock.adjust("10 seconds")
          yield* settle(Effect.map(countOf(ROLLOUT_A, "ProbeResult"), (n) => n === results))
        })
      s.flag("up", true)
      yield* soak(ROLLOUT_A)
      yield* settle(Effect.map(countOf(ROLLOUT_A, "ProbeResult"), (n) => n === 1))
      yield* step(false, 2)
      yield* step(false, 3)
      yield* step(true, 4)
      yield* step(false, 5)
      expect((yield* kinds(ROLLOUT_A)).filter((k) => k.startsWith("Probe") && k !== "ProbeTopologyDeclared"))
        .toStrictEqual([
          "ProbeObservedFirst",
          "ProbeResult:pass",
          "ProbeFailureFirst",
          "ProbeResult:fail",
          "ProbeResult:fail",
          "ProbeResult:pass",
          "ProbeFailureFirst",
          "ProbeResult:fail"
        ])
    }).pipe(Effect.provide(layer(s)))
  })

  it.scoped("a reset interrupts every ticker of the previous rollout", () => {
    const s = setup()
    s.flag("up", true)
    declare(s, { web: fileProbe(s, "up") })
    return Effect.gen(function*() {
      yield* soak(ROLLOUT_A)
      yield* settle(Effect.map(countOf(ROLLOUT_A, "ProbeResult"), (n) => n === 1))
      yield* soak(ROLLOUT_B)
      yield* settle(Effect.map(countOf(ROLLOUT_B, "ProbeResult"), (n) => n === 1))
      const before = yield* countOf(ROLLOUT_A, "ProbeResult")
      for (let i = 0; i < 5; i++) yield* TestClock.adjust("10 seconds")
      yield* settle(Effect.map(countOf(ROLLOUT_B, "ProbeResult"), (n) => n >= 6))
      expect(yield* countOf(ROLLOUT_A, "ProbeResult")).toBe(before)
    }).pipe(Effect.provide(layer(s)))
  })

  it.scoped("tickers stop once the rollout is no longer soaking", () => {
    const s = setup()
    s.flag("up", true)
    declare(s, { web: fileProbe(s, "up") })
    return Effect.gen(function*() {
      yield* soak(ROLLOUT_A, 20)
      yield* settle(Effect.map(countOf(ROLLOUT_A, "ProbeResult"), (n) => n === 1))
      const reducer = yield* Reducer
      yield* TestClock.adjust("20 seconds")
      yield* reducer.submit(ReducerInput.AdvanceTick())
      yield* settle(Effect.map(countOf(ROLLOUT_A, "Converged"), (n) => n === 1))
      const after = yield* countOf(ROLLOUT_A, "ProbeResult")
      yield* TestClock.adjust("60 seconds")
      yield* TestServices.provideLive(Effect.sleep(300))
      expect(yield* countOf(ROLLOUT_A, "ProbeResult")).toBeLessThanOrEqual(after + 1)
    }).pipe(Effect.provide(layer(s)))
  })

  it.scoped("NIXFLEET_AGENT_PROBE_TEST_MODE runs no probe and declares nothing", () => {
    const s = setup()
    declare(s, { web: fileProbe(s, "up") })
    return Effect.gen(function*() {
      yield* soak(ROLLOUT_A)
      yield* TestServices.provideLive(Effect.sleep(300))
      expect((yield* kinds(ROLLOUT_A)).filter((k) => k.startsWith("Probe"))).toStrictEqual([])
    }).pipe(Effect.provide(layer(s, [["NIXFLEET_AGENT_PROBE_TEST_MODE", "1"]])))
  })

  it.scoped("an invalid health-checks file is counted and declares no probe (the old declaration is not kept)", () => {
    const s = setup()
    s.flag("up", true)
    declare(s, { web: fileProbe(s, "up") })
    return Effect.gen(function*() {
      yield* soak(ROLLOUT_A)
      yield* settle(Effect.map(countOf(ROLLOUT_A, "ProbeResult"), (n) => n === 1))
      Fs.writeFileSync(s.healthChecks, "{ not json")
      const before = (yield* Metric.value(invalidHealthChecks)).count
      yield* soak(ROLLOUT_B)
      yield* settle(Effect.map(countOf(ROLLOUT_B, "ProbeTopologyDeclared"), (n) => n === 1))
      expect((yield* Metric.value(invalidHealthChecks)).count).toBe(before + 1)
      const topology = (yield* rows).filter((r) => r.rolloutId === ROLLOUT_B && r.kind === "ProbeTopologyDeclared")
      expect(JSON.parse(topology[0]!.body).probes).toStrictEqual([])
      for (let i = 0; i < 3; i++) yield* TestClock.adjust("10 seconds")
      yield* TestServices.provideLive(Effect.sleep(300))
      expect(yield* countOf(ROLLOUT_B, "ProbeResult")).toBe(0)
    }).pipe(Effect.provide(layer(s)))
  })
})
