/**
 * `nixfleet-agent status`: what this host's agent knows. It asks the running agent on its
 * status socket; when nothing answers it reads the state directory (the last
 * `status.json`, the outbox opened read-only, the current-system link) and changes
 * nothing there.
 *
 * Exit statuses follow the LSB `status` convention: 0 the agent answered, 3 it is not
 * running (the report comes from its files), 4 there is no agent state to report on.
 *
 * @internal
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs/promises"
import * as Http from "node:http"
import * as Path from "node:path"
import * as Settings from "../config/settings.js"
import { DATABASE_FILE, statusFile, statusSocket } from "../config/stateFiles.js"
import { ExitStatus } from "../node/ExitStatus.js"
import { RECENT_DEAD_LETTERS, type StatusReport, StatusReportJson } from "../status/StatusReport.js"
import { currentClosure } from "../support/closureLinks.js"
import { printable, printableJson } from "../support/terminalText.js"
import { VERSION } from "../support/version.js"
import { optionalSettingOption, pipelineOptions, strict } from "./PipelineOptions.js"
import { renderStatus } from "./StatusTable.js"

/**
 * @internal
 */
export const EXIT_NOT_RUNNING = 3

/**
 * @internal
 */
export const EXIT_UNKNOWN = 4

/** The live agent answers at once; a socket that hangs is as good as no agent. */
const ASK_TIMEOUT_MS = 2_000

/** A report is a few KiB; anything far larger is not one. */
const MAX_REPORT_BYTES = 4 * 1024 * 1024

const statusOptions = {
  stateDir: pipelineOptions.stateDir,
  currentSystemPath: optionalSettingOption(
    Settings.currentSystemPath,
    strict,
    `${Settings.currentSystemPath.description}, when the agent does not answer ` +
      `(default: the one the agent last reported, else ${Settings.currentSystemPath.fallback})`
  ),
  json: Options.boolean("json").pipe(Options.withDescription("print the report as one JSON object"))
}

/** The running agent's report, or why there is none. */
const askAgent = (socketPath: string) =>
  Effect.async<string, string>((resume) => {
    const request = Http.get({ socketPath, path: "/v1/status", timeout: ASK_TIMEOUT_MS }, (response) => {
      const chunks: Array<Buffer> = []
      let size = 0
      response.on("data", (chunk: Buffer) => {
        size += chunk.length
        if (size > MAX_REPORT_BYTES) {
          request.destroy()
          resume(Effect.fail(`the status socket sent more than ${MAX_REPORT_BYTES} bytes`))
        } else chunks.push(chunk)
      })
      response.on("end", () =>
        resume(
          response.statusCode === 200
            ? Effect.succeed(Buffer.concat(chunks).toString("utf8"))
            : Effect.fail(`the status socket answered HTTP ${response.statusCode}`)
        ))
      response.on("error", (error) => resume(Effect.fail(error.message)))
    })
    request.on("timeout", () => request.destroy(new Error(`no answer within ${ASK_TIMEOUT_MS} ms`)))
    request.on("error", (error) => resume(Effect.fail(error.message)))
    return Effect.sync(() => request.destroy())
  }).pipe(
    Effect.flatMap((body) =>
      Schema.decode(StatusReportJson)(body).pipe(
        Effect.mapError((error) =>
          `the status socket's answer is not a report: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
        )
      )
    )
  )

const exists = (file: string) => Effect.promise(() => Fs.access(file).then(() => true, () => false))

/** The last report the agent wrote, or a note on why it cannot be used. */
const lastWritten = (stateDir: string) =>
  Effect.gen(function*() {
    const file = statusFile(stateDir)
    if (!(yield* exists(file))) return Either.left(`${file} does not exist (the agent never reported here)`)
    return yield* Effect.tryPromise(() => Fs.readFile(file, "utf8")).pipe(
      Effect.mapError((error) => `cannot read ${file}: ${error.error}`),
      Effect.flatMap((body) =>
        Schema.decode(StatusReportJson)(body).pipe(
          Effect.mapError((error) =>
            `${file} is not a status report: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
          )
        )
      ),
      Effect.either
    )
  })

