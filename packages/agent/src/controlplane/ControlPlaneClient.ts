/**
 * The agent's calls to the control plane, over its own transport (`ControlPlaneTransport`,
 * built from `ControlPlaneHttp` with the fleet CA and the host's client certificate; never
 * an `HttpClient` found in the surrounding context). Every request carries
 * `X-Nixfleet-Protocol: 1`; every answer's body is read up to a cap, pre-scanned for depth,
 * size and control characters, and decoded through the proto schemas. Whatever the answer,
 * the result is one of the typed errors below with a short, escaped detail.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import {
  DispatchResponse,
  EnrollRequest,
  EnrollResponse,
  HeartbeatRequest,
  HeartbeatResponse,
  RenewRequest,
  RenewResponse
} from "@nixfleet/proto"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { AgentConfig } from "../config/AgentConfig.js"
import { decodeJson, type JsonRefused, safeText } from "../support/boundedJson.js"
import { readBounded } from "./boundedBody.js"
import { type ClientSetupError } from "./ControlPlaneHttp.js"
import * as ControlPlaneHttp from "./ControlPlaneHttp.js"

/**
 * The protocol major this agent speaks; sent on every request as `X-Nixfleet-Protocol`.
 *
 * @since 0.1.0
 */
export const PROTOCOL_VERSION = "1"

/**
 * The request never got an HTTP answer: connection refused, TLS failure, timeout.
 *
 * @since 0.1.0
 */
export class TransportError extends Data.TaggedError("TransportError")<{
  readonly request: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.request}: ${this.detail}`
  }
}

/**
 * The control plane answered with an unexpected status. `retryAfterSecs` is its
 * `Retry-After` (503 while it is not ready, or under back-pressure).
 *
 * @since 0.1.0
 */
export class StatusError extends Data.TaggedError("StatusError")<{
  readonly request: string
  readonly status: number
  readonly retryAfterSecs: number | null
  readonly body: string
}> {
  override get message(): string {
    return `${this.request}: HTTP ${this.status}${this.body === "" ? "" : `: ${this.body}`}`
  }
}

/**
 * The answer's body is not what the protocol says (garbage, too large, wrong shape).
 *
 * @since 0.1.0
 */
export class BadResponse extends Data.TaggedError("BadResponse")<{
  readonly request: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.request}: ${this.detail}`
  }
}

/** @since 0.1.0 */
export type ControlPlaneError = TransportError | StatusError | BadResponse

/**
 * The delay a failed call asks for before the next attempt: its `Retry-After`, if any.
 *
 * @since 0.1.0
 */
export const retryAfter = (error: ControlPlaneError): Duration.Duration | null =>
  error._tag === "StatusError" && error.retryAfterSecs !== null ? Duration.seconds(error.retryAfterSecs) : null

/**
 * @since 0.1.0
 */
export interface PostedEvent {
  readonly status: number
  /** The start of the answer's body, for the log and the dead-letter reason. */
  readonly body: string
}

/**
 * A signed artifact as served: the exact bytes and the raw signature.
 *
 * @since 0.1.0
 */
export interface SignedBytes {
  readonly bytes: Uint8Array
  readonly signature: Uint8Array
}

/**
 * @since 0.1.0
 */
export interface ControlPlaneClientService {
  /**
   * `POST /v1/agent/events` with an envelope built from the stored wire JSON of the event
   * (10 s). Any HTTP answer is a success of this effect; the caller classifies it.
   */
  readonly postEvent: (args: {
    readonly hostname: string
    readonly rolloutId: string
    readonly eventJson: string
  }) => Effect.Effect<PostedEvent, TransportError>
  /** `POST /v1/agent/heartbeat`; `timeout` is 30 s at boot recovery, 10 s after. */
  readonly heartbeat: (
    request: HeartbeatRequest,
    timeout: Duration.DurationInput
  ) => Effect.Effect<{ readonly response: HeartbeatResponse; readonly replayFrom: number | null }, ControlPlaneError>
  /** `GET /v1/agent/dispatch?wait=<secs>` (timeout: wait + 5 s); null when there is no work. */
  readonly dispatch: (waitSecs: number) => Effect.Effect<DispatchResponse | null, ControlPlaneError>
  /** `GET /v1/fleet.resolved` and its `/sig` (30 s each). */
  readonly fleetResolved: Effect.Effect<SignedBytes, ControlPlaneError>
  /** `GET /v1/rollouts/<id>` and its `/sig` (30 s each); null when the control plane has none (404). */
  readonly rolloutManifest: (rolloutId: string) => Effect.Effect<SignedBytes | null, ControlPlaneError>
  /** `POST /v1/enroll` (30 s): the bootstrap token and a CSR for the first certificate. */
  readonly enroll: (request: EnrollRequest) => Effect.Effect<EnrollResponse, ControlPlaneError>
  /** `POST /v1/agent/renew` (30 s, over mTLS): a CSR for a new certificate. */
  readonly renew: (request: RenewRequest) => Effect.Effect<RenewResponse, ControlPlaneError>
}

