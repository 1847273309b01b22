/**
 * `nixfleet-agent export-queue`: the way back to the reference (Rust) agent. It writes the
 * events this agent has not delivered yet as the reference agent's queue files
 * (`<state-dir>/outbound-queue/*.json` unless `--to` says otherwise), which the reference
 * agent delivers when it starts, and removes them from the outbox. Dead letters stay: the
 * control plane refused them for good.
 *
 * It refuses to run while an agent serves the state directory (its status socket
 * answers), and holds that socket while it works, so that an agent started meanwhile
 * (systemd restarting the unit) refuses to start instead of delivering, or importing,
 * what is being exported.
 *
 * Exit statuses: 0 the events were written (or there were none); 64 bad arguments; 75
 * (EX_TEMPFAIL) an agent runs on this state directory: stop it and run the command again;
 * 78 (EX_CONFIG) the state directory or its outbox cannot be used, the files cannot be
 * written, or some events could not be exported (they stay in the outbox).
 *
 * @internal
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Path from "node:path"
import { DATABASE_FILE, statusSocket } from "../config/stateFiles.js"
import { ExitStatus } from "../node/ExitStatus.js"
import { loggerLayer } from "../node/Logging.js"
import { MAX_SOCKET_PATH, socketAnswers } from "../support/unixSocket.js"
import { pipelineOptions } from "./PipelineOptions.js"

/**
 * An agent runs on the state directory (EX_TEMPFAIL: stop it, then run again).
 *
 * @internal
 */
export const EXIT_AGENT_RUNNING = 75

/**
 * The state directory or its outbox cannot be used (EX_CONFIG).
 *
 * @internal
 */
export const EXIT_STATE_UNUSABLE = 78

/** The reference agent's queue directory under the state directory. */
const LEGACY_QUEUE_DIRECTORY = "outbound-queue"

class AgentRunning extends Data.TaggedError("AgentRunning")<{ readonly message: string }> {}

class StateUnusable extends Data.TaggedError("StateUnusable")<{ readonly message: string }> {}

const exportOptions = {
  stateDir: pipelineOptions.stateDir,
  to: Options.text("to").pipe(
    Options.optional,
    Options.withDescription(
      `where to write the files (default: <state-dir>/${LEGACY_QUEUE_DIRECTORY}, where the reference agent reads them)`
    )
  ),
  logFormat: pipelineOptions.logFormat
}

const exists = (file: string) => Effect.promise(() => Fs.access(file).then(() => true, () => false))

const running = (path: string) =>
  new AgentRunning({
    message: `an agent is running on this state directory (its status socket ${path} answers); ` +
      "stop it first (systemctl stop nixfleet-agent), then run export-queue again"
  })

/**
 * Holds the status socket for the rest of the scope: an agent that starts meanwhile finds
 * it answering and refuses to start. Every connection is closed at once.
 */
const holdStatusSocket = (path: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      // An agent does not serve a longer path either.
      if (Buffer.byteLength(path) > MAX_SOCKET_PATH) return null
      if (yield* socketAnswers(path)) return yield* running(path)
      yield* Effect.tryPromise(() => Fs.rm(path, { force: true })).pipe(
        Effect.mapError((error) => new StateUnusable({ message: `cannot remove the stale socket ${path}: ${error}` }))
      )
      const server = Net.createServer((connection) => connection.destroy())
      yield* Effect.async<void, AgentRunning | StateUnusable>((resume) => {
        server.once("error", (error: NodeJS.ErrnoException) =>
          resume(Effect.fail(
            error.code === "EADDRINUSE"
              ? running(path)
              : new StateUnusable({ message: `cannot hold the status socket ${path}: ${error.message}` })
          )))
        server.listen({ path }, () => resume(Effect.void))
      })
      yield* Effect.promise(() => Fs.chmod(path, 0o600).catch(() => undefined))
      return server
    }),
    (server) =>
      server === null ? Effect.void : Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      }).pipe(Effect.zipRight(Effect.promise(() => Fs.rm(path, { force: true }).catch(() => undefined))))
  )

/** The export itself; SQLite is loaded only once there is an outbox to read. */
const exportQueue = (stateDir: string, directory: string) =>
  Effect.gen(function*() {
    if (!(yield* exists(stateDir))) {
      return yield* new StateUnusable({ message: `no agent state in ${stateDir} (is --state-dir right?)` })
    }
    yield* holdStatusSocket(statusSocket(stateDir))
    const filename = Path.join(stateDir, DATABASE_FILE)
    if (!(yield* exists(filename))) return { directory, exported: 0, kept: 0, deadLetters: 0 }
    const { exportOutboxFile } = yield* Effect.promise(() => import("../outbox/legacyExport.js"))
    return yield* exportOutboxFile(filename, directory)
  }).pipe(
    Effect.scoped,
    Effect.catchTag("OutboxError", (error) => Effect.fail(new StateUnusable({ message: error.message })))
  )

/**
 * @internal
 */
export const exportQueueCommand = Command.make("export-queue", exportOptions, (options) =>
  Effect.gen(function*() {
    const stateDir = Path.resolve(options.stateDir)
    const directory = Option.match(options.to, {
      onNone: () => Path.join(stateDir, LEGACY_QUEUE_DIRECTORY),
      onSome: (to) => Path.resolve(to)
    })
    const setStatus = (code: number) => Effect.flatMap(ExitStatus, (status) => Ref.set(status, code))
    const refuse = (message: string, code: number) =>
      Effect.zipRight(
        Effect.sync(() => process.stderr.write(`nixfleet-agent: ${message.replace(/\s+/g, " ")}\n`)),
        setStatus(code)
      )
    const result = yield* Effect.either(exportQueue(stateDir, directory))
    if (result._tag === "Left") {
      return yield* refuse(
        result.left.message,
        result.left._tag === "AgentRunning" ? EXIT_AGENT_RUNNING : EXIT_STATE_UNUSABLE
      )
    }
    const summary = result.right
    yield* Effect.sync(() =>
      process.stdout.write(
        `exported ${summary.exported} events to ${summary.directory}` +
          (summary.deadLetters === 0 ? "" : `; ${summary.deadLetters} dead letters stay in the outbox`) + "\n"
      )
    )
    if (summary.kept > 0) {
      return yield* refuse(
        `${summary.kept} events could not be written in the reference agent's format; they stay in the outbox`,
        EXIT_STATE_UNUSABLE
      )
    }
    yield* setStatus(0)
  }).pipe(Effect.provide(loggerLayer(options.logFormat)))).pipe(
    Command.withDescription(
      "write the undelivered events as the reference agent's outbound-queue files (to go back to the Rust agent)"
    )
  )
