import {
  type Event,
  type EventName,
  type HostRolloutState,
  type HostState,
  newPending,
  type RolloutPolicy
} from "@nixfleet/state-machine"

/** Every upstream test uses this instant. */
export const t0 = new Date("2026-05-16T01:00:00Z")

export const secs = (n: number): Date => new Date(t0.getTime() + n * 1000)
export const mins = (n: number): Date => secs(n * 60)

const policy = (onHealthFailure: RolloutPolicy["onHealthFailure"]): RolloutPolicy => ({
  strategy: "all-at-once",
  waves: [],
  healthGate: {},
  onHealthFailure
})

export const policyHalt = policy("halt")
export const policyRollback = policy("rollback-and-halt")

/** `scenarios.rs`: rollout r1 on web-01, target `target-closure-abc`, soak due at t0+5m. */
export const scenarioPending = (): HostRolloutState =>
  newPending({
    rolloutId: "r1",
    hostname: "web-01",
    channel: "stable",
    targetClosure: "target-closure-abc",
    dispatchedAt: t0,
    soakDueAt: mins(5)
  })

/**
 * `invariants.rs`'s `state_in`: a record forced into a state, with the fields that state
 * implies. `withDispatchClosure` also sets the rollback target for Activating, Deferred
 * and Soaking (upstream only sets it for Failed and Reverted).
 */
export const stateIn = (
  state: HostState,
  options: { readonly withDispatchClosure?: boolean } = {}
): HostRolloutState => {
  const base: HostRolloutState = {
    ...newPending({
      rolloutId: "r1",
      hostname: "h1",
      channel: "stable",
      targetClosure: "target-abc",
      dispatchedAt: t0,
      soakDueAt: mins(5)
    }),
    state
  }
  const withClosure = options.withDispatchClosure === true && state !== "Pending"
    ? { ...base, currentClosureAtDispatch: "prior-closure" }
    : base
  switch (state) {
    case "Soaking":
      return { ...withClosure, currentClosure: "target-abc", activationCompletedAt: secs(5) }
    case "Converged":
      return { ...withClosure, currentClosure: "target-abc", activationCompletedAt: secs(5), convergedAt: mins(6) }
    case "Failed":
      return { ...withClosure, failedAt: secs(125), currentClosureAtDispatch: "prior-closure" }
    case "Reverted":
      return {
        ...withClosure,
        failedAt: secs(125),
        currentClosureAtDispatch: "prior-closure",
        revertedAt: secs(135),
        revertedTo: "prior-closure",
        currentClosure: "prior-closure"
      }
    default:
      return withClosure
  }
}

/**
 * One event of each of the 24 kinds, with the payloads of `invariants.rs`'s catalogue
 * (extended to the four kinds it leaves out), all stamped `at`.
 */
export const eventWithSeq = (
  name: EventName,
  seq: number,
  at: Date = secs(10),
  options: { readonly policyApplied?: RolloutPolicy["onHealthFailure"] } = {}
): Event => {
  const policyApplied = options.policyApplied ?? "halt"
  switch (name) {
    case "LocalActivate":
      return {
        _tag: name,
        currentClosureAtDispatch: "prior",
        targetClosure: "target-abc",
        receivedAt: at,
        soakDueAt: new Date(at.getTime() + 5 * 60_000),
        seq
      }
    case "RemoteDispatchAck":
      return { _tag: name, currentClosureAtDispatch: "prior", receivedAt: at, seq }
    case "LocalActivationStarted":
    case "RemoteActivationStarted":
      return { _tag: name, startedAt: at, switchMethod: "systemd-run", seq }
    case "LocalActivationCompleted":
    case "RemoteActivationCompleted":
      return { _tag: name, observedCurrentClosure: "target-abc", exitCode: 0, completedAt: at, seq }
    case "LocalActivationDeferred":
    case "RemoteActivationDeferred":
      return { _tag: name, component: "systemd", deferredAt: at, seq }
    case "LocalActivationFailed":
    case "RemoteActivationFailed":
      return { _tag: name, exitCode: 1, stderrTail: "x", failedAt: at, seq }
    case "LocalProbeTopologyDeclared":
    case "RemoteProbeTopologyDeclared":
      return { _tag: name, probes: [{ probeName: "p", kind: "exec", mode: "enforce" }], declaredAt: at, seq }
    case "LocalProbeObservedFirst":
    case "RemoteProbeObservedFirst":
      return { _tag: name, probeName: "p", mode: "enforce", observedAt: at, seq }
    case "LocalProbeResult":
    case "RemoteProbeResult":
      return {
        _tag: name,
        probeName: "p",
        mode: "enforce",
        status: "pass",
        observedAt: at,
        failureReason: null,
        subResults: null,
        seq
      }
    case "LocalProbeFailureFirst":
    case "RemoteProbeFailureFirst":
      return { _tag: name, probeName: "p", mode: "enforce", firstFailedAt: at, seq }
    case "LocalSustainedFailureCrossed":
    case "RemoteFailed":
      return { _tag: name, failedAt: at, sustainedDurationSecs: 60, failingProbes: ["p"], policyApplied, seq }
    case "LocalRollbackCompleted":
    case "RemoteRollbackComplete":
      return { _tag: name, revertedToClosure: "prior", exitCode: 0, completedAt: at, seq }
    case "LocalConvergedReached":
    case "RemoteConverged":
      return { _tag: name, convergedAt: at, currentClosure: "target-abc", seq }
  }
}

/** The 20 kinds `invariants.rs` exercises: all but the two Deferred and two topology events. */
export const upstreamCatalogue: ReadonlyArray<EventName> = [
  "LocalActivate",
  "LocalActivationStarted",
  "LocalActivationCompleted",
  "LocalActivationFailed",
  "LocalProbeObservedFirst",
  "LocalProbeResult",
  "LocalProbeFailureFirst",
  "LocalSustainedFailureCrossed",
  "LocalRollbackCompleted",
  "LocalConvergedReached",
  "RemoteDispatchAck",
  "RemoteActivationStarted",
  "RemoteActivationCompleted",
  "RemoteActivationFailed",
  "RemoteProbeObservedFirst",
  "RemoteProbeResult",
  "RemoteProbeFailureFirst",
  "RemoteFailed",
  "RemoteRollbackComplete",
  "RemoteConverged"
]

/** The legal table of `invariants.rs` (it leaves Deferred out). */
export const upstreamLegal: Partial<Record<HostState, ReadonlyArray<EventName>>> = {
  Pending: ["LocalActivate", "RemoteDispatchAck"],
  Activating: [
    "LocalActivationStarted",
    "RemoteActivationStarted",
    "LocalActivationCompleted",
    "RemoteActivationCompleted",
    "LocalActivationFailed",
    "RemoteActivationFailed"
  ],
  Soaking: [
    "LocalProbeObservedFirst",
    "RemoteProbeObservedFirst",
    "LocalProbeResult",
    "RemoteProbeResult",
    "LocalProbeFailureFirst",
    "RemoteProbeFailureFirst",
    "LocalSustainedFailureCrossed",
    "RemoteFailed",
    "LocalConvergedReached",
    "RemoteConverged"
  ],
  Failed: ["LocalRollbackCompleted", "RemoteRollbackComplete"]
}
