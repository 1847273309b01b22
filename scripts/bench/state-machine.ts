/**
 * `step()` throughput over a realistic mixed event stream, next to a baseline that only
 * copies the record (object spread plus a Map copy) for each event. Reports steps per
 * second of both and their ratio; the aim is a ratio of at most 3.
 *
 *   npm run bench -- state-machine
 */
import { type Event, type HostRolloutState, newPending, type RolloutPolicy, step } from "@nixfleet/state-machine"
import { compare } from "./stats.js"

const ROLLOUTS = 2_000
const PROBES = ["nginx", "postgres", "evidence-nis2"] as const
const policy: RolloutPolicy = {
  strategy: "all-at-once",
  waves: [],
  healthGate: {},
  onHealthFailure: "rollback-and-halt"
}

interface Trace {
  readonly start: HostRolloutState
  readonly events: ReadonlyArray<Event>
}

/**
 * One rollout as an agent sees it: dispatch, activation, topology, a soak of probe runs
 * (most of the stream, as in production), then convergence or, for one rollout in ten, a
 * sustained failure and its rollback.
 */
const trace = (index: number): Trace => {
  const t0 = Date.UTC(2026, 4, 16, 1, 0, 0) + index * 3_600_000
  const at = (secs: number) => new Date(t0 + secs * 1000)
  const target = `${String(index).padStart(32, "0")}-nixos-system-web-${index}`
  const start = newPending({
    rolloutId: `stable@${index.toString(16).padStart(8, "0")}`,
    hostname: `web-${index}`,
    channel: "stable",
    targetClosure: target,
    dispatchedAt: at(0),
    soakDueAt: at(600)
  })
  const events: Array<Event> = []
  let seq = 0
  const push = (event: Event) => events.push(event)
  push({
    _tag: "LocalActivate",
    currentClosureAtDispatch: "prior",
    targetClosure: target,
    receivedAt: at(1),
    soakDueAt: at(600),
    seq: ++seq
  })
  push({ _tag: "LocalActivationStarted", startedAt: at(2), switchMethod: "systemd-run", seq: ++seq })
  push({
    _tag: "LocalActivationCompleted",
    observedCurrentClosure: target,
    exitCode: 0,
    completedAt: at(30),
    seq: ++seq
  })
  push({
    _tag: "LocalProbeTopologyDeclared",
    probes: PROBES.map((probeName) => ({ probeName, kind: "http", mode: "enforce" as const })),
    declaredAt: at(31),
    seq: ++seq
  })
  const failing = index % 10 === 0
  for (const probeName of PROBES) {
    push({ _tag: "LocalProbeObservedFirst", probeName, mode: "enforce", observedAt: at(32), seq: ++seq })
  }
  for (let tick = 0; tick < 20; tick++) {
    for (const probeName of PROBES) {
      const fail = failing && probeName === "nginx" && tick >= 5
      if (fail && tick === 5) {
        push({
          _tag: "LocalProbeFailureFirst",
          probeName,
          mode: "enforce",
          firstFailedAt: at(40 + tick * 30),
          seq: ++seq
        })
      }
      push({
        _tag: "LocalProbeResult",
        probeName,
        mode: "enforce",
        status: fail ? "fail" : "pass",
        observedAt: at(40 + tick * 30),
        failureReason: fail ? "status 502 != expected 200" : null,
        subResults: null,
        seq: ++seq
      })
    }
  }
  if (failing) {
    push({
      _tag: "LocalSustainedFailureCrossed",
      failedAt: at(400),
      sustainedDurationSecs: 240,
      failingProbes: ["nginx"],
      policyApplied: "rollback-and-halt",
      seq: ++seq
    })
    push({ _tag: "LocalRollbackCompleted", revertedToClosure: "prior", exitCode: 0, completedAt: at(420), seq: ++seq })
  } else {
    push({ _tag: "LocalConvergedReached", convergedAt: at(640), currentClosure: target, seq: ++seq })
  }
  return { start, events }
}

export const benchStateMachine = (): void => {
  const traces = Array.from({ length: ROLLOUTS }, (_, i) => trace(i))
  const steps = traces.reduce((n, t) => n + t.events.length, 0)
  const now = new Date(0)
  let sink = 0

  const reducer = () => {
    for (const { events, start } of traces) {
      let state = start
      for (const event of events) {
        const result = step(state, event, now, policy)
        if (result._tag === "Left") throw new Error(`bench trace is illegal: ${result.left.message}`)
        state = result.right.state
        sink += result.right.effects.length
      }
    }
  }
  const baseline = () => {
    for (const { events, start } of traces) {
      let state = start
      for (const event of events) {
        state = { ...state, probes: new Map(state.probes), lastEventSeq: event.seq }
        sink += 1
      }
    }
  }

  const medians = compare({ step: reducer, baseline }, { warmup: 3, runs: 11 })
  const rate = (ms: number) => Math.round(steps / (ms / 1000))
  const ratio = medians.step! / medians.baseline!
  process.stdout.write(
    [
      `state-machine: ${steps} steps per run (${ROLLOUTS} rollouts), medians of 11 interleaved runs`,
      `  step():   ${rate(medians.step!).toLocaleString("en")} steps/s (${medians.step!.toFixed(1)} ms)`,
      `  baseline: ${rate(medians.baseline!).toLocaleString("en")} copies/s (${medians.baseline!.toFixed(1)} ms)`,
      `  ratio step/baseline: ${ratio.toFixed(2)}x (aim: <= 3x)`,
      JSON.stringify({
        bench: "state-machine",
        steps,
        stepMs: medians.step,
        baselineMs: medians.baseline,
        ratio,
        sink
      }),
      ""
    ].join("\n")
  )
}
