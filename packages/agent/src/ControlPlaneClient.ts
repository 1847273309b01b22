/**
 * The agent's calls to the control plane, over `@effect/platform`'s `HttpClient` (which
 * the runtime provides: plain, or with the fleet CA and the host's client certificate).
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AgentConfig } from "./AgentConfig.js"
import { readBounded } from "./internal/boundedBody.js"

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
 * @since 0.1.0
 */
export interface PostedEvent {
  readonly status: number
  /** The start of the answer's body, for the log and the dead-letter reason. */
  readonly body: string
}

/**
 * @since 0.1.0
 */
export interface ControlPlaneClientService {
  /**
   * `POST /v1/agent/events` with an envelope built from the stored wire JSON of the event
   * (10 s timeout). Any HTTP answer is a success of this effect; the caller classifies it.
   */
  readonly postEvent: (args: {
    readonly hostname: string
    readonly rolloutId: string
    readonly eventJson: string
  }) => Effect.Effect<PostedEvent, TransportError>
}

const EVENT_TIMEOUT = Duration.seconds(10)
/** Enough of a refusal's body to say why; the rest is not read. */
const REASON_BYTES = 512

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
      const client = (yield* HttpClient.HttpClient).pipe(
        HttpClient.mapRequest(HttpClientRequest.setHeader("X-Nixfleet-Protocol", PROTOCOL_VERSION))
      )
      const postEvent: ControlPlaneClientService["postEvent"] = (args) => {
        // The stored event is already wire JSON: splice it in rather than parse and re-serialise.
        const body = `{"hostname":${JSON.stringify(args.hostname)},"rolloutId":${
          JSON.stringify(args.rolloutId)
        },"event":${args.eventJson}}`
        return HttpClientRequest.post(`${base}/v1/agent/events`).pipe(
          HttpClientRequest.bodyText(body, "application/json"),
          client.execute,
          Effect.flatMap((response) =>
            response.status >= 200 && response.status < 300
              ? Effect.succeed({ status: response.status, body: "" })
              : Effect.map(
                Effect.orElseSucceed(
                  readBounded(response, REASON_BYTES),
                  () => ({ bytes: new Uint8Array(), truncated: false })
                ),
                ({ bytes }) => ({ status: response.status, body: new TextDecoder().decode(bytes) })
              )
          ),
          Effect.scoped,
          Effect.timeoutFail({
            duration: EVENT_TIMEOUT,
            onTimeout: () => new TransportError({ request: "POST /v1/agent/events", detail: "timed out after 10 s" })
          }),
          Effect.catchTag(
            "RequestError",
            "ResponseError",
            (error) => Effect.fail(new TransportError({ request: "POST /v1/agent/events", detail: error.message }))
          ),
          Effect.withSpan("ControlPlaneClient.postEvent", { attributes: { rolloutId: args.rolloutId } })
        )
      }
      return { postEvent }
    })
  )
}
