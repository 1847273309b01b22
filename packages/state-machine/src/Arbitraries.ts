/**
 * fast-check arbitraries for property tests of the reducer, with realistic ranges: a few
 * closures, a few probes, small seqs, whole-second instants in a two-hour window, and
 * whole rollouts whose seqs advance and whose clock moves forward, so that random runs
 * reach Converged, Failed and Reverted instead of stopping at the first `SeqRegression`.
 *
 * fast-check comes through `effect/FastCheck` (a dependency of `effect`), the same copy
 * that `@effect/vitest`'s `it.prop` runs. Import this module from
 * `@nixfleet/state-machine/testing` only: the main entry never loads fast-check.
 *
 * @since 0.1.0
 */
import type { OnHealthFailure, ProbeMode, ProbeStatus } from "@nixfleet/proto"
import type * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import { type Event, type EventName, EventNames, type LocalEvent, type RemoteEvent } from "./Event.js"
import { type HostRolloutState, newPending } from "./HostRolloutState.js"
import { type HostState, HostStates, isTerminal } from "./HostState.js"
import type { ProbeRecord } from "./ProbeRecord.js"
import type { RolloutPolicy } from "./RolloutPolicy.js"
import { step, type StepOutput } from "./Step.js"
import type { TransitionError } from "./TransitionError.js"
import { isLegal } from "./Transitions.js"
import { remoteMirror } from "./Wire.js"

/**
 * The closure pool: every record's target, the closure a host ran at dispatch (the
 * rollback target), and one unrelated closure for mismatches.
 *
 * @since 0.1.0
 */
export const Closures = {
  target: "/nix/store/7xq5b0sdl2wqv4n9m3k8j1h6g5f4d3c2-nixos-system-web-01-25.11.20260516",
  prior: "/nix/store/1k9dz8y7x6w5v4s3r2q1p0n9m8l7k6j5-nixos-system-web-01-25.11.20260501",
  other: "/nix/store/0c1xa2b3c4d5f6g7h8i9j0k1l2m3n4p5-nixos-system-web-01-25.05.20251120"
} as const

/**
 * The probes a host declares: two gating ones and an observe-only evidence probe.
 *
 * @since 0.1.0
 */
export const Probes: ReadonlyArray<{ readonly probeName: string; readonly kind: string; readonly mode: ProbeMode }> = [
  { probeName: "nginx-version", kind: "exec", mode: "enforce" },
  { probeName: "http-health", kind: "http", mode: "enforce" },
  { probeName: "evidence-nis2", kind: "evidence", mode: "observe" }
]

/**
 * The start of the window every generated instant falls in.
 *
 * @since 0.1.0
 */
export const epoch: Date = new Date("2026-05-16T01:00:00Z")

const closurePool = [Closures.target, Closures.prior, Closures.other]
const probeModes: ReadonlyArray<ProbeMode> = ["enforce", "observe", "disabled"]
const secondsAfter = (date: Date, seconds: number): Date => new Date(date.getTime() + seconds * 1000)
const later = (a: Date, b: Date | null): Date => b !== null && b.getTime() > a.getTime() ? b : a
const pick = <A>(values: ReadonlyArray<A>, index: number): A => values[index % values.length]!

/**
 * A whole-second instant within two hours of `epoch`.
 *
 * @since 0.1.0
 */
export const instant: fc.Arbitrary<Date> = fc.integer({ min: 0, max: 2 * 3600 }).map((s) => secondsAfter(epoch, s))

/**
 * An event seq in 1..40: small enough that random events and records collide, both ways.
 *
 * @since 0.1.0
 */
export const seq: fc.Arbitrary<number> = fc.integer({ min: 1, max: 40 })

/**
 * A closure of the pool.
 *
 * @since 0.1.0
 */
export const closure: fc.Arbitrary<string> = fc.constantFrom(...closurePool)

/**
 * An all-at-once policy of one wave, halting or rolling back on failure.
 *
 * @since 0.1.0
 */
export const policy: fc.Arbitrary<RolloutPolicy> = fc
  .tuple(fc.constantFrom<OnHealthFailure>("halt", "rollback-and-halt"), fc.integer({ min: 0, max: 10 }))
  .map(([onHealthFailure, soakMinutes]) => policyOf(onHealthFailure, soakMinutes))