const EVENT_TIMEOUT = Duration.seconds(10)
const ARTIFACT_TIMEOUT = Duration.seconds(30)
const IDENTITY_TIMEOUT = Duration.seconds(30)
/** Enough of a refusal's body to say why. */
const REASON_BYTES = 512
/** The largest JSON answer the agent reads: a fleet of thousands of hosts fits many times over. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024

const parseRetryAfter = (value: string | undefined): number | null => {
  if (value === undefined) return null
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed)
  const date = Date.parse(trimmed)
  return Number.isFinite(date) ? Math.max(0, Math.ceil((date - Date.now()) / 1000)) : null
}

const decodeText = (bytes: Uint8Array) => new TextDecoder("utf-8", { fatal: false }).decode(bytes)

/** A refusal's body as it may be logged and stored: escaped, bounded. */
const reasonText = (bytes: Uint8Array) => safeText(decodeText(bytes).trim(), REASON_BYTES)

/** A count in a header: digits only, and exactly representable. */
const headerCount = (value: string | undefined): number | null => {
  if (value === undefined || !/^\d+$/.test(value.trim())) return null
  const count = Number(value.trim())
  return Number.isSafeInteger(count) ? count : null
}

const badBody = (request: string, error: JsonRefused): BadResponse =>
  new BadResponse({
    request,
    detail: error.reason === "syntax"
      ? "body is not JSON"
      : error.reason === "limits"
      ? `body refused: ${error.detail}`
      : error.detail
  })

/**
 * The HTTP client the control-plane client talks through. It is a service of its own, not
 * the ambient `HttpClient`, so that a program embedding the agent cannot replace the
 * agent's transport (its CA, its client certificate, its loopback-only rule for plain
 * http) by having an `HttpClient` of its own in context.
 *
 * @since 0.1.0
 */
export class ControlPlaneTransport extends Context.Tag("@nixfleet/agent/ControlPlaneTransport")<
  ControlPlaneTransport,
  HttpClient.HttpClient
>() {
  /** The agent's transport: `ControlPlaneHttp` (the configured CA and client identity). */
  static readonly layer: Layer.Layer<ControlPlaneTransport, ClientSetupError, AgentConfig> = Layer.effect(
    ControlPlaneTransport,
    HttpClient.HttpClient
  ).pipe(Layer.provide(ControlPlaneHttp.layer))

  /** The transport for first-boot enrollment: `ControlPlaneHttpAnonymous` (no client certificate). */
  static readonly layerAnonymous: Layer.Layer<ControlPlaneTransport, ClientSetupError, AgentConfig> = Layer.effect(
    ControlPlaneTransport,
    HttpClient.HttpClient
  ).pipe(Layer.provide(ControlPlaneHttp.layerAnonymous))
}

/**
 * @since 0.1.0
 */
export class ControlPlaneClient extends Context.Tag("@nixfleet/agent/ControlPlaneClient")<
  ControlPlaneClient,
  ControlPlaneClientService
