/**
 * The agent-facing HTTP API of spec §2 and its middleware, in the real control plane's
 * order: readiness gate → protocol version → (authenticated routes) client identity →
 * handler. `/healthz` and the operator API sit outside all of it.
 *
 * @since 0.1.0
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { AgentEventEnvelope, HeartbeatRequest, HeartbeatResponse, RolloutId } from "@nixfleet/proto"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Tls from "node:tls"
import { machineIdFromCommonName } from "./Certificates.js"
import * as Enrollment from "./Enrollment.js"
import { faultResponse, type Route } from "./Faults.js"
import { decodeJsonBody, errorResponse, type Refusal } from "./internal/http.js"
import type { RecordedRequest } from "./State.js"

/**
 * The exact body of the readiness gate's 503; the agent's enrollment retry looks for
 * `control plane not ready` in it.
 *
 * @since 0.1.0
 */
export const NOT_READY_BODY = "{\"error\":\"control plane not ready\",\"reason\":\"awaiting first signed artifact\"}"

/**
 * The protocol major this control plane speaks.
 *
 * @since 0.1.0
 */
export const PROTOCOL_MAJOR = 1

/**
 * A dev-only stand-in for the client certificate over plain HTTP: the machine id the
 * request speaks for. Ignored with TLS, where only the certificate counts.
 *
 * @since 0.1.0
 */
export const MACHINE_ID_HEADER = "x-nixfleet-machine-id"

/** The longest dispatch long-poll, and the default one. */
const MAX_WAIT_SECS = 60
const U64_MAX = 18446744073709551615n
const U32_MAX = 4294967295n

/**
 * Who a request speaks for: the machine id of a verified client certificate (TLS), the one
 * declared in {@link MACHINE_ID_HEADER} (plain HTTP), or nobody (plain HTTP without the
 * header: heartbeat and events then trust the body's hostname, and a dispatch poll is
 * served for the host of the last such heartbeat or event).
 *
 * @since 0.1.0
 */
export type Identity =
  | { readonly _tag: "Certificate"; readonly machineId: string }
  | { readonly _tag: "Declared"; readonly machineId: string }
  | { readonly _tag: "Anonymous" }

/**
 * What the routes need to know.
 *
 * @since 0.1.0
 */
export interface RoutesConfig extends Enrollment.EnrollmentConfig {
  readonly tls: boolean
  readonly cnSuffix: string
  readonly strictProtocol: boolean
  /** Answers `/v1/operator/*`, which bypasses every agent-facing check. */
  readonly operator: (
    request: HttpServerRequest.HttpServerRequest,
    path: string
  ) => Effect.Effect<HttpServerResponse.HttpServerResponse>
}

/** Rust's `str::parse` for unsigned integers: an optional `+`, then decimal digits. */
const parseUnsigned = (text: string, max: bigint): bigint | null => {
  if (!/^\+?[0-9]+$/.test(text)) return null
  const value = BigInt(text)
  return value <= max ? value : null
}

/**
 * The `X-Nixfleet-Protocol` check: `null` when the request may proceed, else the refusal
 * (400 for a value that is not a base-10 u32, or for an absent header when strict; 426 for
 * any other major).
 *
 * @since 0.1.0
 */
export const checkProtocol = (
  header: string | undefined,
  strict: boolean
): HttpServerResponse.HttpServerResponse | null => {
  if (header === undefined) {
    return strict ? errorResponse(400, "missing X-Nixfleet-Protocol header") : null
  }
  const major = parseUnsigned(header, U32_MAX)
  if (major === null) return errorResponse(400, "invalid X-Nixfleet-Protocol header")
  if (major !== BigInt(PROTOCOL_MAJOR)) {
    return errorResponse(426, "unsupported protocol major version", { supported: String(PROTOCOL_MAJOR) })
  }
  return null
}