const policyOf = (onHealthFailure: OnHealthFailure, soakMinutes: number): RolloutPolicy => ({
  strategy: "all-at-once",
  waves: [{ selector: { all: true }, soakMinutes }],
  healthGate: {},
  onHealthFailure
})

/** The payload choices of one event, besides its name, seq and timestamp. */
interface Details {
  /** The event's closure: at dispatch, observed, reverted to or converged on. */
  readonly closure: string
  readonly target: string
  readonly soakDueAt: Date
  readonly probe: number
  readonly mode: ProbeMode
  readonly status: ProbeStatus
  readonly label: number
  readonly policyApplied: OnHealthFailure
}

const reasons = ["502 from upstream", "version mismatch", "evidence verification failed"]

/** One event from its choices: the one place that knows every variant's fields. */
const build = (name: EventName, seq: number, at: Date, d: Details): Event => {
  const probeName = pick(Probes, d.probe).probeName
  switch (name) {
    case "LocalActivate":
      return {
        _tag: name,
        currentClosureAtDispatch: d.closure,
        targetClosure: d.target,
        receivedAt: at,
        soakDueAt: d.soakDueAt,
        seq
      }
    case "RemoteDispatchAck":
      return { _tag: name, currentClosureAtDispatch: d.closure, receivedAt: at, seq }
    case "LocalActivationStarted":
    case "RemoteActivationStarted":
      return { _tag: name, startedAt: at, switchMethod: pick(["systemd-run", "direct"], d.label), seq }
    case "LocalActivationCompleted":
    case "RemoteActivationCompleted":
      return { _tag: name, observedCurrentClosure: d.closure, exitCode: 0, completedAt: at, seq }
    case "LocalActivationDeferred":
    case "RemoteActivationDeferred":
      return { _tag: name, component: pick(["kernel", "initrd", "systemd"], d.label), deferredAt: at, seq }
    case "LocalActivationFailed":
    case "RemoteActivationFailed":
      return {
        _tag: name,
        exitCode: pick([1, 2, 4, 127], d.label),
        stderrTail: pick(["switch-to-configuration: unit failed", "error: no space left on device"], d.label),
        failedAt: at,
        seq
      }
    case "LocalProbeTopologyDeclared":
    case "RemoteProbeTopologyDeclared":
      return { _tag: name, probes: Probes.map((probe) => ({ ...probe })), declaredAt: at, seq }
    case "LocalProbeObservedFirst":
    case "RemoteProbeObservedFirst":
      return { _tag: name, probeName, mode: d.mode, observedAt: at, seq }
    case "LocalProbeResult":
    case "RemoteProbeResult":
      return {
        _tag: name,
        probeName,
        mode: d.mode,
        status: d.status,
        observedAt: at,
        failureReason: d.status === "fail" ? pick(reasons, d.probe) : null,
        subResults: pick(Probes, d.probe).kind === "evidence"
          ? [{
            controlId: "backup-policy",
            status: d.status,
            framework: "nis2",
            article: "21(2)(c)",
            effectiveMode: d.mode,
            overrideReason: null
          }]
          : null,
        seq
      }
    case "LocalProbeFailureFirst":
    case "RemoteProbeFailureFirst":
      return { _tag: name, probeName, mode: d.mode, firstFailedAt: at, seq }
    case "LocalSustainedFailureCrossed":
    case "RemoteFailed":
      return {
        _tag: name,
        failedAt: at,
        sustainedDurationSecs: pick([60, 120, 300], d.label),
        failingProbes: [probeName],
        policyApplied: d.policyApplied,
        seq
      }
    case "LocalRollbackCompleted":
    case "RemoteRollbackComplete":
      return { _tag: name, revertedToClosure: d.closure, exitCode: 0, completedAt: at, seq }
    case "LocalConvergedReached":
    case "RemoteConverged":
      return { _tag: name, convergedAt: at, currentClosure: d.closure, seq }
  }
}

const details: fc.Arbitrary<Details> = fc.record({
  closure,
  target: fc.constant(Closures.target),
  soakDueAt: instant,
  probe: fc.nat({ max: Probes.length - 1 }),
  mode: fc.constantFrom(...probeModes),
  status: fc.constantFrom<ProbeStatus>("pass", "fail"),
  label: fc.nat({ max: 3 }),
  policyApplied: fc.constantFrom<OnHealthFailure>("halt", "rollback-and-halt")
})