>() {
  static readonly layer = Layer.effect(
    ControlPlaneClient,
    Effect.gen(function*() {
      const config = yield* AgentConfig
      const base = config.controlPlaneUrl.replace(/\/+$/, "")
      const client = (yield* ControlPlaneTransport).pipe(
        HttpClient.mapRequest(HttpClientRequest.setHeader("X-Nixfleet-Protocol", PROTOCOL_VERSION)),
        // Each request ends with its scope: a body left unread (an event's 2xx answer, the rest
        // of an oversized one) is aborted rather than left holding a connection.
        HttpClient.withScope
      )

      /** Runs a request, mapping every failure to the protocol's errors. */
      const send = <A>(
        name: string,
        request: HttpClientRequest.HttpClientRequest,
        timeout: Duration.DurationInput,
        onResponse: (
          response: HttpClientResponse.HttpClientResponse
        ) => Effect.Effect<A, ControlPlaneError | HttpClientError.ResponseError>
      ): Effect.Effect<A, ControlPlaneError> =>
        client.execute(request).pipe(
          Effect.flatMap(onResponse),
          Effect.scoped,
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () =>
              new TransportError({ request: name, detail: `timed out after ${Duration.format(timeout)}` })
          }),
          Effect.catchTags({
            RequestError: (error) =>
              Effect.fail(new TransportError({ request: name, detail: safeText(error.message) })),
            ResponseError: (error) =>
              Effect.fail(new TransportError({ request: name, detail: safeText(error.message) }))
          }),
          Effect.withSpan(`ControlPlaneClient ${name}`)
        )

      const statusError = (name: string, response: HttpClientResponse.HttpClientResponse) =>
        Effect.flatMap(
          Effect.orElseSucceed(
            readBounded(response, REASON_BYTES),
            () => ({ bytes: new Uint8Array(), truncated: false })
          ),
          ({ bytes }) =>
            Effect.fail(
              new StatusError({
                request: name,
                status: response.status,
                retryAfterSecs: parseRetryAfter(response.headers["retry-after"]),
                body: reasonText(bytes)
              })
            )
        )

      const body = (name: string, response: HttpClientResponse.HttpClientResponse) =>
        Effect.flatMap(readBounded(response, MAX_BODY_BYTES), ({ bytes, truncated }) =>
          truncated
            ? Effect.fail(new BadResponse({ request: name, detail: `body larger than ${MAX_BODY_BYTES} bytes` }))
            : Effect.succeed(bytes))

      const json = <A>(name: string, decode: (text: string) => Effect.Effect<A, JsonRefused>, text: string) =>
        Effect.mapError(decode(text), (error) => badBody(name, error))
      const heartbeatAnswer = decodeJson(HeartbeatResponse)
      const dispatchAnswer = decodeJson(DispatchResponse)
      const enrollAnswer = decodeJson(EnrollResponse)
      const renewAnswer = decodeJson(RenewResponse)

      const postEvent: ControlPlaneClientService["postEvent"] = (args) => {
        // The stored event is already wire JSON: splice it in rather than parse and re-serialise.
        const payload = `{"hostname":${JSON.stringify(args.hostname)},"rolloutId":${
          JSON.stringify(args.rolloutId)
        },"event":${args.eventJson}}`
        const name = "POST /v1/agent/events"
        return send(
          name,
          HttpClientRequest.post(`${base}/v1/agent/events`).pipe(
            HttpClientRequest.bodyText(payload, "application/json")
          ),
          EVENT_TIMEOUT,
          (response) =>
            response.status >= 200 && response.status < 300
              ? Effect.succeed({ status: response.status, body: "" })
              : Effect.map(
                Effect.orElseSucceed(
                  readBounded(response, REASON_BYTES),
                  () => ({ bytes: new Uint8Array(), truncated: false })
                ),
                ({ bytes }) => ({ status: response.status, body: reasonText(bytes) })
              )
        ).pipe(
          Effect.catchTags({
            StatusError: (error) => Effect.succeed({ status: error.status, body: error.body }),
            BadResponse: (error) => Effect.fail(new TransportError({ request: name, detail: error.detail }))
          })
        )
      }

      const heartbeat: ControlPlaneClientService["heartbeat"] = (request, timeout) => {
        const name = "POST /v1/agent/heartbeat"
        return Effect.flatMap(Schema.encode(HeartbeatRequest)(request).pipe(Effect.orDie), (encoded) =>
          send(
            name,
            HttpClientRequest.post(`${base}/v1/agent/heartbeat`).pipe(HttpClientRequest.bodyUnsafeJson(encoded)),
            timeout,
            (response) =>
              response.status < 200 || response.status >= 300
                ? statusError(name, response)
                : Effect.flatMap(body(name, response), (bytes) =>
                  Effect.map(json(name, heartbeatAnswer, decodeText(bytes)), (decoded) => ({
                    response: decoded,
                    replayFrom: headerCount(response.headers["x-nixfleet-replay-from"])
                  })))
          ))
      }

      const dispatch: ControlPlaneClientService["dispatch"] = (waitSecs) => {
        const name = "GET /v1/agent/dispatch"
        return send(
          name,
          HttpClientRequest.get(`${base}/v1/agent/dispatch`).pipe(
            HttpClientRequest.setUrlParam("wait", String(waitSecs))
          ),
          Duration.seconds(waitSecs + 5),
          (response) => {
            if (response.status === 204) return Effect.succeed(null)
            if (response.status < 200 || response.status >= 300) return statusError(name, response)
            return Effect.flatMap(body(name, response), (bytes) => {
              const text = decodeText(bytes).trim()
              // An empty body or a literal null also means "no work".
              return text === "" || text === "null" ? Effect.succeed(null) : json(name, dispatchAnswer, text)
            })
          }
        )
      }

      const signed = (name: string, path: string) =>
        Effect.all([
          send(name, HttpClientRequest.get(`${base}${path}`), ARTIFACT_TIMEOUT, (response) =>
            response.status === 200 ? body(name, response) : statusError(name, response)),
          send(`${name}/sig`, HttpClientRequest.get(`${base}${path}/sig`), ARTIFACT_TIMEOUT, (response) =>
            response.status === 200 ? body(`${name}/sig`, response) : statusError(`${name}/sig`, response))
        ]).pipe(Effect.map(([bytes, signature]) => ({ bytes, signature })))

      /** A JSON request answered 2xx with a JSON document (enroll, renew). */
      const exchange = <A, I, B>(
        name: string,
        path: string,
        requestSchema: Schema.Schema<A, I>,
        decodeAnswer: (text: string) => Effect.Effect<B, JsonRefused>,
        request: A
      ) =>
        Effect.flatMap(Schema.encode(requestSchema)(request).pipe(Effect.orDie), (encoded) =>
          send(
            name,
            HttpClientRequest.post(`${base}${path}`).pipe(HttpClientRequest.bodyUnsafeJson(encoded)),
            IDENTITY_TIMEOUT,
            (response) =>
              response.status < 200 || response.status >= 300
                ? statusError(name, response)
                : Effect.flatMap(body(name, response), (bytes) => json(name, decodeAnswer, decodeText(bytes)))
          ))

      return {
        postEvent,
        heartbeat,
        dispatch,
        enroll: (request) => exchange("POST /v1/enroll", "/v1/enroll", EnrollRequest, enrollAnswer, request),
        renew: (request) => exchange("POST /v1/agent/renew", "/v1/agent/renew", RenewRequest, renewAnswer, request),
        fleetResolved: signed("GET /v1/fleet.resolved", "/v1/fleet.resolved"),
        rolloutManifest: (rolloutId) =>
          signed(`GET /v1/rollouts/${rolloutId}`, `/v1/rollouts/${encodeURIComponent(rolloutId)}`).pipe(
            Effect.catchIf(
              (error): error is StatusError => error._tag === "StatusError" && error.status === 404,
              () => Effect.succeed(null)
            )
          )
      }
    })
  )
}

/**
 * The client over a `ControlPlaneTransport`: `ControlPlaneClient.layer`, as this module's `layer`.
 *
 * @since 0.1.0
 */
export const layer = ControlPlaneClient.layer

/**
 * The agent's own mTLS transport to the control plane: `ControlPlaneTransport.layer`.
 *
 * @since 0.1.0
 */
export const layerTransport = ControlPlaneTransport.layer

/**
 * The transport without a client certificate (enrollment): `ControlPlaneTransport.layerAnonymous`.
 *
 * @since 0.1.0
 */
export const layerTransportAnonymous = ControlPlaneTransport.layerAnonymous
