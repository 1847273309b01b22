/**
 * The agent's report on itself (`nixfleet-agent status`): built live from the reducer's
 * records, the outbox and the status board, and kept in `<state-dir>/status.json` so that
 * `status` can say what the agent last knew when it is not running.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { HostRolloutState } from "@nixfleet/state-machine"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AgentConfig } from "../config/AgentConfig.js"
import { statusFile } from "../config/stateFiles.js"
import { announceGates, gatesOn } from "../config/testGates.js"
import { Outbox } from "../outbox/Outbox.js"
import { Reducer } from "../runtime/Reducer.js"
import { Shutdown } from "../runtime/Shutdown.js"
import { StatusBoard } from "../runtime/StatusBoard.js"
import { forkWorker } from "../runtime/Workers.js"
import { writeFileAtomicEffect } from "../support/atomicFile.js"
import { currentClosure } from "../support/closureLinks.js"
import { describeError } from "../support/describeError.js"
import { VERSION } from "../support/version.js"
import {
  describePhase,
  type Lifecycle,
  type OutboxSummary,
  RECENT_DEAD_LETTERS,
  type RolloutSummary,
  type StatusReport,
  StatusReportJson,
  summariseOutbox,
  summariseRollout
} from "./StatusReport.js"

/**
 * The file the running agent keeps its last report in.
 *
 * @since 0.1.0
 */
export { statusFile }

/** The file is rewritten at most this often, and only when the report changed. */
const PERSIST_INTERVAL = "5 seconds"

/**
 * @since 0.1.0
 */
export interface AgentStatusService {
  /** The report as of now. */
  readonly report: Effect.Effect<StatusReport>
  /** The phase line, each time it changes (first the current one). */
  readonly phase: Stream.Stream<string>
}

const summaries = (records: ReadonlyMap<string, HostRolloutState>): Array<RolloutSummary> =>
  [...records.values()].map(summariseRollout).sort((a, b) => a.dispatchedAt.getTime() - b.dispatchedAt.getTime())

/**
 * @since 0.1.0
 */
