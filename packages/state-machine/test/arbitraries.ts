/**
 * Arbitraries built from the event and record schemas, narrowed to small pools of
 * closures, probe names and seqs so that random sequences reach every legal transition
 * (including convergence) instead of stopping at the first mismatch.
 */
import { Instant } from "@nixfleet/proto"
import { Event, type HostRolloutState, HostStates, LocalEvent, ProbeRecord } from "@nixfleet/state-machine"
import { Arbitrary, FastCheck as fc } from "effect"

export const closures = ["target-abc", "prior-closure", "other-closure"] as const
export const probeNames = ["p1", "p2", "p3"] as const

const closure = fc.constantFrom(...closures)
const probeName = fc.constantFrom(...probeNames)
const instant = Arbitrary.make(Instant)

const closureKeys = [
  "currentClosureAtDispatch",
  "targetClosure",
  "observedCurrentClosure",
  "revertedToClosure",
  "currentClosure"
] as const

/** Replaces closures and probe names drawn by the schema arbitrary with pool values. */
const narrow = <E extends Event>(event: E, pickedClosure: string, pickedProbe: string, seq: number): E => {
  const copy: Record<string, unknown> = { ...event, seq }
  for (const key of closureKeys) if (key in copy) copy[key] = pickedClosure
  if ("probeName" in copy) copy.probeName = pickedProbe
  return copy as E
}

/** Any of the 24 events, with a seq in 1..40. */
export const event: fc.Arbitrary<Event> = fc
  .tuple(Arbitrary.make(Event), closure, probeName, fc.integer({ min: 1, max: 40 }))
  .map(([e, c, p, seq]) => narrow(e, c, p, seq))

/** Any of the 12 Local events, with a seq in 1..40. */
export const localEvent: fc.Arbitrary<LocalEvent> = fc
  .tuple(Arbitrary.make(LocalEvent), closure, probeName, fc.integer({ min: 1, max: 40 }))
  .map(([e, c, p, seq]) => narrow(e, c, p, seq))

/** A record in any of the 7 states, with plausible fields and a small seq. */
export const record: fc.Arbitrary<HostRolloutState> = fc.record({
  rolloutId: fc.constantFrom("stable@abc123", "r1"),
  hostname: fc.constantFrom("web-01", "h1"),
  channel: fc.constant("stable"),
  state: fc.constantFrom(...HostStates),
  targetClosure: fc.constant("target-abc"),
  currentClosureAtDispatch: fc.option(closure, { nil: null }),
  currentClosure: fc.option(closure, { nil: null }),
  revertedTo: fc.option(closure, { nil: null }),
  dispatchedAt: instant,
  dispatchAckedAt: fc.option(instant, { nil: null }),
  activationStartedAt: fc.option(instant, { nil: null }),
  activationCompletedAt: fc.option(instant, { nil: null }),
  activationFailedAt: fc.option(instant, { nil: null }),
  probeObservedFirstAt: fc.option(instant, { nil: null }),
  probeFailureFirstAt: fc.option(instant, { nil: null }),
  soakDueAt: fc.option(instant, { nil: null }),
  convergedAt: fc.option(instant, { nil: null }),
  failedAt: fc.option(instant, { nil: null }),
  policyApplied: fc.constantFrom("halt" as const, "rollback-and-halt" as const, null),
  revertedAt: fc.option(instant, { nil: null }),
  probes: fc.array(fc.tuple(probeName, Arbitrary.make(ProbeRecord)), { maxLength: 3 }).map((entries) =>
    new Map(entries)
  ),
  lastEventSeq: fc.integer({ min: 0, max: 20 })
})

/** Deep copy, so that a later comparison detects any mutation of the original. */
export const snapshot = <A>(value: A): A => structuredClone(value)
