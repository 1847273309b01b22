/**
 * Live progress of `dev`: every state change of the agent's rollout records (each one the
 * reducer publishes, none skipped) and every event the control plane accepts (seq, kind,
 * a detail; polled from the in-process control plane), as lines.
 *
 * @since 0.1.0
 */
import type { Reducer } from "@nixfleet/agent"
import type { DevControlPlane } from "@nixfleet/dev-control-plane"
import type { HostRolloutState } from "@nixfleet/state-machine"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Progress } from "./Progress.js"

const Envelope = Schema.Struct({
  rolloutId: Schema.String,
  event: Schema.Struct(
    { kind: Schema.String, seq: Schema.Number },
    Schema.Record({ key: Schema.String, value: Schema.Unknown })
  )
})
type Envelope = typeof Envelope.Type

const decodeEnvelope = Schema.decodeUnknownOption(Envelope)

/** What is worth reading in an event, beyond its kind. */
const detail = (event: Envelope["event"]): string => {
  const field = (name: string) => String(event[name])
  switch (event.kind) {
    case "ActivationCompleted":
      return `now running ${field("observedCurrentClosure")}`
    case "ActivationFailed":
      return `exit ${field("exitCode")}`
    case "ProbeResult":
      return `${field("probeName")}: ${field("status")}`
    case "ProbeFailureFirst":
      return `${field("probeName")} failing`
    case "Failed":
      return `policy ${field("policyApplied")}`
    case "RollbackComplete":
      return `back on ${field("revertedToClosure")}`
    case "Converged":
      return `on ${field("currentClosure")}`
    default:
      return ""
  }
}

/**
 * @since 0.1.0
 */
export interface RolloutWatch {
  /** Names a rollout in the lines (otherwise its id is shown). */
  readonly name: (rolloutId: string, label: string) => Effect.Effect<void>
  /** Prints the events that are new now (the watch also does so every 100 ms). */
  readonly flush: Effect.Effect<void>
  /** Prints the state changes of the agent's records, for the current scope. */
  readonly follow: (agent: Reducer.ReducerService) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * Watches `controlPlane` for the current scope.
 *
 * @since 0.1.0
 */
export const watch = (controlPlane: DevControlPlane): Effect.Effect<RolloutWatch, never, Progress | Scope.Scope> =>
  Effect.gen(function*() {
    const progress = yield* Progress
    const { paint } = progress
    const labels = new Map<string, string>()
    const states = new Map<string, string>()
    let seen = 0
    const label = (rolloutId: string) => (labels.get(rolloutId) ?? rolloutId).padEnd(6)

    const printEvents = Effect.gen(function*() {
      const events = yield* controlPlane.events
      for (const accepted of events.slice(seen)) {
        const envelope = decodeEnvelope(accepted.envelope)
        if (Option.isNone(envelope)) continue
        const { event, rolloutId } = envelope.value
        const extra = accepted.duplicate ? paint.dim("(duplicate, ignored)") : paint.dim(detail(event))
        yield* progress.timed(`${label(rolloutId)} event  seq ${String(event.seq).padStart(2)} ${event.kind} ${extra}`)
      }
      seen = events.length
    })

    const printStates = (records: ReadonlyMap<string, HostRolloutState>) =>
      Effect.forEach(records, ([rolloutId, record]) => {
        const before = states.get(rolloutId)
        if (before === record.state) return Effect.void
        states.set(rolloutId, record.state)
        const change = before === undefined
          ? paint.state(record.state)
          : `${paint.state(before)} → ${paint.state(record.state)}`
        return progress.timed(`${label(rolloutId)} state  ${change}`)
      }, { discard: true })

    const lock = yield* Effect.makeSemaphore(1)
    const flush = lock.withPermits(1)(printEvents)
    yield* Effect.forkScoped(Effect.repeat(flush, Schedule.spaced("100 millis")))
    return {
      name: (rolloutId, name) => Effect.sync(() => labels.set(rolloutId, name)),
      flush,
      follow: (agent) =>
        Effect.asVoid(
          Effect.forkScoped(
            Stream.runForEach(agent.records.changes, (records) => lock.withPermits(1)(printStates(records)))
          )
        )
    } satisfies RolloutWatch
  })
