/**
 * Test helpers: a raw HTTP(S) client over node:http/node:https (so that client
 * certificates, exact bytes and status codes are all visible), and builders for the
 * agent's requests.
 */
import * as Effect from "effect/Effect"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Https from "node:https"

export interface Response {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: Buffer
  readonly text: string
}

export interface RequestOptions {
  readonly method?: string
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: string | Uint8Array
  /** Client certificate, its key and the CA to trust (HTTPS only). */
  readonly cert?: string
  readonly key?: string
  readonly ca?: string
  /** Abort after this many milliseconds (the promise then rejects). */
  readonly timeoutMs?: number
}

export class RequestFailed extends Error {}

const send = (url: string, options: RequestOptions): Promise<Response> =>
  new Promise((resolve, reject) => {
    const target = new URL(url)
    const base = {
      method: options.method ?? "GET",
      headers: options.headers ?? {},
      agent: false as const,
      ...(options.timeoutMs === undefined ? {} : { signal: AbortSignal.timeout(options.timeoutMs) })
    }
    const onResponse = (response: Http.IncomingMessage) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("error", (error) => reject(new RequestFailed(error.message)))
      response.on("end", () => {
        const body = Buffer.concat(chunks)
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body, text: body.toString("utf8") })
      })
    }
    const request = target.protocol === "https:"
      ? Https.request(target, {
        ...base,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        ...(options.cert === undefined ? {} : { cert: options.cert }),
        ...(options.key === undefined ? {} : { key: options.key })
      }, onResponse)
      : Http.request(target, base, onResponse)
    request.on("error", (error) => reject(new RequestFailed(error.message)))
    request.end(options.body)
  })

/** One HTTP exchange; a transport failure is a `RequestFailed` error. */
export const request = (url: string, options: RequestOptions = {}): Effect.Effect<Response, RequestFailed> =>
  Effect.tryPromise({
    try: () => send(url, options),
    catch: (error) => (error instanceof RequestFailed ? error : new RequestFailed(String(error)))
  })

export const JSON_HEADERS = { "content-type": "application/json", "x-nixfleet-protocol": "1" } as const

export const postJson = (url: string, body: unknown, options: RequestOptions = {}) =>
  request(url, {
    ...options,
    method: "POST",
    headers: { ...JSON_HEADERS, ...options.headers },
    body: JSON.stringify(body)
  })

/** A plausible closure basename for `name`. */
export const closure = (name: string): string =>
  `${Crypto.createHash("sha256").update(name).digest("hex").slice(0, 32).replace(/[eotu]/g, "a")}-nixos-system-${name}`

export const iso = (date: Date): string => date.toISOString()

export const envelope = (hostname: string, rolloutId: string, event: Record<string, unknown>) => ({
  hostname,
  rolloutId,
  event
})

/** The Local-equivalent happy path as wire events, seq 1..4. */
export const happyPath = (target: string, previous: string, at: Date): ReadonlyArray<Record<string, unknown>> => [
  { kind: "DispatchAck", currentClosureAtDispatch: previous, receivedAt: iso(at), seq: 1 },
  { kind: "ActivationStarted", startedAt: iso(at), switchMethod: "switch-to-configuration", seq: 2 },
  { kind: "ActivationCompleted", observedCurrentClosure: target, exitCode: 0, completedAt: iso(at), seq: 3 },
  { kind: "Converged", convergedAt: iso(new Date(at.getTime() + 1000)), currentClosure: target, seq: 4 }
]