/**
 * Where single events draw their seq and timestamp from; `seq` and `instant` by default.
 *
 * @since 0.1.0
 */
export interface EventOptions {
  readonly seq?: fc.Arbitrary<number>
  readonly at?: fc.Arbitrary<Date>
}

/**
 * Events of one variant, with closures and probes from the pools.
 *
 * @since 0.1.0
 */
export const eventOf = <N extends EventName>(
  name: N,
  options: EventOptions = {}
): fc.Arbitrary<Extract<Event, { readonly _tag: N }>> =>
  fc
    .tuple(options.seq ?? seq, options.at ?? instant, details)
    .map(([s, at, d]) => build(name, s, at, d) as Extract<Event, { readonly _tag: N }>)

const eventAmong = <E extends Event>(names: ReadonlyArray<EventName>, options: EventOptions): fc.Arbitrary<E> =>
  fc.oneof(...names.map((name) => eventOf(name, options) as fc.Arbitrary<E>))

/**
 * Any of the 24 events, each variant equally likely.
 *
 * @since 0.1.0
 */
export const event = (options: EventOptions = {}): fc.Arbitrary<Event> => eventAmong(EventNames, options)

/**
 * Any of the 12 Local events.
 *
 * @since 0.1.0
 */
export const localEvent = (options: EventOptions = {}): fc.Arbitrary<LocalEvent> =>
  eventAmong(EventNames.filter((name) => name.startsWith("Local")), options)

/**
 * Any of the 12 Remote events.
 *
 * @since 0.1.0
 */
export const remoteEvent = (options: EventOptions = {}): fc.Arbitrary<RemoteEvent> =>
  eventAmong(EventNames.filter((name) => name.startsWith("Remote")), options)

const identity = fc.record({
  rolloutId: fc.constantFrom("stable@7f3a9c1", "edge@19be2d0"),
  hostname: fc.constantFrom("web-01", "db-01"),
  channel: fc.constant("stable"),
  dispatchedAt: instant,
  soakMinutes: fc.option(fc.integer({ min: 0, max: 10 }), { nil: null, freq: 8 })
})

const probeRecords = (at: Date, enforcePasses: boolean): fc.Arbitrary<ReadonlyMap<string, ProbeRecord>> =>
  fc.subarray([...Probes]).chain((declared) =>
    fc.tuple(...declared.map(() => fc.tuple(fc.constantFrom<ProbeStatus>("pass", "fail"), fc.boolean())))
      .map((draws) =>
        new Map(declared.map((probe, i): [string, ProbeRecord] => {
          const [drawn, passedBefore] = draws[i]!
          const status = enforcePasses && probe.mode === "enforce" ? "pass" : drawn
          return [probe.probeName, {
            status,
            mode: probe.mode,
            lastObservedAt: at,
            lastPassAt: status === "pass" ? at : passedBefore ? secondsAfter(at, -30) : null,
            failureReason: status === "fail" ? pick(reasons, i) : null
          }]
        }))
      )
  )

/**
 * A record in the given state, with the fields the path to that state sets: timestamps in
 * order, the rollback target known (mostly), a Soaking record's closure mostly the target
 * and its probes passing or failing, a Converged record past its soak deadline with every
 * enforce probe passing, a Failed record reached from Activating, Deferred or Soaking.
 *
 * @since 0.1.0
 */
