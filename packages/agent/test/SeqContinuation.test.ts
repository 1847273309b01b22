/**
 * Sequence numbers continue above every seq already in the outbox for a rollout (imported
 * from the reference agent's queue, or left by a previous run), so that no new event is
 * shadowed by a queued one with the same `(rolloutId, seq)`: the reducer over an in-memory
 * outbox, then a takeover of the reference agent's queue mid-rollout against the dev
 * control plane.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { start } from "@nixfleet/dev-control-plane"
import type { HostRolloutSnapshot } from "@nixfleet/proto"
import { Context, Effect, Metric, Ref, SubscriptionRef } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Outbox } from "../src/outbox/Outbox.js"
import { droppedEvents, Reducer } from "../src/runtime/Reducer.js"
import { ReducerInput } from "../src/runtime/ReducerInput.js"
import { entry, openOutbox, ROLLOUT_A, ROLLOUT_B, tempStateDir } from "./fixtures/outbox/support.js"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { manifestSet, PRIOR, reducerLayer, ROLLOUT, TARGET } from "./support/fixtures.js"
import { MemoryOutboxHandle } from "./support/memoryOutbox.js"
import { queued, writeUpstreamQueue } from "./support/upstreamQueue.js"

const HOST = "web-01"
const secs = (n: number) => new Date(n * 1000)

const submit = (input: ReducerInput) => Effect.flatMap(Reducer, (reducer) => reducer.submit(input))

const activate = submit(ReducerInput.HostEvent({
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

/** What the reference agent left queued: its acknowledgement and activation start, never delivered. */
const imported = (seqs: ReadonlyArray<number>) =>
  Effect.flatMap(Outbox, (outbox) =>
    Effect.forEach(seqs, (seq) =>
      outbox.enqueue({
        rolloutId: ROLLOUT,
        seq,
        hostname: HOST,
        durable: true,
        event: { _tag: "DispatchAck", currentClosureAtDispatch: TARGET, receivedAt: secs(0), seq }
      }), { discard: true }))

const snapshot: HostRolloutSnapshot = {
  rolloutId: ROLLOUT,
  hostname: HOST,
  channel: "stable",
  state: "Pending",
  targetClosure: TARGET,
  currentClosureAtDispatch: null,
  currentClosure: null,
  dispatchedAt: secs(0),
  dispatchAckedAt: null,
  activationStartedAt: null,
  activationCompletedAt: null,
  soakDueAt: secs(600),
  lastEventSeq: 0
}

const queuedKeys = Effect.flatMap(
  MemoryOutboxHandle,
  (outbox) => Effect.map(Ref.get(outbox.rows), (rows) => rows.map((row) => `${row.kind}#${row.seq}`))
)
const lastEventSeq = Effect.flatMap(
  Reducer,
  (reducer) => Effect.map(SubscriptionRef.get(reducer.records), (records) => records.get(ROLLOUT)?.lastEventSeq)
)
const seqTaken = Effect.map(
  Metric.value(Metric.tagged(droppedEvents, "reason", "seq_taken")),
  (state) => state.count
)

