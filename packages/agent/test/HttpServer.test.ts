/**
 * The HTTP server behind the status socket and `/metrics` (support/httpServer.ts), on real
 * sockets: its one route, a stop that does not wait for a request in flight, and a refused
 * listen that says why and leaves the address free for the next attempt.
 */
import { HttpServerResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Path from "node:path"
import { getOnly, serveHttp } from "../src/support/httpServer.js"
import { unusedPort } from "./support/ports.js"
import { tempDirectory } from "./support/processes.js"

interface Answer {
  readonly status: number | undefined
  readonly contentType: string | undefined
  readonly body: string
}

/** One request on a fresh connection. */
const request = (
  where: { readonly socketPath: string } | { readonly host: string; readonly port: number },
  path: string,
  method = "GET"
) =>
  Effect.async<Answer, Error>((resume) => {
    const sent = Http.request({ ...where, path, method, agent: false }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => body += chunk)
      response.on("end", () =>
        resume(Effect.succeed({ status: response.statusCode, contentType: response.headers["content-type"], body })))
      response.on("error", (error) =>
        resume(Effect.fail(error)))
    })
    sent.on("error", (error) => resume(Effect.fail(error)))
    sent.end()
    return Effect.sync(() => sent.destroy())
  })

describe("serveHttp", () => {
  it.scopedLive("answers GET on its one path; another path is 404, another method 405", () =>
    Effect.gen(function*() {
      const socketPath = Path.join(yield* tempDirectory, "test.sock")
      const serve = yield* serveHttp(getOnly("/v1/thing", Effect.succeed(HttpServerResponse.text("thing\n"))))
      yield* serve({ path: socketPath })
      expect(yield* request({ socketPath }, "/v1/thing")).toStrictEqual({
        status: 200,
        contentType: "text/plain",
        body: "thing\n"
      })
      expect(yield* request({ socketPath }, "/v1/other")).toStrictEqual({
        status: 404,
        contentType: "text/plain",
        body: "not found\n"
      })
      expect(yield* request({ socketPath }, "/v1/thing", "POST")).toStrictEqual({
        status: 405,
        contentType: "text/plain",
        body: "method not allowed\n"
      })
    }))

  it.scopedLive("the scope's end does not wait for a request in flight, and runs afterClose once closed", () =>
    Effect.gen(function*() {
      const socketPath = Path.join(yield* tempDirectory, "test.sock")
      const started = yield* Deferred.make<void>()
      const serve = yield* serveHttp(
        getOnly("/slow", Effect.zipRight(Deferred.succeed(started, undefined), Effect.never))
      )
      const held: { server?: Http.Server; listeningAfterClose?: boolean | undefined } = {}
      const scope = yield* Scope.make()
      held.server = yield* serve({ path: socketPath }, {
        afterClose: Effect.sync(() => {
          held.listeningAfterClose = held.server?.listening
        })
      }).pipe(Scope.extend(scope))
      const answer = yield* Effect.fork(Effect.either(request({ socketPath }, "/slow")))
      yield* Deferred.await(started)
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("5 seconds"), Effect.either)
      expect(closed._tag, "the server's close waited for the request in flight").toBe("Right")
      expect(held.listeningAfterClose).toBe(false)
      const answered = yield* Fiber.join(answer)
      expect(answered._tag, "the connection was closed under the request").toBe("Left")
    }))

  it.scopedLive("a refused listen is ListenRefused with the system's code; the next attempt gets the freed port", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const blocker = yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          const server = Net.createServer().listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const serve = yield* serveHttp(getOnly("/metrics", Effect.succeed(HttpServerResponse.text("up 1\n"))))
      const refused = yield* Effect.flip(serve({ host: "127.0.0.1", port }))
      expect(refused._tag).toBe("ListenRefused")
      expect(refused.code).toBe("EADDRINUSE")
      expect(refused.detail).toContain("EADDRINUSE")
      yield* Effect.async<void>((resume) => void blocker.close(() => resume(Effect.void)))
      yield* serve({ host: "127.0.0.1", port })
      expect((yield* request({ host: "127.0.0.1", port }, "/metrics")).body).toBe("up 1\n")
    }))
})