export const recordIn = (state: HostState): fc.Arbitrary<HostRolloutState> =>
  fc.record({
    id: identity,
    gaps: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 6, maxLength: 6 }),
    dispatchClosure: fc.option(fc.constantFrom(Closures.prior, Closures.other), { nil: null, freq: 8 }),
    started: fc.boolean(),
    observed: fc.oneof({ arbitrary: fc.constant(Closures.target), weight: 4 }, { arbitrary: closure, weight: 1 }),
    lastEventSeq: fc.integer({ min: 1, max: 20 }),
    onHealthFailure: fc.constantFrom<OnHealthFailure>("halt", "rollback-and-halt"),
    failedFrom: fc.constantFrom<HostState>("Activating", "Deferred", "Soaking")
  }).chain((draw) => {
    const [g0, g1, g2, g3, g4, g5] = draw.gaps as [number, number, number, number, number, number]
    const soakDueAt = draw.id.soakMinutes === null ? null : secondsAfter(draw.id.dispatchedAt, draw.id.soakMinutes * 60)
    const pending = newPending({ ...draw.id, targetClosure: Closures.target, soakDueAt })
    if (state === "Pending") return fc.constant(pending)
    const acked = secondsAfter(draw.id.dispatchedAt, g0)
    const activating: HostRolloutState = {
      ...pending,
      state: "Activating",
      currentClosureAtDispatch: draw.dispatchClosure,
      dispatchAckedAt: acked,
      activationStartedAt: draw.started ? secondsAfter(acked, g1) : null,
      lastEventSeq: draw.lastEventSeq
    }
    const completedAt = secondsAfter(acked, g1 + g2)
    const probedAt = secondsAfter(completedAt, g3)
    const endedAt = later(secondsAfter(probedAt, g4), state === "Converged" ? soakDueAt : null)
    const failedRecord = (record: HostRolloutState, policyApplied: OnHealthFailure | null): HostRolloutState => ({
      ...record,
      state: "Failed",
      failedAt: record.state === "Soaking" ? endedAt : completedAt,
      activationFailedAt: record.state === "Soaking" ? null : completedAt,
      policyApplied
    })
    return probeRecords(probedAt, state === "Converged").map((probes) => {
      const soaking: HostRolloutState = {
        ...activating,
        state: "Soaking",
        activationCompletedAt: completedAt,
        currentClosure: state === "Converged" ? Closures.target : draw.observed,
        probes,
        probeObservedFirstAt: probes.size > 0 ? probedAt : null,
        probeFailureFirstAt: [...probes.values()].some((probe) => probe.status === "fail") ? probedAt : null
      }
      const failed = draw.failedFrom === "Soaking"
        ? failedRecord(soaking, draw.onHealthFailure)
        : draw.failedFrom === "Deferred"
        ? failedRecord({ ...activating, state: "Deferred" }, null)
        : failedRecord(activating, draw.onHealthFailure)
      const revertedTo = draw.dispatchClosure ?? Closures.prior
      switch (state) {
        case "Activating":
          return activating
        case "Deferred":
          return { ...activating, state: "Deferred" }
        case "Soaking":
          return soaking
        case "Converged":
          return { ...soaking, state: "Converged", convergedAt: endedAt }
        case "Failed":
          return failed
        default:
          return {
            ...failed,
            state: "Reverted",
            revertedAt: secondsAfter(failed.failedAt ?? endedAt, g5),
            revertedTo,
            currentClosure: revertedTo
          }
      }
    })
  })

/**
 * A record in one of `states` (all seven by default), each state equally likely.
 *
 * @since 0.1.0
 */
export const record = (states: ReadonlyArray<HostState> = HostStates): fc.Arbitrary<HostRolloutState> =>
  fc.oneof(...states.map(recordIn))

/**
 * Which side a rollout's events come from: the agent's own (`Local*`) or the control
 * plane's view of them (`Remote*`).
 *
 * @since 0.1.0
 */
export type Side = "Local" | "Remote"

/**
 * One host's run of one rollout: the fresh record, the channel's policy, and the events
 * in arrival order.
 *
 * @since 0.1.0
 */
export interface Rollout {
  readonly record: HostRolloutState
  readonly policy: RolloutPolicy
  readonly side: Side
  readonly events: ReadonlyArray<Event>
}

/**
 * `side`: one side only (by default each rollout picks one). `maxLength`: the most draws
 * per rollout (40), one event each; a rollout also ends at Converged, at Reverted, or at
 * Failed under `halt`. `faults` (on by default): about one event in seven is an illegal
 * event, a retransmit of the previous event or a seq gap, and some convergence attempts
 * fail the gate (wrong closure, before the soak deadline, a failing enforce probe).
 *
 * @since 0.1.0
 */
export interface RolloutOptions {
  readonly side?: Side
  readonly maxLength?: number
  readonly faults?: boolean
}

/** The choices of one draw; 0 is the ordinary choice, so that shrinking heads for it. */
interface Knobs {
  /** 0..99: what kind of event (progress, illegal, retransmit, seq gap). */
  readonly roll: number
  /** 0..99: which of the legal next events. */
  readonly option: number
  /** 0..9: high values deviate: a failing probe result; with faults, a wrong closure or an early convergence. */
  readonly variant: number
  readonly seconds: number
  readonly probe: number
  readonly label: number
  readonly gap: number
}

