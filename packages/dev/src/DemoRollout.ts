/**
 * One rollout of the demo: declare its probe, publish it on the control plane, wait until
 * the agent and the control plane agree it is over, and check what it left behind.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import type { Reducer } from "@nixfleet/agent"
import type { DevControlPlane } from "@nixfleet/dev-control-plane"
import type { HostRolloutState } from "@nixfleet/state-machine"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { HOSTNAME } from "./DemoHost.js"
import { currentClosure, profileClosure } from "./NixClosures.js"
import { Progress } from "./Progress.js"
import type { RolloutWatch } from "./RolloutWatch.js"
import type { SandboxLayout } from "./Sandbox.js"

/**
 * The channel every demo rollout is published on.
 *
 * @since 0.1.0
 */
export const CHANNEL = "stable"

/**
 * An exec probe as `health-checks.json` declares it (5 s is the shortest interval).
 *
 * @since 0.1.0
 */
export const execProbe = (command: ReadonlyArray<string>) => ({
  web: { kind: "exec", mode: "enforce", command, intervalSeconds: 5, timeoutSecs: 5 }
})

/**
 * @since 0.1.0
 */
export interface RolloutPlan {
  /** How the lines and the summary call it. */
  readonly label: string
  readonly closure: string
  /** The probe declarations in force during this rollout. */
  readonly probes: ReturnType<typeof execProbe>
  readonly soakMinutes: number
  readonly expected: "Converged" | "Reverted"
  /** The closure the sandbox must run (link and, with Nix, profile) once it is over. */
  readonly runningAfter: string
  /** Whether the profile is checked too (real Nix). */
  readonly checkProfile: boolean
}

/**
 * @since 0.1.0
 */
export interface RolloutResult {
  readonly label: string
  readonly rolloutId: string
  readonly closure: string
  /** The control plane's final state of the host record (`"—"` when it never appeared). */
  readonly finalState: string
  /** Events the control plane accepted for this rollout (duplicates not counted). */
  readonly eventsDelivered: number
  readonly durationMs: number
  /** Everything that did not go as expected; empty when it did. */
  readonly problems: ReadonlyArray<string>
}

/** No rollout of the demo takes this long; past it, the demo reports where it got stuck. */
const DEADLINE_MS = 120_000

const TERMINAL = new Set(["Converged", "Reverted"])

const Seq = Schema.Struct({ rolloutId: Schema.String, event: Schema.Struct({ seq: Schema.Number }) })
const decodeSeq = Schema.decodeUnknownOption(Seq)

/**
 * The demo's view of the world.
 *
 * @since 0.1.0
 */
export interface DemoContext {
  readonly controlPlane: DevControlPlane
  readonly sandbox: SandboxLayout
  readonly watch: RolloutWatch
}

/**
 * A rollout on its way.
 *
 * @since 0.1.0
 */
export interface Published {
  readonly plan: RolloutPlan
  readonly rolloutId: string
  readonly startedAt: number
}

/**
 * Declares the rollout's probe (the agent reads it again when it starts soaking the
 * rollout) and publishes the rollout, which queues its dispatch.
 *
 * @since 0.1.0
 */
export const publish = Effect.fn("DemoRollout.publish")(function*(context: DemoContext, plan: RolloutPlan) {
  const { controlPlane, sandbox, watch } = context
  const fs = yield* FileSystem.FileSystem
  const progress = yield* Progress
  yield* fs.writeFileString(sandbox.healthChecksFile, `${JSON.stringify(plan.probes, null, 2)}\n`).pipe(Effect.orDie)
  const startedAt = yield* Clock.currentTimeMillis
  const { rolloutId } = yield* controlPlane.publishRollout({
    channel: CHANNEL,
    hosts: [{ hostname: HOSTNAME, targetClosure: plan.closure }],
    soakMinutes: plan.soakMinutes,
    onHealthFailure: "rollback-and-halt"
  })
  yield* watch.name(rolloutId, plan.label)
  const probe = plan.probes.web.command.join(" ")
  yield* progress.timed(
    `${plan.label.padEnd(6)} published ${rolloutId}: ${HOSTNAME} → ${plan.closure} ` +
      `(probe \`${probe}\`, soak ${Math.round(plan.soakMinutes * 60)} s, rollback-and-halt)`
  )
  return { plan, rolloutId, startedAt } satisfies Published
})