describe("seq continuation", () => {
  it.scoped("a rehydrated record numbers above the rows already queued for its rollout", () =>
    Effect.gen(function*() {
      const takenBefore = yield* seqTaken
      yield* submit(ReducerInput.ManifestSetUpdated({ set: manifestSet() }))
      yield* imported([1, 2])
      // The control plane has seen none of them: its snapshot says seq 0.
      yield* submit(ReducerInput.BootstrapHost({ snapshot }))
      expect(yield* lastEventSeq).toBe(2)
      yield* activate
      expect(yield* queuedKeys).toStrictEqual(["DispatchAck#1", "DispatchAck#2", "DispatchAck#3"])
      expect(yield* lastEventSeq).toBe(3)
      expect(yield* seqTaken).toBe(takenBefore)
    }).pipe(Effect.provide(reducerLayer())))

  it.scoped("a record created by a dispatch numbers above the rows already queued, dead letters included", () =>
    Effect.gen(function*() {
      yield* submit(ReducerInput.ManifestSetUpdated({ set: manifestSet() }))
      yield* imported([4, 5])
      const handle = yield* MemoryOutboxHandle
      // seq 5 was refused for good: a new event must not reuse its seq either.
      const [, five] = yield* Ref.get(handle.rows)
      yield* Effect.flatMap(Outbox, (outbox) => Effect.orDie(outbox.deadLetter(five!.id, 400, "HTTP 400")))
      yield* activate
      expect(yield* queuedKeys).toStrictEqual(["DispatchAck#4", "DispatchAck#6"])
    }).pipe(Effect.provide(reducerLayer())))

  it.scoped("should a seq be taken all the same, the event is an ERROR and counted, never silently dropped", () =>
    Effect.gen(function*() {
      yield* submit(ReducerInput.ManifestSetUpdated({ set: manifestSet() }))
      yield* activate
      // A row the reducer could not know of (none can appear behind its back today).
      yield* imported([2])
      const before = yield* seqTaken
      yield* submit(ReducerInput.HostEvent({
        rolloutId: ROLLOUT,
        event: { _tag: "LocalActivationStarted", startedAt: secs(1), switchMethod: "systemd-run", seq: 0 }
      }))
      expect(yield* seqTaken).toBe(before + 1)
      expect(yield* queuedKeys).toStrictEqual(["DispatchAck#1", "DispatchAck#2"])
    }).pipe(Effect.provide(reducerLayer())))

  it.scoped("the SQLite outbox's highest seq of a rollout counts its pending rows and its dead letters", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      expect(yield* outbox.maxSeq(ROLLOUT_A)).toBe(0)
      for (const seq of [3, 1, 7]) yield* outbox.enqueue(entry(ROLLOUT_A, seq))
      yield* outbox.enqueue(entry(ROLLOUT_B, 40))
      expect(yield* outbox.maxSeq(ROLLOUT_A)).toBe(7)
      const rows = yield* outbox.head(10)
      yield* outbox.deadLetter(rows.find((row) => row.seq === 7)!.id, 422, "HTTP 422")
      yield* outbox.acknowledgeMany(rows.filter((row) => row.rolloutId === ROLLOUT_A && row.seq !== 7).map((r) => r.id))
      expect(yield* outbox.maxSeq(ROLLOUT_A)).toBe(7)
      expect(yield* outbox.maxSeq(ROLLOUT_B)).toBe(40)
      expect(yield* outbox.maxSeq("other@0")).toBe(0)
    }).pipe(Effect.provide(NodeContext.layer)))
})

interface Envelope {
  readonly rolloutId: string
  readonly event: { readonly kind: string; readonly seq: number } & Record<string, unknown>
}

describe("taking over the reference agent's queue mid-rollout", () => {
  it.scopedLive(
    "every event, imported or new, reaches the control plane once",
    () =>
      Effect.gen(function*() {
        const cp = yield* start()
        const dir = yield* stateDirectory
        Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        // The reference agent acknowledged the dispatch and started switching, then was
        // replaced before it delivered either event; the control plane offers the dispatch
        // to the new agent.
        const upstream = [
          queued(HOST, rolloutId, 1, "2026-05-17T11:50:00Z", {
            kind: "DispatchAck",
            currentClosureAtDispatch: TARGET,
            receivedAt: "2026-05-17T11:50:00Z"
          }),
          queued(HOST, rolloutId, 2, "2026-05-17T11:50:01.250Z", {
            kind: "ActivationStarted",
            startedAt: "2026-05-17T11:50:01.250Z",
            switchMethod: "systemd-run"
          })
        ]
        writeUpstreamQueue(dir, upstream)

        const agent = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        yield* eventually(
          "Converged",
          Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state === "Converged"),
          60_000
        )
        const outbox = Context.get(agent.context, Outbox)
        yield* eventually("the outbox to drain", Effect.map(Effect.orDie(outbox.pendingCount()), (n) => n === 0))
        const accepted = yield* cp.events
        const sent = accepted.map((a) => a.envelope as Envelope)
        expect(accepted.map((a) => a.duplicate), "no event reused a seq").toStrictEqual(sent.map(() => false))
        expect(sent.map((e) => e.rolloutId)).toStrictEqual(sent.map(() => rolloutId))
        // Once per seq, in order.
        expect(sent.map((e) => e.event.seq)).toStrictEqual(sent.map((_, i) => i + 1))
        // The reference agent's events, exactly as it queued them…
        for (const event of upstream) {
          expect(sent.filter((e) => e.event.seq === event.seq).map((e) => e.event)).toStrictEqual([event.payload])
        }
        // …and every one of the new agent's own, numbered after them.
        const own = sent.slice(upstream.length).map((e) => e.event.kind)
        expect(own).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "ProbeTopologyDeclared",
          "Converged"
        ])
        expect(sent[upstream.length]?.event).toMatchObject({ kind: "DispatchAck", currentClosureAtDispatch: PRIOR })
        const lines = yield* agent.logs
        expect(lines.filter((line) => line.includes("already taken"))).toStrictEqual([])
        expect(Fs.readdirSync(Path.join(dir, "outbound-queue"))).toStrictEqual([])
      }),
    120_000
  )
})