const knobs: fc.Arbitrary<Knobs> = fc.record({
  roll: fc.nat({ max: 99 }),
  option: fc.nat({ max: 99 }),
  variant: fc.nat({ max: 9 }),
  seconds: fc.integer({ min: 1, max: 90 }),
  probe: fc.nat({ max: Probes.length - 1 }),
  label: fc.nat({ max: 3 }),
  gap: fc.integer({ min: 1, max: 3 })
})

/** A Local event name the generator may pick next, or the end of the run. */
type Move = LocalEvent["_tag"] | "End"

const choose = (weighted: ReadonlyArray<readonly [number, Move]>, option: number): Move => {
  const total = weighted.reduce((sum, [weight]) => sum + weight, 0)
  let point = (option * total) / 100
  for (const [weight, move] of weighted) {
    if (point < weight) return move
    point -= weight
  }
  return weighted[weighted.length - 1]![1]
}

/** What the generator believes the record is; it follows the table and the convergence gate. */
interface Model {
  readonly state: HostState
  readonly lastSeq: number
  readonly clock: Date
  readonly dispatchClosure: string | null
  readonly current: string | null
  readonly started: boolean
  readonly declared: boolean
  /** Enforce probes whose latest result failed: they block convergence. */
  readonly failing: ReadonlySet<string>
  readonly policyApplied: OnHealthFailure | null
}

const moves = (model: Model, faults: boolean): ReadonlyArray<readonly [number, Move]> => {
  switch (model.state) {
    case "Pending":
      return [[1, "LocalActivate"]]
    case "Activating":
      return model.started
        ? [[60, "LocalActivationCompleted"], [15, "LocalActivationDeferred"], [25, "LocalActivationFailed"]]
        : [
          [40, "LocalActivationStarted"],
          [35, "LocalActivationCompleted"],
          [10, "LocalActivationDeferred"],
          [15, "LocalActivationFailed"]
        ]
    case "Deferred":
      return [[75, "LocalActivationCompleted"], [25, "LocalActivationFailed"]]
    case "Soaking":
      return model.failing.size === 0
        ? [
          [model.declared ? 0 : 20, "LocalProbeTopologyDeclared"],
          [45, "LocalProbeResult"],
          [30, "LocalConvergedReached"],
          [5, "LocalProbeObservedFirst"],
          [3, "LocalSustainedFailureCrossed"]
        ]
        : [
          [35, "LocalProbeResult"],
          [35, "LocalSustainedFailureCrossed"],
          [10, "LocalProbeFailureFirst"],
          [10, "LocalProbeObservedFirst"],
          [faults ? 10 : 0, "LocalConvergedReached"]
        ]
    case "Failed":
      // Under halt a failed host stays failed: a rollback is the operator's, and rare.
      return model.policyApplied === "rollback-and-halt"
        ? [[1, "LocalRollbackCompleted"]]
        : [[85, "End"], [15, "LocalRollbackCompleted"]]
    default:
      return [[1, "End"]]
  }
}

/** The world a rollout's events are made in. */
interface Setting {
  readonly start: HostRolloutState
  readonly policy: RolloutPolicy
  readonly faults: boolean
}

/**
 * The Local event for a move, with the model after it, or `null` when `step` will refuse
 * it (a convergence that fails the gate).
 */
