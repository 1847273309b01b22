/**
 * The running agent's status on a Unix socket in its state directory
 * (`<state-dir>/agent.sock`, mode 0600, so only root reads it): `GET /v1/status` answers
 * the live {@link StatusReport}. `nixfleet-agent status` asks it first.
 *
 * A socket that answers means another agent runs on the same state directory, which
 * would share its outbox: the layer then fails instead of taking the socket over. Whatever
 * else is at the path (a symlink, a file, a dead socket) is removed, never followed: the
 * state directory is the agent's own (checked at start), so nothing there is a user's.
 *
 * @since 0.1.0
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs/promises"
import { AgentConfig } from "../config/AgentConfig.js"
import { statusSocket } from "../config/stateFiles.js"
import { getOnly, serveHttp } from "../support/httpServer.js"
import { MAX_SOCKET_PATH, socketAnswers } from "../support/unixSocket.js"
import { AgentStatus } from "./AgentStatus.js"
import { StatusReportJson } from "./StatusReport.js"

/**
 * @since 0.1.0
 */
export { statusSocket }

/**
 * @since 0.1.0
 */
export class StatusServerError extends Data.TaggedError("StatusServerError")<{ readonly message: string }> {}

/**
 * Fails when an agent already serves this state directory; removes a socket a killed
 * agent left behind.
 *
 * @since 0.1.0
 */
export const claimStatusSocket = (stateDir: string): Effect.Effect<void, StatusServerError> =>
  Buffer.byteLength(statusSocket(stateDir)) > MAX_SOCKET_PATH ? Effect.void : claim(statusSocket(stateDir))

const claim = (path: string) =>
  Effect.gen(function*() {
    const found = yield* Effect.promise(() => Fs.lstat(path).catch(() => null))
    // Only a socket is asked: a symlink there is never followed to another socket (whose
    // answer would stop this agent), and anything but a socket is not an agent's.
    if (found?.isSocket() === true && (yield* socketAnswers(path))) {
      return yield* new StatusServerError({
        message: `another agent is running on this state directory (its status socket ${path} answers)`
      })
    }
    yield* Effect.tryPromise(() => Fs.rm(path, { force: true })).pipe(
      Effect.mapError((error) => new StatusServerError({ message: `cannot remove the stale socket ${path}: ${error}` }))
    )
  })

/**
 * @since 0.1.0
 */
export const layer: Layer.Layer<never, StatusServerError, AgentStatus | AgentConfig> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const config = yield* AgentConfig
    const status = yield* AgentStatus
    const path = statusSocket(config.stateDir)
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      return yield* Effect.logWarning(
        "state directory path too long for a Unix socket; status is served from files only"
      )
        .pipe(Effect.annotateLogs("socket", path))
    }
    yield* claim(path)
    const serve = yield* serveHttp(getOnly(
      "/v1/status",
      Effect.flatMap(status.report, Schema.encode(StatusReportJson)).pipe(
        Effect.map((body) => HttpServerResponse.text(body, { contentType: "application/json" })),
        Effect.orDie
      )
    ))
    yield* serve({ path }, { afterClose: Effect.promise(() => Fs.rm(path, { force: true })) }).pipe(
      Effect.catchTag(
        "ListenRefused",
        (error) => Effect.fail(new StatusServerError({ message: `cannot listen on ${path}: ${error.detail}` }))
      )
    )
    yield* Effect.tryPromise(() => Fs.chmod(path, 0o600)).pipe(
      Effect.mapError((error) => new StatusServerError({ message: `cannot restrict ${path} to its owner: ${error}` }))
    )
    yield* Effect.logDebug("status served").pipe(Effect.annotateLogs("socket", path))
  })
)
