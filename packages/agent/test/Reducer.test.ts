import { describe, expect, it } from "@effect/vitest"
import type { HostRolloutSnapshot } from "@nixfleet/proto"
import type { LocalEvent } from "@nixfleet/state-machine"
import { Chunk, Effect, Metric, Queue, Ref, SubscriptionRef, TestClock } from "effect"
import { droppedEvents, lostEvents, Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import { RuntimeChannels } from "../src/runtime/RuntimeChannels.js"
import { manifestSet, PRIOR, reducerLayer, ROLLOUT, TARGET } from "./support/fixtures.js"
import { MemoryOutboxHandle } from "./support/memoryOutbox.js"

const nowDate = Effect.map(TestClock.currentTimeMillis, (ms) => new Date(ms))
const secs = (n: number) => new Date(n * 1000)

const submit = (input: ReducerInput) => Effect.flatMap(Reducer, (reducer) => reducer.submit(input))
const send = (event: LocalEvent) => submit(ReducerInput.HostEvent({ rolloutId: ROLLOUT, event }))
const tick = submit(ReducerInput.AdvanceTick())
const manifests = (policy: "halt" | "rollback-and-halt" = "rollback-and-halt") =>
  submit(ReducerInput.ManifestSetUpdated({ set: manifestSet(policy) }))

const activate = (soakDueAt: Date = secs(600)) =>
  Effect.flatMap(nowDate, (at) =>
    send({
      _tag: "LocalActivate",
      currentClosureAtDispatch: PRIOR,
      targetClosure: TARGET,
      receivedAt: at,
      soakDueAt,
      seq: 0
    }))

const complete = Effect.flatMap(
  nowDate,
  (at) =>
    send({ _tag: "LocalActivationCompleted", observedCurrentClosure: TARGET, exitCode: 0, completedAt: at, seq: 0 })
)

const probe = (name: string, status: "pass" | "fail", mode: "enforce" | "observe" = "enforce") =>
  Effect.flatMap(nowDate, (at) =>
    send({
      _tag: "LocalProbeResult",
      probeName: name,
      mode,
      status,
      observedAt: at,
      failureReason: status === "fail" ? "down" : null,
      subResults: null,
      seq: 0
    }))

const record = Effect.flatMap(
  Reducer,
  (reducer) => Effect.map(SubscriptionRef.get(reducer.records), (records) => records.get(ROLLOUT))
)

const queued = Effect.flatMap(
  MemoryOutboxHandle,
  (outbox) => Effect.map(Ref.get(outbox.rows), (rows) => rows.map((row) => `${row.kind}#${row.seq}`))
)

const queuedBody = (kind: string) =>
  Effect.flatMap(
    MemoryOutboxHandle,
    (outbox) =>
      Effect.map(Ref.get(outbox.rows), (rows) => JSON.parse(rows.find((row) => row.kind === kind)?.body ?? "null"))
  )

const intents = Effect.flatMap(
  RuntimeChannels,
  (channels) => Effect.map(Queue.takeAll(channels.activationIntents), Chunk.toArray)
)
const resets = Effect.flatMap(
  RuntimeChannels,
  (channels) => Effect.map(Queue.takeAll(channels.probeResets), Chunk.toArray)
)

const metricCount = (metric: typeof droppedEvents) => Effect.map(Metric.value(metric), (state) => state.count)
const dropped = (reason: string) => metricCount(Metric.tagged(droppedEvents, "reason", reason))

const soaking = Effect.gen(function*() {
  yield* manifests()
  yield* activate()
  yield* complete
  expect((yield* record)?.state).toBe("Soaking")
})

const snapshot = (fields: Partial<HostRolloutSnapshot> = {}): HostRolloutSnapshot => ({
  rolloutId: ROLLOUT,
  hostname: "web-01",
  channel: "stable",
  state: "Soaking",
  targetClosure: TARGET,
  currentClosureAtDispatch: PRIOR,
  currentClosure: TARGET,
  dispatchedAt: secs(0),
  dispatchAckedAt: secs(0),
  activationStartedAt: secs(0),
  activationCompletedAt: secs(1),
  soakDueAt: secs(600),
  lastEventSeq: 3,
  ...fields
})
const rehydrate = (fields: Partial<HostRolloutSnapshot> = {}) =>
  submit(ReducerInput.BootstrapHost({ snapshot: snapshot(fields) }))

describe("Reducer", () => {
  describe("host events", () => {
    it.scoped("LocalActivate bootstraps the record, acknowledges with seq 1 and fires the switch", () =>
      Effect.gen(function*() {
        yield* manifests()
        yield* activate()
        const r = yield* record
        expect(r).toMatchObject({
          state: "Activating",
          hostname: "web-01",
          channel: "stable",
          targetClosure: TARGET,
          currentClosureAtDispatch: PRIOR,
          soakDueAt: secs(600),
          lastEventSeq: 1
        })
        expect(yield* queued).toStrictEqual(["DispatchAck#1"])
        expect(yield* queuedBody("DispatchAck")).toStrictEqual({
          kind: "DispatchAck",
          currentClosureAtDispatch: PRIOR,
          receivedAt: "1970-01-01T00:00:00Z",
          seq: 1
        })
        expect(yield* intents).toStrictEqual([{ rolloutId: ROLLOUT, closure: TARGET, rollback: false }])
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("every Local event gets the next seq, LocalActivationDeferred included", () =>
      Effect.gen(function*() {
        yield* manifests()
        yield* activate()
        const at = yield* nowDate
        yield* send({ _tag: "LocalActivationStarted", startedAt: at, switchMethod: "switch-to-configuration", seq: 0 })
        yield* send({ _tag: "LocalActivationDeferred", component: "systemd", deferredAt: at, seq: 0 })
        expect((yield* record)?.state).toBe("Deferred")
        expect((yield* record)?.lastEventSeq).toBe(3)
        expect(yield* queued).toStrictEqual(["DispatchAck#1", "ActivationStarted#2", "ActivationDeferred#3"])
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("a dispatch that arrives before the rollout policy is held, then applied", () =>
      Effect.gen(function*() {
        yield* activate()
        expect(yield* record).toBeUndefined()
        expect(yield* queued).toStrictEqual([])
        yield* manifests()
        expect((yield* record)?.state).toBe("Activating")
        expect(yield* queued).toStrictEqual(["DispatchAck#1"])
        expect(yield* intents).toHaveLength(1)
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("events of an unknown rollout are dropped and counted", () =>
      Effect.gen(function*() {
        yield* manifests()
        const before = yield* dropped("unknown_rollout")
        yield* send({ _tag: "LocalActivationStarted", startedAt: secs(0), switchMethod: "x", seq: 0 })
        expect(yield* record).toBeUndefined()
        expect(yield* dropped("unknown_rollout")).toBe(before + 1)
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("an illegal transition is dropped and counted; the reducer goes on", () =>
      Effect.gen(function*() {
        yield* manifests()
        yield* activate()
        const before = yield* dropped("IllegalForState")
        yield* send({ _tag: "LocalConvergedReached", convergedAt: secs(0), currentClosure: TARGET, seq: 0 })
        expect(yield* dropped("IllegalForState")).toBe(before + 1)
        expect((yield* record)?.lastEventSeq).toBe(1)
        yield* complete
        expect((yield* record)?.state).toBe("Soaking")
        expect((yield* record)?.lastEventSeq).toBe(2)
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("a failed activation under rollback-and-halt queues a rollback to the closure that ran before", () =>
      Effect.gen(function*() {
        yield* manifests("rollback-and-halt")
        yield* activate()
        yield* intents
        yield* send({ _tag: "LocalActivationFailed", exitCode: -2, stderrTail: "signature", failedAt: secs(0), seq: 0 })
        expect((yield* record)?.state).toBe("Failed")
        expect(yield* intents).toStrictEqual([{ rolloutId: ROLLOUT, closure: PRIOR, rollback: true }])
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("intents beyond the queue's capacity wait in the reducer instead of blocking it", () =>
      Effect.gen(function*() {
        yield* manifests()
        for (const ref of ["a1", "a2", "a3"]) {
          yield* submit(ReducerInput.HostEvent({
            rolloutId: `stable@${ref}`,
            event: {
              _tag: "LocalActivate",
              currentClosureAtDispatch: PRIOR,
              targetClosure: TARGET,
              receivedAt: secs(0),
              soakDueAt: secs(60),
              seq: 0
            }
          }))
        }
        const channels = yield* RuntimeChannels
        expect(yield* Queue.size(channels.activationIntents)).toBe(1)
        expect((yield* Queue.take(channels.activationIntents)).rolloutId).toBe("stable@a1")
        yield* tick
        expect((yield* Queue.take(channels.activationIntents)).rolloutId).toBe("stable@a2")
        yield* tick
        expect((yield* Queue.take(channels.activationIntents)).rolloutId).toBe("stable@a3")
      }).pipe(Effect.provide(reducerLayer({}, { reducerInput: 4, activationIntents: 1 }))))

    it.scoped("a DispatchAck the outbox cannot store holds the switch until it is stored; nothing is lost", () =>
      Effect.gen(function*() {
        yield* manifests()
        const outbox = yield* MemoryOutboxHandle
        const reducer = yield* Reducer
        yield* Ref.set(outbox.failEnqueue, "disk full")
        const before = yield* metricCount(lostEvents)
        yield* activate()
        // Not activated: no intent, nothing in the outbox, the ack and the switch held in order.
        expect(yield* intents).toStrictEqual([])
        expect(yield* queued).toStrictEqual([])
        expect(yield* Ref.get(reducer.diskBacklog)).toMatchObject({ events: 1, activations: 1 })
        // Still refused at the first retry: still held, still no switch.
        yield* TestClock.adjust("1 second")
        yield* tick
        expect(yield* intents).toStrictEqual([])
        // The disk accepts writes again: the next retry stores the ack, then releases the switch.
        yield* Ref.set(outbox.failEnqueue, null)
        yield* TestClock.adjust("2 seconds")
        yield* tick
        expect(yield* queued).toStrictEqual(["DispatchAck#1"])
        expect((yield* intents).map((intent) => intent.closure)).toStrictEqual([TARGET])
        expect(yield* Ref.get(reducer.diskBacklog)).toMatchObject({ events: 0, activations: 0 })
        yield* complete
        expect(yield* queued).toStrictEqual(["DispatchAck#1", "ActivationCompleted#2"])
        expect(yield* metricCount(lostEvents)).toBe(before)
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("events refused by the disk keep their seq and order, and later ones wait behind them", () =>
      Effect.gen(function*() {
        yield* manifests()
        yield* activate()
        yield* intents
        const outbox = yield* MemoryOutboxHandle
        yield* Ref.set(outbox.failEnqueue, "disk full")
        yield* complete
        yield* probe("p", "pass")
        expect(yield* queued).toStrictEqual(["DispatchAck#1"])
        // A write arriving while the disk is back but before the retry is due still queues behind.
        yield* Ref.set(outbox.failEnqueue, null)
        yield* probe("p", "fail")
        expect(yield* queued).toStrictEqual(["DispatchAck#1"])
        yield* TestClock.adjust("1 second")
        yield* tick
        expect(yield* queued).toStrictEqual([
          "DispatchAck#1",
          "ActivationCompleted#2",
          "ProbeResult#3",
          "ProbeResult#4"
        ])
      }).pipe(Effect.provide(reducerLayer())))
  })

  describe("advance tick", () => {
    it.scoped("an enforce probe failing for the configured window fails the rollout and rolls back", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* intents
        yield* probe("p", "fail")
        yield* TestClock.adjust("119 seconds")
        yield* tick
        expect((yield* record)?.state).toBe("Soaking")
        yield* TestClock.adjust("1 second")
        yield* tick
        expect((yield* record)?.state).toBe("Failed")
        expect((yield* record)?.policyApplied).toBe("rollback-and-halt")
        expect(yield* queuedBody("Failed")).toMatchObject({
          kind: "Failed",
          sustainedDurationSecs: 120,
          failingProbes: ["p"],
          policyApplied: "rollback-and-halt"
        })
        expect(yield* intents).toStrictEqual([{ rolloutId: ROLLOUT, closure: PRIOR, rollback: true }])
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("the threshold comes from the configuration", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* probe("p", "fail")
        yield* TestClock.adjust("29 seconds")
        yield* tick
        expect((yield* record)?.state).toBe("Soaking")
        yield* TestClock.adjust("1 second")
        yield* tick
        expect((yield* record)?.state).toBe("Failed")
      }).pipe(Effect.provide(reducerLayer({ sustainedFailureSecs: 30 }))))

    it.scoped("observe-mode failures never fail the rollout", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* probe("evidence", "fail", "observe")
        yield* TestClock.adjust("300 seconds")
        yield* tick
        expect((yield* record)?.state).not.toBe("Failed")
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("a probe that recovers starts a fresh window when it fails again", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* probe("p", "fail")
        yield* TestClock.adjust("60 seconds")
        yield* probe("p", "pass")
        yield* TestClock.adjust("40 seconds")
        yield* probe("p", "fail")
        yield* TestClock.adjust("100 seconds")
        yield* tick
        expect((yield* record)?.state).toBe("Soaking")
        yield* TestClock.adjust("20 seconds")
        yield* tick
        expect((yield* record)?.state).toBe("Failed")
        expect(yield* queuedBody("Failed")).toMatchObject({ sustainedDurationSecs: 120 })
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("the soak deadline, the target closure and passing enforce probes converge the rollout", () =>
      Effect.gen(function*() {
        yield* manifests()
        yield* activate(secs(600))
        yield* complete
        yield* probe("p", "fail")
        yield* TestClock.adjust("60 seconds")
        yield* probe("p", "pass")
        yield* TestClock.adjust("530 seconds")
        yield* tick
        expect((yield* record)?.state).toBe("Soaking")
        yield* TestClock.adjust("10 seconds")
        yield* tick
        expect((yield* record)?.state).toBe("Converged")
        expect(yield* queuedBody("Converged")).toStrictEqual({
          kind: "Converged",
          convergedAt: "1970-01-01T00:10:00Z",
          currentClosure: TARGET,
          seq: 5
        })
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("a failing enforce probe holds convergence", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* probe("p", "fail")
        yield* TestClock.adjust("601 seconds")
        yield* tick
        expect((yield* record)?.state).toBe("Soaking")
        yield* probe("p", "pass")
        yield* tick
        expect((yield* record)?.state).toBe("Converged")
      }).pipe(Effect.provide(reducerLayer({ sustainedFailureSecs: 1000 }))))
  })

  describe("snapshots", () => {
    it.scoped("a cold snapshot creates the record and re-primes the probes", () =>
      Effect.gen(function*() {
        yield* rehydrate({ lastEventSeq: 7 })
        expect(yield* record).toMatchObject({
          state: "Soaking",
          lastEventSeq: 7,
          targetClosure: TARGET,
          hostname: "web-01"
        })
        expect(yield* resets).toStrictEqual([{ rolloutId: ROLLOUT }])
        yield* manifests()
        yield* probe("p", "pass")
        expect((yield* record)?.lastEventSeq).toBe(8)
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("a Pending snapshot needs no probe reset", () =>
      Effect.gen(function*() {
        yield* rehydrate({ state: "Pending", lastEventSeq: 0 })
        expect((yield* record)?.state).toBe("Pending")
        expect(yield* resets).toStrictEqual([])
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("a snapshot never moves the seq counter backwards", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* probe("p", "pass")
        yield* probe("p", "pass")
        expect((yield* record)?.lastEventSeq).toBe(4)
        yield* rehydrate({ lastEventSeq: 2 })
        expect((yield* record)?.lastEventSeq).toBe(4)
        yield* probe("p", "pass")
        expect((yield* record)?.lastEventSeq).toBe(5)
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("a lagging snapshot does not regress the state while our events are still queued", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* rehydrate({ state: "Activating", lastEventSeq: 1 })
        expect((yield* record)?.state).toBe("Soaking")
        expect((yield* record)?.lastEventSeq).toBe(2)
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("once the outbox is empty the control plane's state wins", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* Effect.flatMap(MemoryOutboxHandle, (outbox) => Ref.set(outbox.rows, []))
        yield* resets
        yield* rehydrate({ state: "Activating", lastEventSeq: 1 })
        expect((yield* record)?.state).toBe("Activating")
        expect((yield* record)?.lastEventSeq).toBe(2)
        expect(yield* resets).toStrictEqual([{ rolloutId: ROLLOUT }])
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("probes are reset only when the snapshot changes something", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* resets
        yield* rehydrate({ state: "Soaking" })
        expect(yield* resets).toStrictEqual([])
        yield* rehydrate({ state: "Converged", lastEventSeq: 9 })
        expect((yield* record)?.state).toBe("Converged")
        expect(yield* resets).toStrictEqual([{ rolloutId: ROLLOUT }])
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("the sustained-failure timer survives a warm rehydration", () =>
      Effect.gen(function*() {
        yield* soaking
        yield* probe("p", "fail")
        for (let minute = 0; minute < 2; minute++) {
          yield* TestClock.adjust("60 seconds")
          yield* rehydrate({ state: "Soaking", lastEventSeq: 2 })
          yield* tick
        }
        expect((yield* record)?.state).toBe("Failed")
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("a snapshot for another host is refused", () =>
      Effect.gen(function*() {
        const before = yield* dropped("foreign_snapshot")
        yield* rehydrate({ hostname: "web-02" })
        expect(yield* record).toBeUndefined()
        expect(yield* dropped("foreign_snapshot")).toBe(before + 1)
      }).pipe(Effect.provide(reducerLayer())))

    it.scoped("an unknown rollback target from a synthesised acknowledgement fires no rollback", () =>
      Effect.gen(function*() {
        yield* manifests("rollback-and-halt")
        yield* rehydrate({ state: "Soaking", currentClosureAtDispatch: "" })
        expect((yield* record)?.currentClosureAtDispatch).toBeNull()
        yield* probe("p", "fail")
        yield* TestClock.adjust("120 seconds")
        yield* tick
        expect((yield* record)?.state).toBe("Failed")
        expect(yield* intents).toStrictEqual([])
      }).pipe(Effect.provide(reducerLayer())))
  })
})