const progress = (
  model: Model,
  name: LocalEvent["_tag"],
  k: Knobs,
  seq: number,
  setting: Setting
): { readonly event: Event; readonly after: Model | null } => {
  const { faults, policy, start } = setting
  const deviate = faults && k.variant >= 8
  const probe = pick(Probes, k.probe)
  const make = (d: Partial<Details>, at: Date = model.clock): Event =>
    build(name, seq, at, {
      closure: Closures.target,
      target: start.targetClosure,
      soakDueAt: start.soakDueAt ?? model.clock,
      probe: k.probe,
      mode: probe.mode,
      status: "pass",
      label: k.label,
      policyApplied: policy.onHealthFailure,
      ...d
    })
  const moved = (event: Event, changes: Partial<Model>) => ({ event, after: { ...model, ...changes } })
  switch (name) {
    case "LocalActivate": {
      const dispatchClosure = deviate ? Closures.other : Closures.prior
      return moved(make({ closure: dispatchClosure }), { state: "Activating", dispatchClosure })
    }
    case "LocalActivationStarted":
      return moved(make({}), { started: true })
    case "LocalActivationCompleted": {
      // A switch that "succeeds" onto the wrong closure is caught only by the convergence gate.
      const current = deviate && k.variant === 9 ? Closures.other : Closures.target
      return moved(make({ closure: current }), { state: "Soaking", current, failing: new Set() })
    }
    case "LocalActivationDeferred":
      return moved(make({}), { state: "Deferred" })
    case "LocalActivationFailed":
      // Only a failure in Activating applies the policy; after a deferral nothing rolls back.
      return moved(make({}), {
        state: "Failed",
        policyApplied: model.state === "Activating" ? policy.onHealthFailure : null
      })
    case "LocalProbeTopologyDeclared":
      return moved(make({}), { declared: true })
    case "LocalProbeResult": {
      // A healthy probe fails one time in five; a failing gating probe recovers more often than not.
      const status: ProbeStatus = k.variant >= (model.failing.has(probe.probeName) ? 7 : 8) ? "fail" : "pass"
      const failing = new Set(model.failing)
      if (probe.mode === "enforce" && status === "fail") failing.add(probe.probeName)
      else failing.delete(probe.probeName)
      return moved(make({ status }), { failing })
    }
    case "LocalProbeObservedFirst":
    case "LocalProbeFailureFirst":
      return moved(make({}), {})
    case "LocalSustainedFailureCrossed":
      return moved(make({}), { state: "Failed", policyApplied: policy.onHealthFailure })
    case "LocalRollbackCompleted": {
      const current = deviate ? Closures.other : model.dispatchClosure ?? Closures.prior
      return moved(make({ closure: current }), { state: "Reverted", current })
    }
    case "LocalConvergedReached": {
      // The agent waits for the soak deadline; a deviation reports before it.
      const convergedAt = deviate && k.variant === 8 ? model.clock : later(model.clock, start.soakDueAt)
      const current = model.current ?? Closures.target
      const event = make({ closure: current }, convergedAt)
      const passes = current === start.targetClosure && model.failing.size === 0 &&
        (start.soakDueAt === null || convergedAt.getTime() >= start.soakDueAt.getTime())
      return passes ? moved(event, { state: "Converged" }) : { event, after: null }
    }
  }
}

/** Turns the draws into events, following the model; stops at the end of the run. */
const script = (setting: Setting, side: Side, draws: ReadonlyArray<Knobs>): ReadonlyArray<Event> => {
  const { faults, policy, start } = setting
  let model: Model = {
    state: "Pending",
    lastSeq: 0,
    clock: start.dispatchedAt,
    dispatchClosure: null,
    current: null,
    started: false,
    declared: false,
    failing: new Set(),
    policyApplied: null
  }
  const events: Array<Event> = []
  for (const k of draws) {
    model = { ...model, clock: secondsAfter(model.clock, k.seconds) }
    const fault = !faults ? null : k.roll >= 96 ? "gap" : k.roll >= 92 ? "retransmit" : k.roll >= 85 ? "illegal" : null
    const ended = isTerminal(model.state)
    if (fault === "illegal" || (ended && fault !== null)) {
      // An event the state refuses, from either side; it consumes no seq. After the end,
      // one such event shows that the final state absorbs it.
      const name = pick(EventNames.filter((candidate) => !isLegal(model.state, candidate)), k.option)
      events.push(build(name, model.lastSeq + 1, model.clock, {
        closure: pick(closurePool, k.label),
        target: start.targetClosure,
        soakDueAt: start.soakDueAt ?? model.clock,
        probe: k.probe,
        mode: pick(Probes, k.probe).mode,
        status: "pass",
        label: k.label,
        policyApplied: policy.onHealthFailure
      }))
      if (ended) break
      continue
    }
    if (fault === "retransmit" && events.length > 0) {
      events.push(events[events.length - 1]!)
      continue
    }
    const move = choose(moves(model, faults), k.option)
    if (move === "End") break
    const seq = model.lastSeq + 1 + (fault === "gap" ? k.gap : 0)
    const { after, event } = progress(model, move, k, seq, setting)
    events.push(side === "Local" ? event : remoteMirror(event))
    // A refused convergence changes nothing but the time, so its seq is still free.
    model = after === null
      ? { ...model, clock: later(model.clock, eventTime(event)) }
      : { ...after, clock: later(model.clock, eventTime(event)), lastSeq: seq }
  }
  return events
}