/** The report from the state directory alone. */
const fromStateDir = (stateDir: string, currentSystemPathOption: Option.Option<string>, live: string) =>
  Effect.gen(function*() {
    const notes: Array<string> = [`the agent did not answer on ${statusSocket(stateDir)}: ${live}`]
    const written = yield* lastWritten(stateDir)
    if (Either.isLeft(written)) notes.push(written.left)
    const last = Either.getOrNull(written)
    const outboxFile = Path.join(stateDir, DATABASE_FILE)
    let outbox: StatusReport["outbox"] = null
    if (yield* exists(outboxFile)) {
      // SQLite is loaded only to read an outbox that is there.
      const { readOutboxSummary } = yield* Effect.promise(() => import("../outbox/readOnly.js"))
      const read = yield* Effect.either(readOutboxSummary(outboxFile, RECENT_DEAD_LETTERS))
      if (Either.isLeft(read)) notes.push(read.left.message)
      else outbox = read.right
    }
    const now = new Date(yield* Clock.currentTimeMillis)
    const currentSystemPath = Option.getOrElse(
      currentSystemPathOption,
      () => last?.currentSystemPath ?? Settings.currentSystemPath.fallback
    )
    const report: StatusReport = {
      source: "state-dir",
      agent: {
        version: last?.agent.version ?? VERSION,
        running: false,
        pid: null,
        startedAt: last?.agent.startedAt ?? null,
        lifecycle: last?.agent.lifecycle ?? "stopped",
        phase: last === null
          ? "not running"
          : last.agent.lifecycle === "stopped"
          ? `not running (stopped at ${last.agent.reportedAt.toISOString()})`
          : `not running (last report ${last.agent.reportedAt.toISOString()} by pid ${last.agent.pid}, ${last.agent.phase}; it did not stop cleanly)`,
        reportedAt: now
      },
      machineId: last?.machineId ?? null,
      controlPlaneUrl: last?.controlPlaneUrl ?? null,
      stateDir,
      currentSystemPath,
      currentClosure: yield* currentClosure(currentSystemPath).pipe(Effect.provide(NodeFileSystem.layer)),
      rollouts: last?.rollouts ?? [],
      outbox,
      // What the agent last said about its fleet and its settings still explains a hold.
      ...(last?.fleetRefused === undefined ? {} : { fleetRefused: last.fleetRefused }),
      ...(last?.settingWarnings === undefined ? {} : { settingWarnings: last.settingWarnings }),
      ...(last?.workerFault === undefined ? {} : { workerFault: last.workerFault }),
      lastError: last?.lastError ?? null,
      lastWarning: last?.lastWarning ?? null
    }
    return { report, notes }
  })

/**
 * @internal
 */
export const statusCommand = Command.make("status", statusOptions, (options) =>
  Effect.gen(function*() {
    const stateDir = Path.resolve(options.stateDir)
    const setStatus = (code: number) => Effect.flatMap(ExitStatus, (status) => Ref.set(status, code))
    const print = (report: StatusReport, notes: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const out = options.json
          ? `${printableJson(yield* Schema.encode(StatusReportJson)(report))}\n`
          : renderStatus(report, notes)
        yield* Effect.sync(() => process.stdout.write(out))
      }).pipe(Effect.orDie)

    const live = yield* Effect.either(askAgent(statusSocket(stateDir)))
    if (Either.isRight(live)) {
      yield* print(live.right, [])
      return yield* setStatus(0)
    }
    if (!(yield* exists(stateDir))) {
      yield* Effect.sync(() =>
        process.stderr.write(`nixfleet-agent: no agent state in ${stateDir} (is --state-dir right?)\n`)
      )
      return yield* setStatus(EXIT_UNKNOWN)
    }
    const { notes, report } = yield* fromStateDir(stateDir, options.currentSystemPath, live.left)
    yield* print(report, notes)
    if (options.json) {
      yield* Effect.sync(() => notes.forEach((note) => process.stderr.write(`nixfleet-agent: ${printable(note)}\n`)))
    }
    yield* setStatus(EXIT_NOT_RUNNING)
  })).pipe(Command.withDescription("what this host's agent knows: closure, rollouts, outbox, last error"))