export class AgentStatus extends Context.Tag("@nixfleet/agent/AgentStatus")<AgentStatus, AgentStatusService>() {
  static readonly layer: Layer.Layer<
    AgentStatus,
    ConfigError.ConfigError,
    StatusBoard | Reducer | Outbox | AgentConfig | Shutdown | FileSystem.FileSystem
  > = Layer.scoped(
    AgentStatus,
    Effect.gen(function*() {
      const board = yield* StatusBoard
      const reducer = yield* Reducer
      const outbox = yield* Outbox
      const config = yield* AgentConfig
      const shutdown = yield* Shutdown
      const fs = yield* FileSystem.FileSystem
      // A gate value that is neither true nor false stops the start here (exit 78, naming the key).
      const gates = yield* gatesOn
      yield* announceGates(gates)
      // Once per start, here where status keeps them: the agent runs on with the defaults.
      for (const warning of config.settingWarnings) {
        yield* Effect.logError(`setting ignored: ${warning.message}`).pipe(
          Effect.annotateLogs({ setting: warning.setting, value: warning.value })
        )
      }

      const outboxSummary: Effect.Effect<OutboxSummary | null> = Effect.all([
        outbox.stats,
        outbox.head(1),
        outbox.deadLetters(RECENT_DEAD_LETTERS)
      ]).pipe(
        Effect.map(([stats, head, dead]) =>
          summariseOutbox(
            {
              pending: stats.pending,
              nonDurable: stats.pending - stats.pendingDurable,
              deadLetters: stats.deadLetters
            },
            head[0]?.createdAt ?? null,
            dead
          )
        ),
        // The outbox logs its own failures; the report says it could not be read.
        Effect.orElseSucceed(() => null)
      )

      const report = (lifecycle: Lifecycle) =>
        Effect.gen(function*() {
          const rollouts = summaries(yield* SubscriptionRef.get(reducer.records))
          const problems = yield* Ref.get(board.problems)
          const deliveryBlocked = yield* Ref.get(board.deliveryBlocked)
          const held = yield* Ref.get(reducer.diskBacklog)
          const fleetRefused = yield* Ref.get(board.fleetRefused)
          const metricsListen = yield* Ref.get(board.metricsListen)
          const workerFault = yield* Ref.get(board.workerFault)
          return {
            source: "live",
            agent: {
              version: VERSION,
              running: lifecycle !== "stopped",
              pid: lifecycle === "stopped" ? null : process.pid,
              startedAt: board.startedAt,
              lifecycle,
              phase: describePhase(lifecycle, rollouts),
              reportedAt: new Date(yield* Effect.clockWith((clock) => clock.currentTimeMillis))
            },
            machineId: config.machineId,
            controlPlaneUrl: config.controlPlaneUrl,
            stateDir: config.stateDir,
            currentSystemPath: config.currentSystemPath,
            currentClosure: yield* currentClosure(config.currentSystemPath).pipe(
              Effect.provideService(FileSystem.FileSystem, fs)
            ),
            rollouts,
            outbox: yield* outboxSummary,
            ...(deliveryBlocked === null ? {} : { deliveryBlocked }),
            ...(held.since === null ? {} : {
              waitingForDisk: {
                events: held.events,
                activations: held.activations,
                since: held.since,
                error: held.error ?? ""
              }
            }),
            ...(fleetRefused === null ? {} : { fleetRefused }),
            ...(config.settingWarnings.length === 0 ? {} : { settingWarnings: config.settingWarnings }),
            ...(gates.length === 0 ? {} : { testGates: gates }),
            ...(metricsListen === null ? {} : { metricsListen }),
            ...(workerFault === null ? {} : { workerFault }),
            lastError: problems.lastError,
            lastWarning: problems.lastWarning
          } satisfies StatusReport
        })

      const phase = Stream.zipLatest(board.lifecycle.changes, reducer.records.changes).pipe(
        Stream.map(([lifecycle, records]) => describePhase(lifecycle, summaries(records))),
        Stream.changes
      )

      // What was last written, without the time of the report (which always changes).
      const written = yield* Ref.make("")
      const persist = (lifecycle: Lifecycle) =>
        Effect.gen(function*() {
          const current = yield* report(lifecycle)
          const text = yield* Schema.encode(StatusReportJson)(current)
          const comparable = yield* Schema.encode(StatusReportJson)({
            ...current,
            agent: { ...current.agent, reportedAt: new Date(0) }
          })
          if (comparable === (yield* Ref.get(written))) return
          yield* writeFileAtomicEffect(statusFile(config.stateDir), `${text}\n`, 0o600)
          yield* Ref.set(written, comparable)
        }).pipe(
          Effect.catchAll((error) =>
            Effect.logWarning("cannot write the status file").pipe(Effect.annotateLogs("error", describeError(error)))
          )
        )

      yield* Deferred.await(shutdown).pipe(
        Effect.zipRight(SubscriptionRef.set(board.lifecycle, "stopping")),
        (effect) => forkWorker("AgentStatus.lifecycle", effect)
      )
      const writer = yield* Stream.merge(phase, Stream.tick(PERSIST_INTERVAL)).pipe(
        Stream.throttle({ cost: () => 1, units: 1, duration: "1 second", strategy: "enforce" }),
        Stream.runForEach(() => Effect.flatMap(SubscriptionRef.get(board.lifecycle), persist)),
        (effect) => forkWorker("AgentStatus.writer", effect)
      )
      // The last report of a clean stop says so; after a crash the file keeps its pid. The
      // writer is stopped first, its write in flight finished: finalizers run before the
      // scope interrupts its forks, and a late "stopping" write would land over "stopped".
      yield* Effect.addFinalizer(() => Effect.zipRight(Fiber.interrupt(writer), persist("stopped")))

      return {
        report: Effect.flatMap(SubscriptionRef.get(board.lifecycle), report),
        phase
      }
    })
  )
}

/**
 * Marks the agent running: boot recovery is done and every worker is started.
 *
 * @since 0.1.0
 */
export const markRunning: Effect.Effect<void, never, StatusBoard> = Effect.flatMap(
  StatusBoard,
  (board) => SubscriptionRef.set(board.lifecycle, "running")
)

/**
 * The agent's report on itself, and `status.json`: `AgentStatus.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = AgentStatus.layer
