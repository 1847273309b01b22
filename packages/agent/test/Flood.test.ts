/**
 * No cycle of blocking offers: with every queue at capacity 1 to 4, thousands of inputs
 * from concurrent producers (dispatches, probe chatter, ticks, snapshots) and the
 * activation worker's own reports all get through. A deadlock shows up as the timeout.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Logger, LogLevel, Stream } from "effect"
import { ActivationPipeline } from "../src/pipeline/ActivationPipeline.js"
import * as ActivationWorker from "../src/runtime/ActivationWorker.js"
import { Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import { manifestSet, PRIOR, reducerLayer, TARGET } from "./support/fixtures.js"

const ROLLOUTS = 150
const PROBE_EVENTS = 12
const TICKS = 400

const flood = (capacity: number) =>
  Effect.gen(function*() {
    const reducer = yield* Reducer
    yield* reducer.offer(ReducerInput.ManifestSetUpdated({ set: manifestSet("rollback-and-halt") }))
    const at = new Date("2026-05-17T12:00:00Z")
    // No rollout may finish: the reducer evicts finished ones, and the check below counts records.
    const farAway = new Date("2126-05-17T12:00:00Z")
    const producers = Array.from({ length: ROLLOUTS }, (_, i) =>
      Effect.gen(function*() {
        const rolloutId = `stable@${i.toString(16).padStart(6, "0")}`
        yield* reducer.offer(ReducerInput.HostEvent({
          rolloutId,
          event: {
            _tag: "LocalActivate",
            currentClosureAtDispatch: PRIOR,
            targetClosure: TARGET,
            receivedAt: at,
            soakDueAt: farAway,
            seq: 0
          }
        }))
        for (let n = 0; n < PROBE_EVENTS; n++) {
          yield* reducer.offer(ReducerInput.HostEvent({
            rolloutId,
            event: {
              _tag: "LocalProbeResult",
              probeName: "p",
              mode: "enforce",
              status: n % 3 === 0 ? "fail" : "pass",
              observedAt: at,
              failureReason: null,
              subResults: null,
              seq: 0
            }
          }))
        }
        yield* reducer.offer(ReducerInput.BootstrapHost({
          snapshot: {
            rolloutId,
            hostname: "web-01",
            channel: "stable",
            state: "Activating",
            targetClosure: TARGET,
            currentClosureAtDispatch: PRIOR,
            currentClosure: null,
            dispatchedAt: at,
            dispatchAckedAt: at,
            activationStartedAt: null,
            activationCompletedAt: null,
            soakDueAt: farAway,
            lastEventSeq: 1
          }
        }))
      }))
    const ticks = Effect.forEach(Array.from({ length: TICKS }), () => reducer.offer(ReducerInput.AdvanceTick()), {
      discard: true
    })
    const all = yield* Effect.fork(Effect.all([...producers, ticks], { concurrency: "unbounded", discard: true }))
    yield* Fiber.join(all)
    // Every rollout's switch ran: the worker got every intent and its reports got back in.
    yield* reducer.records.changes.pipe(
      Stream.filter((records) =>
        records.size === ROLLOUTS &&
        [...records.values()].every((r) => r.activationStartedAt !== null || r.state !== "Activating")
      ),
      Stream.runHead
    )
    const records = yield* reducer.records.get
    expect(records.size).toBe(ROLLOUTS)
    expect([...records.values()].filter((r) => r.state === "Pending")).toStrictEqual([])
  }).pipe(
    Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error(`deadlock at capacity ${capacity}`) }),
    Effect.provide(
      ActivationWorker.layer.pipe(
        Layer.provideMerge(
          reducerLayer({ sustainedFailureSecs: 1e9 }, { reducerInput: capacity, activationIntents: capacity })
        ),
        Layer.provide(Layer.merge(ActivationPipeline.scripted(), NodeContext.layer))
      )
    ),
    Effect.provide(Logger.minimumLogLevel(LogLevel.None))
  )

describe("flood", () => {
  for (const capacity of [1, 2, 3, 4]) {
    it.scopedLive(`nothing deadlocks with queues of capacity ${capacity}`, () => flood(capacity), 90_000)
  }
})