/**
 * The long-poll window in seconds for a `wait` query value: 60 when absent, clamped to
 * 60, `null` when it is not a u64 (answered 400).
 *
 * @since 0.1.0
 */
export const parseWait = (value: string | null): number | null => {
  if (value === null) return MAX_WAIT_SECS
  const secs = parseUnsigned(value, U64_MAX)
  return secs === null ? null : Number(secs < BigInt(MAX_WAIT_SECS) ? secs : BigInt(MAX_WAIT_SECS))
}

/** The first CN of a peer certificate; Node gives an array when there are several. */
const commonNameOf = (certificate: Tls.PeerCertificate): string | null => {
  const subject: unknown = certificate.subject
  if (typeof subject !== "object" || subject === null || !("CN" in subject)) return null
  const cn: unknown = subject.CN
  if (typeof cn === "string") return cn
  return Array.isArray(cn) && typeof cn[0] === "string" ? cn[0] : null
}

/** The client certificate of a TLS connection, when the fleet CA verified it. */
const verifiedPeer = (request: HttpServerRequest.HttpServerRequest): Tls.PeerCertificate | null => {
  const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
  return socket instanceof Tls.TLSSocket && socket.authorized ? socket.getPeerCertificate() : null
}

/** `null` for a request that must be refused with 401 (TLS without a verified certificate). */
const identify = (request: HttpServerRequest.HttpServerRequest, config: RoutesConfig): Identity | null => {
  if (config.tls) {
    const peer = verifiedPeer(request)
    if (peer === null) return null
    const cn = commonNameOf(peer)
    return cn === null ? null : { _tag: "Certificate", machineId: machineIdFromCommonName(cn, config.cnSuffix) }
  }
  const declared = request.headers[MACHINE_ID_HEADER]
  return declared === undefined ? { _tag: "Anonymous" } : { _tag: "Declared", machineId: declared }
}

/** 403 when the body's hostname is not the identity's machine id. */
const hostnameMismatch = (identity: Identity, hostname: string): HttpServerResponse.HttpServerResponse | null =>
  identity._tag !== "Anonymous" && identity.machineId !== hostname
    ? errorResponse(403, "hostname does not match the client certificate", {
      hostname,
      machineId: identity.machineId
    })
    : null

const now = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis))

const heartbeat = Effect.fn("DevControlPlane.heartbeat")(
  function*(config: RoutesConfig, request: HttpServerRequest.HttpServerRequest, identity: Identity) {
    const { value } = yield* decodeJsonBody(request, HeartbeatRequest, { requireContentType: true })
    const mismatch = hostnameMismatch(identity, value.hostname)
    if (mismatch !== null) return mismatch
    if (identity._tag === "Anonymous") config.state.noteAnonymousHost(value.hostname)
    const outcome = config.state.heartbeat(value)
    const body = yield* Schema.encode(HeartbeatResponse)(outcome.response).pipe(Effect.orDie)
    return HttpServerResponse.unsafeJson(body, {
      headers: outcome.replayFrom === null ? {} : { "x-nixfleet-replay-from": String(outcome.replayFrom) }
    })
  }
)

const dispatch = Effect.fn("DevControlPlane.dispatch")(
  function*(config: RoutesConfig, query: URLSearchParams, identity: Identity) {
    const wait = parseWait(query.get("wait"))
    if (wait === null) return errorResponse(400, "invalid `wait` query parameter")
    const host = identity._tag === "Anonymous" ? null : identity.machineId
    const deadline = (yield* Clock.currentTimeMillis) + wait * 1000
    while (true) {
      const poll = config.state.poll(host)
      if (poll._tag === "Deliver") return HttpServerResponse.unsafeJson(poll.dispatch)
      const remaining = deadline - (yield* Clock.currentTimeMillis)
      if (remaining <= 0) return HttpServerResponse.empty({ status: 204 })
      yield* Deferred.await(poll.wake).pipe(Effect.timeoutOption(Duration.millis(remaining)))
    }
  }
)