/**
 * Waits until the agent and the control plane agree the rollout is over (or the
 * deadline), and reports it.
 *
 * @since 0.1.0
 */
export const awaitRollout = Effect.fn("DemoRollout.await")(function*(
  context: DemoContext & { readonly agent: Reducer.ReducerService },
  published: Published
) {
  const { agent, controlPlane, sandbox, watch } = context
  const { plan, rolloutId, startedAt } = published
  const delivered = Effect.map(controlPlane.events, (events) =>
    events.flatMap((accepted) => {
      const envelope = decodeSeq(accepted.envelope)
      return !accepted.duplicate && Option.isSome(envelope) && envelope.value.rolloutId === rolloutId
        ? [envelope.value.event.seq]
        : []
    }))
  const records = Effect.all({
    controlPlane: Effect.map(controlPlane.hostStates, (states) => states.get(`${rolloutId}/${HOSTNAME}`)),
    agent: Effect.map(SubscriptionRef.get(agent.records), (states) => states.get(rolloutId)),
    seqs: delivered
  })
  // Over once both sides agree on a final state and every event the agent numbered arrived.
  const settled = (r: {
    readonly controlPlane: HostRolloutState | undefined
    readonly agent: HostRolloutState | undefined
    readonly seqs: ReadonlyArray<number>
  }) =>
    r.controlPlane !== undefined && TERMINAL.has(r.controlPlane.state) && r.agent?.state === r.controlPlane.state &&
    Math.max(0, ...r.seqs) >= r.agent.lastEventSeq
  const deadline = startedAt + DEADLINE_MS
  let last = yield* records
  while (!settled(last) && (yield* Clock.currentTimeMillis) < deadline) {
    yield* Effect.sleep("100 millis")
    last = yield* records
  }
  const durationMs = (yield* Clock.currentTimeMillis) - startedAt
  yield* watch.flush

  const seqs = yield* delivered
  const finalState = last.controlPlane?.state ?? "—"
  const problems: Array<string> = []
  if (!settled(last)) {
    problems.push(
      `not over after ${DEADLINE_MS / 1000} s: control plane ${finalState}, agent ${last.agent?.state ?? "—"}`
    )
  } else if (finalState !== plan.expected) {
    problems.push(`ended ${finalState}, expected ${plan.expected}`)
  }
  if (seqs.some((seq, i) => seq !== i + 1)) problems.push(`events not delivered in order: seqs ${seqs.join(", ")}`)
  problems.push(...yield* checkRunning(sandbox, plan))
  return {
    label: plan.label,
    rolloutId,
    closure: plan.closure,
    finalState,
    eventsDelivered: seqs.length,
    durationMs,
    problems
  } satisfies RolloutResult
})

/** The sandbox runs what it should: the link (and with Nix the profile) on `runningAfter`. */
const checkRunning = (
  sandbox: SandboxLayout,
  plan: RolloutPlan
): Effect.Effect<ReadonlyArray<string>, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const problems: Array<string> = []
    const link = yield* currentClosure(sandbox)
    if (link !== plan.runningAfter) problems.push(`run/current-system is on ${link}, expected ${plan.runningAfter}`)
    if (plan.checkProfile) {
      const profile = yield* profileClosure(sandbox)
      if (profile !== plan.runningAfter) {
        problems.push(`profiles/system is on ${profile}, expected ${plan.runningAfter}`)
      }
    }
    return problems
  })
