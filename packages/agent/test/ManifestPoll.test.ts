/**
 * The manifest poll's account of a refused fleet.resolved, poll after poll (TestClock): one
 * ERROR line per kind of refusal however many polls repeat it, the refusal on the status
 * board and in the metrics, whether rollout policies are still cached, and a clean slate
 * once a fleet is accepted. An unreachable control plane is no refusal.
 */
import { describe, expect, it } from "@effect/vitest"
import type { HostRolloutState } from "@nixfleet/state-machine"
import { Context, Effect, Layer, Metric, Ref, SubscriptionRef, TestClock } from "effect"
import { ManifestCache, ManifestError, type VerifiedFleet } from "../src/controlplane/ManifestCache.js"
import { fleetRefusals, fleetRefused, MANIFEST_POLL_INTERVAL } from "../src/controlplane/ManifestPoll.js"
import * as ManifestPoll from "../src/controlplane/ManifestPoll.js"
import { type DiskBacklog, Reducer } from "../src/runtime/Reducer.js"
import type { ReducerInput } from "../src/runtime/ReducerInput.js"
import { Shutdown } from "../src/runtime/Shutdown.js"
import { StatusBoard } from "../src/runtime/StatusBoard.js"
import { manifestSet } from "./support/fixtures.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"

const verified: VerifiedFleet = { fleet: manifestSet().fleet, hash: manifestSet().fleetHash }

const schemaError = new ManifestError({ reason: "schema", detail: "$.hosts[\"web-01\"]: missing field `system`" })
const staleAt = (now: string) =>
  new ManifestError({ reason: "verify", detail: `Stale: stale artifact: signedAt=2026-01-01T00:00:00Z, now=${now}` })

/** The poll over a scripted fleet answer and a reducer that records what it is offered. */
const harness = (first: Effect.Effect<VerifiedFleet, ManifestError>) =>
  Effect.gen(function*() {
    const answer = yield* Ref.make(first)
    const offered = yield* Ref.make<ReadonlyArray<ReducerInput>>([])
    const polls = yield* Ref.make(0)
    const cache = Layer.succeed(ManifestCache, {
      // Counted once the poll has had its answer.
      fleet: Effect.ensuring(Effect.flatten(Ref.get(answer)), Ref.update(polls, (n) => n + 1)),
      rollout: (rolloutId) => Effect.fail(new ManifestError({ reason: "missing", detail: rolloutId }))
    })
    const reducer = Layer.effect(
      Reducer,
      Effect.map(SubscriptionRef.make<ReadonlyMap<string, HostRolloutState>>(new Map()), (records) => ({
        offer: (input: ReducerInput) => Ref.update(offered, (all) => [...all, input]),
        submit: (input: ReducerInput) => Ref.update(offered, (all) => [...all, input]),
        records,
        diskBacklog: Ref.unsafeMake<DiskBacklog>({ events: 0, activations: 0, since: null, error: null })
      }))
    )
    const context = yield* Layer.build(
      ManifestPoll.layer.pipe(
        Layer.provideMerge(Layer.mergeAll(cache, reducer, Shutdown.layer, StatusBoard.layer, captureLogs))
      )
    )
    const board = Context.get(context, StatusBoard)
    const logs = Context.get(context, CapturedLogs).lines
    const refusalLines = Effect.map(logs, (lines) => lines.filter((line) => line.startsWith("ERROR")))
    /** Until `n` polls are done: the poll's fiber runs while this one yields. */
    const polled = (n: number) =>
      Effect.gen(function*() {
        for (let spins = 0; spins < 1000; spins++) {
          if ((yield* Ref.get(polls)) >= n) {
            // Then what follows the answer (metrics, board, logs, reducer) runs to its end.
            for (let rest = 0; rest < 100; rest++) yield* Effect.yieldNow()
            return
          }
          yield* Effect.yieldNow()
        }
        return yield* Effect.dieMessage(`poll ${n} did not run`)
      })
    /** The next poll, done. */
    const nextPoll = Effect.flatMap(
      Ref.get(polls),
      (n) => Effect.zipRight(TestClock.adjust(MANIFEST_POLL_INTERVAL), polled(n + 1))
    )
    yield* polled(1)
    return { answer, offered, board, logs, refusalLines, nextPoll }
  })