const events = Effect.fn("DevControlPlane.events")(
  function*(config: RoutesConfig, request: HttpServerRequest.HttpServerRequest, identity: Identity) {
    const { json, value } = yield* decodeJsonBody(request, AgentEventEnvelope, { requireContentType: true })
    const mismatch = hostnameMismatch(identity, value.hostname)
    if (mismatch !== null) return mismatch
    if (identity._tag === "Anonymous") config.state.noteAnonymousHost(value.hostname)
    const outcome = config.state.ingest(value, json, yield* now)
    yield* Effect.logDebug("event ingested").pipe(
      Effect.annotateLogs({
        hostname: value.hostname,
        rolloutId: value.rolloutId,
        kind: value.event._tag,
        seq: value.event.seq,
        outcome: outcome._tag === "Rejected" ? `Rejected (${outcome.reason})` : outcome._tag
      })
    )
    return HttpServerResponse.empty({ status: 204 })
  }
)

const json = (bytes: Uint8Array) => HttpServerResponse.uint8Array(bytes, { contentType: "application/json" })
const octets = (bytes: Uint8Array) => HttpServerResponse.uint8Array(bytes, { contentType: "application/octet-stream" })

const fleet = (config: RoutesConfig, signature: boolean) =>
  Effect.sync(() => {
    const current = config.state.currentFleet()
    if (current === null) return errorResponse(503, "no verified fleet.resolved snapshot")
    return signature ? octets(current.signature) : json(current.bytes)
  })

const rollout = (config: RoutesConfig, encodedId: string, signature: boolean) =>
  Effect.sync(() => {
    let id: string
    try {
      id = decodeURIComponent(encodedId)
    } catch {
      return errorResponse(404, "invalid rollout id")
    }
    if (!Schema.is(RolloutId)(id)) return errorResponse(404, "invalid rollout id")
    const published = config.state.rollout(id)
    if (published === undefined) return errorResponse(404, "rollout not found", { rolloutId: id })
    return signature ? octets(published.manifest.signature) : json(published.manifest.bytes)
  })

type Handler = (
  config: RoutesConfig,
  request: HttpServerRequest.HttpServerRequest,
  query: URLSearchParams,
  identity: Identity
) => Effect.Effect<HttpServerResponse.HttpServerResponse, Refusal>

type Match =
  | { readonly _tag: "Route"; readonly route: Route; readonly handler: Handler; readonly anonymous: boolean }
  | { readonly _tag: "MethodNotAllowed" }
  | { readonly _tag: "NotFound" }

const ROLLOUT_PATH = /^\/v1\/rollouts\/([^/]+)(\/sig)?$/

const route = (method: string, expected: string, route: Route, handler: Handler, anonymous = false): Match =>
  method === expected ? { _tag: "Route", route, handler, anonymous } : { _tag: "MethodNotAllowed" }

/** The machine id a renewal is for: only a client identity names one. */
const renew: Handler = (config, request, _, identity) =>
  identity._tag === "Anonymous"
    ? Effect.succeed(errorResponse(401, "renewal needs a client identity"))
    : Enrollment.renew(config, request, identity.machineId)

/**
 * Every agent route: enrollment is the one that needs no client identity (the token is the
 * credential). Anything else under `/v1` is 404 (405 for a wrong method).
 */
