/**
 * A Node HTTP server around an `HttpApp`, for the agent's two local endpoints (the status
 * socket and `/metrics`): one route, and a server that lives for a scope.
 *
 * Not `NodeHttpServer.layer`: its release waits for open connections (a client keeping
 * one alive would hold the agent's stop) and it attaches a WebSocket upgrade handler.
 *
 * @internal
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import type * as Net from "node:net"
import { errnoOf } from "./describeError.js"

/**
 * A refused listen: the system's code (EADDRINUSE, EACCES, EADDRNOTAVAIL, …; `unknown`
 * when it gives none) and its text.
 *
 * @internal
 */
export class ListenRefused extends Data.TaggedError("ListenRefused")<{
  readonly code: string
  readonly detail: string
}> {}

/**
 * An app with one route, `GET path`: any other path is 404, another method 405.
 *
 * @internal
 */
export const getOnly = <E, R>(
  path: string,
  respond: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
): HttpApp.Default<E, R> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    if (request.url !== path) return Effect.succeed(HttpServerResponse.text("not found\n", { status: 404 }))
    if (request.method !== "GET") {
      return Effect.succeed(HttpServerResponse.text("method not allowed\n", { status: 405 }))
    }
    return respond
  })

/**
 * Listens on `listen` with a fresh server for the current scope. The scope's end closes the
 * server and every connection still open, then runs `afterClose`.
 *
 * @internal
 */
export type ServeHttp = (
  listen: Net.ListenOptions,
  options?: { readonly afterClose?: Effect.Effect<void> }
) => Effect.Effect<Http.Server, ListenRefused, Scope.Scope>

/**
 * How to serve `app`, its handler made once, here: requests run in the caller's context
 * (its logger and annotations), not in that of whichever fiber listens (a retry's).
 *
 * @internal
 */
export const serveHttp = <E, R>(
  app: HttpApp.Default<E, R>
): Effect.Effect<ServeHttp, never, Exclude<R, HttpServerRequest.HttpServerRequest | Scope.Scope>> =>
  Effect.map(NodeHttpServer.makeHandler(app), (handler) => (listen, options) =>
    Effect.acquireRelease(
      // A fresh server each time: one whose listen failed is left behind.
      Effect.async<Http.Server, ListenRefused>((resume) => {
        const server = Http.createServer(handler)
        // Left in place once listening: a later error then has a listener and does not crash the process.
        server.once("error", (error) => {
          server.close()
          resume(Effect.fail(new ListenRefused({ code: errnoOf(error) ?? "unknown", detail: error.message })))
        })
        server.listen(listen, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        }).pipe(Effect.zipRight(options?.afterClose ?? Effect.void))
    ))
