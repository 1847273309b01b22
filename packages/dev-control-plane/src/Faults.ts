/**
 * Fault injection: a route can be told to answer badly, so that agent tests can exercise
 * their error handling against a control plane that is otherwise real.
 *
 * @since 0.1.0
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/**
 * The agent-facing routes a fault can be set on. `fleet` covers `/v1/fleet.resolved` and
 * its `/sig`; `rollout` covers `/v1/rollouts/{id}` and its `/sig`; `enroll` is
 * `/v1/enroll` and `renew` `/v1/agent/renew`.
 *
 * @since 0.1.0
 */
export type Route = "heartbeat" | "dispatch" | "events" | "fleet" | "rollout" | "enroll" | "renew"

/**
 * How a faulted route answers, instead of running its handler (the readiness, protocol and
 * client-certificate checks still run first, so a fault never hides an authentication
 * failure). A fault stays until it is cleared.
 *
 * - `Status`: that status, with `body` (empty when absent) and `headers`; the content type
 *   is `application/json` unless `headers` names one.
 * - `Garbage`: 200, `Content-Type: application/json`, and a body that is not JSON.
 * - `Oversized`: 200, `Content-Type: application/json`, and a JSON-looking body of exactly
 *   `bytes` bytes streamed in chunks without a `Content-Length`, so that only a client
 *   that bounds its reads survives it.
 * - `Hang`: no answer at all, until the client disconnects or the control plane stops.
 *
 * @since 0.1.0
 */
export type Fault =
  | {
    readonly _tag: "Status"
    readonly status: number
    readonly body?: string
    readonly headers?: Readonly<Record<string, string>>
  }
  | { readonly _tag: "Garbage" }
  | { readonly _tag: "Oversized"; readonly bytes: number }
  | { readonly _tag: "Hang" }

/**
 * Whether a fault can be served: a `Status` within 100–599 and an `Oversized` size that
 * is a finite, non-negative number.
 *
 * @since 0.1.0
 */
export const isValidFault = (fault: Fault): boolean => {
  switch (fault._tag) {
    case "Status":
      return Number.isInteger(fault.status) && fault.status >= 100 && fault.status <= 599
    case "Oversized":
      return Number.isFinite(fault.bytes) && fault.bytes >= 0
    default:
      return true
  }
}

/**
 * The body of a `Garbage` answer: it starts like a JSON document, so that a client has to
 * parse it to notice.
 *
 * @since 0.1.0
 */
export const GARBAGE_BODY = "{\"received_at\": <<this is not JSON>>"

const OVERSIZED_HEAD = new TextEncoder().encode("{\"padding\":\"")
const OVERSIZED_TAIL = new TextEncoder().encode("\"}")
const CHUNK_BYTES = 64 * 1024
const FILLER = new Uint8Array(CHUNK_BYTES).fill(0x61)

/**
 * `bytes` bytes of `{"padding":"aaaa…"}` (plain filler when `bytes` is too small for the
 * braces), produced lazily one 64 KiB chunk at a time.
 *
 * @since 0.1.0
 */
export const oversizedBody = (bytes: number): Stream.Stream<Uint8Array> => {
  const total = Number.isFinite(bytes) ? Math.max(0, Math.floor(bytes)) : 0
  const framed = total >= OVERSIZED_HEAD.length + OVERSIZED_TAIL.length
  const fill = framed ? total - OVERSIZED_HEAD.length - OVERSIZED_TAIL.length : total
  const filler = Stream.unfold(fill, (left): Option.Option<readonly [Uint8Array, number]> =>
    left <= 0
      ? Option.none()
      : Option.some([left >= CHUNK_BYTES ? FILLER : FILLER.subarray(0, left), left - CHUNK_BYTES]))
  return framed
    ? Stream.concat(Stream.make(OVERSIZED_HEAD), Stream.concat(filler, Stream.make(OVERSIZED_TAIL)))
    : filler
}

const contentTypeOf = (headers: Readonly<Record<string, string>>): string | undefined =>
  Object.entries(headers).find(([name]) => name.toLowerCase() === "content-type")?.[1]

/**
 * The answer a fault gives. `Hang` never completes: the HTTP server interrupts it when the
 * client goes away or the server closes its connections.
 *
 * @since 0.1.0
 */
export const faultResponse = (fault: Fault): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  switch (fault._tag) {
    case "Status": {
      const headers = fault.headers ?? {}
      return Effect.succeed(
        fault.body === undefined
          ? HttpServerResponse.empty({ status: fault.status, headers })
          : HttpServerResponse.text(fault.body, {
            status: fault.status,
            headers,
            contentType: contentTypeOf(headers) ?? "application/json"
          })
      )
    }
    case "Garbage":
      return Effect.succeed(HttpServerResponse.text(GARBAGE_BODY, { status: 200, contentType: "application/json" }))
    case "Oversized":
      return Effect.succeed(
        HttpServerResponse.stream(oversizedBody(fault.bytes), { status: 200, contentType: "application/json" })
      )
    case "Hang":
      return Effect.never
  }
}
