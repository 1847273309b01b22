/**
 * The testing kit itself: what it generates is valid, realistic, and reaches every end of
 * a rollout often enough to test it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Event, type HostRolloutState, HostRolloutState as RecordSchema, HostStates } from "@nixfleet/state-machine"
import * as Arbitraries from "@nixfleet/state-machine/testing"
import { Either, FastCheck as fc, Schema } from "effect"
import { readdirSync, readFileSync } from "node:fs"

const isEvent = Schema.is(Event)
const isRecord = Schema.is(RecordSchema)
const pool: ReadonlyArray<string> = Object.values(Arbitraries.Closures)
const closuresOf = (value: object): ReadonlyArray<unknown> =>
  Object.entries(value).filter(([key]) => /Closure(AtDispatch)?$|^revertedTo$/.test(key)).map(([, v]) => v)

/** Final states over 1000 rollouts of a fixed seed. */
const distribution = (options: Arbitraries.RolloutOptions) => {
  const runs = fc.sample(Arbitraries.rollout(options), { numRuns: 1000, seed: 20260516 })
  const finals: Record<string, number> = Object.fromEntries(HostStates.map((state) => [state, 0]))
  const refusals: Record<string, number> = { SeqRegression: 0, IllegalForState: 0, Invariant: 0 }
  const sides: Record<string, number> = { Local: 0, Remote: 0 }
  for (const run of runs) {
    finals[Arbitraries.finalRecord(run).state]! += 1
    sides[run.side]! += 1
    for (const { result } of Arbitraries.replay(run)) {
      if (Either.isLeft(result)) refusals[result.left._tag]! += 1
    }
  }
  return { finals, refusals, sides, events: runs.reduce((n, run) => n + run.events.length, 0) }
}

describe("Arbitraries", () => {
  it.prop("events are valid events with pool closures and small seqs", [Arbitraries.event()], ([event]) => {
    expect(isEvent(event)).toBe(true)
    expect(event.seq).toBeGreaterThanOrEqual(1)
    expect(event.seq).toBeLessThanOrEqual(40)
    for (const closure of closuresOf(event)) expect(pool).toContain(closure)
  })

  it.prop(
    "Local and Remote events come from their side",
    [Arbitraries.localEvent(), Arbitraries.remoteEvent()],
    ([local, remote]) => {
      expect(local._tag.startsWith("Local")).toBe(true)
      expect(remote._tag.startsWith("Remote")).toBe(true)
    }
  )

  for (const state of HostStates) {
    it.prop(`records in ${state} are valid records of that state`, [Arbitraries.recordIn(state)], ([record]) => {
      expect(isRecord(record)).toBe(true)
      expect(record.state).toBe(state)
      expect(record.targetClosure).toBe(Arbitraries.Closures.target)
      for (const closure of closuresOf(record)) if (closure !== null) expect(pool).toContain(closure)
      const stamps = [record.dispatchedAt, record.dispatchAckedAt, record.activationCompletedAt, record.revertedAt]
        .filter((at): at is Date => at !== null)
        .map((at) => at.getTime())
      expect(stamps).toStrictEqual([...stamps].sort((a, b) => a - b))
      if (state === "Pending") expect(record.lastEventSeq).toBe(0)
      if (state === "Converged") expect(record.currentClosure).toBe(record.targetClosure)
    })
  }

  it.prop(
    "a rollout starts Pending; seqs advance, by more than one only in a gap, and only a retransmit repeats one",
    [Arbitraries.rollout()],
    ([run]) => {
      expect(run.record.state).toBe("Pending")
      expect(run.record.lastEventSeq).toBe(0)
      let last: HostRolloutState = run.record
      let previous: Event | null = null
      let previousTime = run.record.dispatchedAt.getTime()
      for (const { before, event, result } of Arbitraries.replay(run)) {
        expect(isEvent(event)).toBe(true)
        for (const closure of closuresOf(event)) expect(pool).toContain(closure)
        if (event.seq <= before.lastEventSeq) {
          expect(event).toBe(previous)
        } else {
          expect(event.seq - before.lastEventSeq).toBeLessThanOrEqual(4)
          expect(Arbitraries.eventTime(event).getTime()).toBeGreaterThanOrEqual(previousTime)
          previousTime = Arbitraries.eventTime(event).getTime()
        }
        if (Either.isRight(result)) {
          expect(event._tag.startsWith(run.side)).toBe(true)
          last = result.right.state
        }
        previous = event
      }
      expect(last.lastEventSeq).toBeLessThanOrEqual(4 * run.events.length)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "without faults, step accepts every event of a rollout",
    [Arbitraries.rollout({ faults: false })],
    ([run]) => {
      for (const { event, result } of Arbitraries.replay(run)) {
        expect(Either.isRight(result), `${event._tag}: ${Either.isLeft(result) ? result.left.message : ""}`).toBe(true)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("over 1000 rollouts, two in five converge, more than a third fail or revert, and every refusal occurs", () => {
    const { events, finals, refusals, sides } = distribution({})
    expect(finals.Converged).toBeGreaterThanOrEqual(350)
    expect(finals.Failed).toBeGreaterThanOrEqual(150)
    expect(finals.Reverted).toBeGreaterThanOrEqual(150)
    expect(finals.Converged! + finals.Failed! + finals.Reverted!).toBeGreaterThanOrEqual(750)
    expect(finals.Soaking! + finals.Activating!).toBeGreaterThanOrEqual(50)
    expect(sides.Local).toBeGreaterThanOrEqual(400)
    expect(sides.Remote).toBeGreaterThanOrEqual(400)
    expect(refusals.SeqRegression).toBeGreaterThanOrEqual(100)
    expect(refusals.IllegalForState).toBeGreaterThanOrEqual(100)
    expect(refusals.Invariant).toBeGreaterThanOrEqual(50)
    expect(events / 1000).toBeGreaterThanOrEqual(4)
  })

  it("the main entry does not load fast-check", () => {
    const src = new URL("../src/", import.meta.url)
    const kit = ["Arbitraries.ts", "testing.ts"]
    const files = readdirSync(src, { recursive: true, encoding: "utf8" }).filter((file) => file.endsWith(".ts"))
    expect(files).toContain("index.ts")
    for (const file of files.filter((name) => !kit.includes(name))) {
      const text = readFileSync(new URL(file, src), "utf8")
      expect(text, file).not.toMatch(
        /(from|import) "(fast-check|effect|effect\/(FastCheck|Arbitrary)|[^"]*\/(Arbitraries|testing)\.js)"/
      )
    }
  })
})