/**
 * Whole rollouts for one host: a fresh Pending record (soak deadline 0..10 minutes after
 * dispatch, or none), a policy, and up to `maxLength` events in which seqs advance by one
 * (sometimes more), the clock moves forward by 1..90 s, closures come from `Closures`,
 * and probes from `Probes`. Over 1000 runs with the defaults, about two in five end
 * Converged, two in five Failed or Reverted, and the rest part-way (the test of the kit
 * measures it).
 *
 * @since 0.1.0
 */
export const rollout = (options: RolloutOptions = {}): fc.Arbitrary<Rollout> =>
  fc.record({
    id: identity,
    onHealthFailure: fc.constantFrom<OnHealthFailure>("halt", "rollback-and-halt"),
    side: options.side === undefined ? fc.constantFrom<Side>("Local", "Remote") : fc.constant(options.side),
    // fast-check's default size would stop most runs within ten draws, many before their end.
    draws: fc.array(knobs, { minLength: 1, maxLength: options.maxLength ?? 40, size: "medium" })
  }).map(({ draws, id, onHealthFailure, side }) => {
    const soakDueAt = id.soakMinutes === null ? null : secondsAfter(id.dispatchedAt, id.soakMinutes * 60)
    const record = newPending({ ...id, targetClosure: Closures.target, soakDueAt })
    const rolloutPolicy = policyOf(onHealthFailure, id.soakMinutes ?? 0)
    const events = script({ start: record, policy: rolloutPolicy, faults: options.faults ?? true }, side, draws)
    return { record, policy: rolloutPolicy, side, events }
  })

/**
 * The timestamp an event carries: what a runtime would pass as `now`.
 *
 * @since 0.1.0
 */
export const eventTime = (event: Event): Date => {
  switch (event._tag) {
    case "LocalActivate":
    case "RemoteDispatchAck":
      return event.receivedAt
    case "LocalActivationStarted":
    case "RemoteActivationStarted":
      return event.startedAt
    case "LocalActivationCompleted":
    case "RemoteActivationCompleted":
    case "LocalRollbackCompleted":
    case "RemoteRollbackComplete":
      return event.completedAt
    case "LocalActivationDeferred":
    case "RemoteActivationDeferred":
      return event.deferredAt
    case "LocalActivationFailed":
    case "RemoteActivationFailed":
    case "LocalSustainedFailureCrossed":
    case "RemoteFailed":
      return event.failedAt
    case "LocalProbeTopologyDeclared":
    case "RemoteProbeTopologyDeclared":
      return event.declaredAt
    case "LocalProbeObservedFirst":
    case "RemoteProbeObservedFirst":
    case "LocalProbeResult":
    case "RemoteProbeResult":
      return event.observedAt
    case "LocalProbeFailureFirst":
    case "RemoteProbeFailureFirst":
      return event.firstFailedAt
    case "LocalConvergedReached":
    case "RemoteConverged":
      return event.convergedAt
  }
}

/**
 * One event of a replayed rollout: the record it met, and what `step` answered.
 *
 * @since 0.1.0
 */
export interface ReplayStep {
  readonly before: HostRolloutState
  readonly event: Event
  readonly result: Either.Either<StepOutput, TransitionError>
}

/**
 * Runs a rollout's events through `step` as a runtime would: each accepted event's record
 * is the next one's input, a refused event leaves the record as it was, and `now` is the
 * event's own time.
 *
 * @since 0.1.0
 */
export const replay = (run: Rollout): ReadonlyArray<ReplayStep> => {
  const steps: Array<ReplayStep> = []
  let current = run.record
  for (const event of run.events) {
    const result = step(current, event, eventTime(event), run.policy)
    steps.push({ before: current, event, result })
    if (result._tag === "Right") current = result.right.state
  }
  return steps
}

/**
 * The record a rollout ends with.
 *
 * @since 0.1.0
 */
export const finalRecord = (run: Rollout): HostRolloutState => {
  const steps = replay(run)
  const last = steps[steps.length - 1]
  if (last === undefined) return run.record
  return last.result._tag === "Right" ? last.result.right.state : last.before
}