const refusals = (reason: string) =>
  Effect.map(Metric.value(Metric.tagged(fleetRefusals, "reason", reason)), (state) => state.count)
const gauge = Effect.map(Metric.value(fleetRefused), (state) => state.value)

describe("ManifestPoll and a refused fleet", () => {
  it.scoped("one ERROR line per kind of refusal, however many polls; status and metrics say it", () =>
    Effect.gen(function*() {
      const before = yield* refusals("schema")
      const poll = yield* harness(Effect.fail(schemaError))
      for (let i = 0; i < 3; i++) yield* poll.nextPoll
      expect(yield* refusals("schema")).toBe(before + 4)
      expect(yield* gauge).toBe(1)
      const lines = yield* poll.refusalLines
      expect(lines).toHaveLength(1)
      expect(lines[0]).toContain("fleet.resolved refused (schema): $.hosts[\"web-01\"]: missing field `system`")
      expect(lines[0]).toContain("no rollout policy: every dispatch is held")
      expect(yield* Ref.get(poll.board.fleetRefused)).toMatchObject({
        reason: "schema",
        detail: "$.hosts[\"web-01\"]: missing field `system`",
        policyCached: false
      })
      expect(yield* Ref.get(poll.offered)).toStrictEqual([])

      // A stale fleet's detail changes with every check: still one line for it.
      yield* Ref.set(poll.answer, Effect.fail(staleAt("2026-01-02T00:00:00Z")))
      yield* poll.nextPoll
      yield* Ref.set(poll.answer, Effect.fail(staleAt("2026-01-02T00:00:30Z")))
      yield* poll.nextPoll
      expect(yield* poll.refusalLines).toHaveLength(2)
      expect(yield* Ref.get(poll.board.fleetRefused)).toMatchObject({ reason: "verify" })
    }))

  it.scoped("accepted: policies reach the reducer, the refusal clears; refused again, the policies stay", () =>
    Effect.gen(function*() {
      const poll = yield* harness(Effect.fail(schemaError))
      expect(yield* Ref.get(poll.board.fleetRefused)).not.toBeNull()
      yield* Ref.set(poll.answer, Effect.succeed(verified))
      yield* poll.nextPoll
      expect(yield* Ref.get(poll.board.fleetRefused)).toBeNull()
      expect(yield* gauge).toBe(0)
      expect((yield* Ref.get(poll.offered)).map((input) => input._tag)).toStrictEqual(["ManifestSetUpdated"])
      expect((yield* poll.logs).some((line) => line.includes("fleet.resolved accepted again"))).toBe(true)

      yield* Ref.set(poll.answer, Effect.fail(schemaError))
      yield* poll.nextPoll
      expect(yield* Ref.get(poll.board.fleetRefused)).toMatchObject({ policyCached: true })
      const lines = yield* poll.refusalLines
      expect(lines).toHaveLength(2)
      expect(lines[1]).toContain("the rollout policies stay those of the fleet accepted before")
    }))

  it.scoped("an unreachable control plane is a warning, not a refusal", () =>
    Effect.gen(function*() {
      const poll = yield* harness(Effect.fail(new ManifestError({ reason: "unreachable", detail: "ECONNREFUSED" })))
      yield* poll.nextPoll
      expect(yield* Ref.get(poll.board.fleetRefused)).toBeNull()
      expect(yield* poll.refusalLines).toStrictEqual([])
      expect((yield* poll.logs).some((line) => line.startsWith("WARN") && line.includes("manifest poll failed"))).toBe(
        true
      )
    }))
})