const match = (method: string, path: string): Match => {
  switch (path) {
    case "/v1/enroll":
      return route(method, "POST", "enroll", (config, request) => Enrollment.enroll(config, request), true)
    case "/v1/agent/renew":
      return route(method, "POST", "renew", renew)
    case "/v1/agent/heartbeat":
      return route(method, "POST", "heartbeat", (config, request, _, identity) => heartbeat(config, request, identity))
    case "/v1/agent/dispatch":
      return route(method, "GET", "dispatch", (config, _, query, identity) => dispatch(config, query, identity))
    case "/v1/agent/events":
      return route(method, "POST", "events", (config, request, _, identity) => events(config, request, identity))
    case "/v1/fleet.resolved":
      return route(method, "GET", "fleet", (config) => fleet(config, false))
    case "/v1/fleet.resolved/sig":
      return route(method, "GET", "fleet", (config) => fleet(config, true))
  }
  const rolloutPath = ROLLOUT_PATH.exec(path)
  if (rolloutPath !== null) {
    const [, id = "", sig] = rolloutPath
    return route(method, "GET", "rollout", (config) => rollout(config, id, sig !== undefined))
  }
  return { _tag: "NotFound" }
}

/**
 * The whole HTTP application. It always answers: a refusal becomes its status, and any
 * unexpected failure or defect becomes a logged 500, so bad input never stops the server.
 * `@effect/platform` runs request handlers uninterruptibly; this one opts back in, so that
 * a long-poll's timeout can cut its wait and a client that goes away (or the server
 * closing) ends a parked poll or a hang.
 *
 * @since 0.1.0
 */
export const makeApp = (
  config: RoutesConfig
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const questionMark = request.url.indexOf("?")
    const path = questionMark === -1 ? request.url : request.url.slice(0, questionMark)
    const query = new URLSearchParams(questionMark === -1 ? "" : request.url.slice(questionMark + 1))
    if (path === "/healthz") return HttpServerResponse.text("ok")
    if (path.startsWith("/v1/operator/")) return yield* config.operator(request, path)
    if (path !== "/v1" && !path.startsWith("/v1/")) return errorResponse(404, "not found")
    const response = yield* agentRoute(config, request, path, query)
    config.state.recordRequest(yield* recorded(request, path, response.status))
    return response
  }).pipe(answerFailures, Effect.interruptible)

/** A refusal becomes its answer; an unexpected failure or defect a logged 500. */
const answerFailures = <R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, Refusal, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> =>
  effect.pipe(
    Effect.catchTag("Refusal", (refusal) => Effect.succeed(refusal.response)),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause)
        : Effect.as(
          Effect.logWarning("request handler failed", cause),
          errorResponse(500, "internal error in the dev control plane")
        )
    )
  )

/** The request log's entry for an answered agent-facing request. */
const recorded = (request: HttpServerRequest.HttpServerRequest, path: string, status: number) =>
  Effect.map(Clock.currentTimeMillis, (millis): RecordedRequest => {
    const peer = verifiedPeer(request)
    return {
      method: request.method,
      path,
      status,
      clientCertificate: peer === null
        ? null
        : { fingerprint256: peer.fingerprint256, serialNumber: peer.serialNumber.toLowerCase() },
      at: new Date(millis)
    }
  })

/** Everything under `/v1` but the operator API. */
const agentRoute = (
  config: RoutesConfig,
  request: HttpServerRequest.HttpServerRequest,
  path: string,
  query: URLSearchParams
): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.gen(function*() {
    if (!config.state.ready) {
      return HttpServerResponse.text(NOT_READY_BODY, {
        status: 503,
        headers: { "retry-after": "30" },
        contentType: "application/json"
      })
    }
    const protocol = checkProtocol(request.headers["x-nixfleet-protocol"], config.strictProtocol)
    if (protocol !== null) return protocol

    const matched = match(request.method, path)
    if (matched._tag === "NotFound") return errorResponse(404, "not found")
    if (matched._tag === "MethodNotAllowed") return errorResponse(405, "method not allowed")
    const identity: Identity | null = matched.anonymous ? { _tag: "Anonymous" } : identify(request, config)
    if (identity === null) return errorResponse(401, "a client certificate issued by the fleet CA is required")
    const fault = config.state.faultFor(matched.route)
    if (fault !== undefined) return yield* faultResponse(fault)
    return yield* matched.handler(config, request, query, identity)
  }).pipe(answerFailures)
