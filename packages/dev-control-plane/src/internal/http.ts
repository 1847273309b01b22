/**
 * Request-body and error-answer helpers shared by the agent routes and the operator API,
 * following axum's `Json` extractor: 415 without a JSON content type, 413 above 2 MiB,
 * 400 for bytes that are not JSON, 422 for JSON of the wrong shape.
 *
 * @internal
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Buffer } from "node:buffer"

/** axum's default body limit. */
export const MAX_BODY_BYTES = 2 * 1024 * 1024

/** A JSON error answer: `{"error": ..., ...detail}`. */
export const errorResponse = (
  status: number,
  error: string,
  detail: Readonly<Record<string, string>> = {}
): HttpServerResponse.HttpServerResponse => HttpServerResponse.unsafeJson({ error, ...detail }, { status })

/** A request refused before its handler ran, carrying the answer to give. */
export class Refusal extends Data.TaggedError("Refusal")<{
  readonly response: HttpServerResponse.HttpServerResponse
}> {}

const refuse = (status: number, error: string, detail?: Readonly<Record<string, string>>) =>
  new Refusal({ response: errorResponse(status, error, detail) })

/** `application/json`, or any `application/*+json`, parameters allowed (axum's rule). */
export const isJsonContentType = (value: string | undefined): boolean => {
  if (value === undefined) return false
  const mime = (value.split(";")[0] ?? "").trim().toLowerCase()
  const slash = mime.indexOf("/")
  if (slash === -1) return false
  const subtype = mime.slice(slash + 1)
  return mime.slice(0, slash) === "application" && (subtype === "json" || subtype.endsWith("+json"))
}

/** Keeps a byte-order mark so that JSON parsing refuses it, as serde_json does. */
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** The body, refused with 413 as soon as it (or its declared length) exceeds the limit. */
const readBounded = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<Buffer, Refusal> =>
  Effect.suspend(() => {
    const declared = Number(request.headers["content-length"])
    if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
      return Effect.fail(refuse(413, "request body too large"))
    }
    const chunks: Array<Uint8Array> = []
    let size = 0
    return request.stream.pipe(
      Stream.mapError(() => refuse(400, "could not read the request body")),
      Stream.runForEach((chunk) => {
        size += chunk.length
        if (size > MAX_BODY_BYTES) return Effect.fail(refuse(413, "request body too large"))
        chunks.push(chunk)
        return Effect.void
      }),
      Effect.map(() => Buffer.concat(chunks))
    )
  })

/**
 * Reads and decodes a JSON body. `json` is the parsed document as sent, `value` its
 * decoded form. With `requireContentType` false (the operator API, for humans with curl)
 * the content type is not checked.
 */
export const decodeJsonBody = <A, I>(
  request: HttpServerRequest.HttpServerRequest,
  schema: Schema.Schema<A, I>,
  options: { readonly requireContentType: boolean }
): Effect.Effect<{ readonly value: A; readonly json: unknown }, Refusal> =>
  Effect.gen(function*() {
    if (options.requireContentType && !isJsonContentType(request.headers["content-type"])) {
      return yield* refuse(415, "expected request with `Content-Type: application/json`")
    }
    const bytes = yield* readBounded(request)
    const json = yield* Either.try({
      try: (): unknown => JSON.parse(UTF8.decode(bytes)),
      catch: (error) =>
        refuse(400, "malformed JSON", { detail: error instanceof Error ? error.message : String(error) })
    })
    const value = yield* Schema.decodeUnknownEither(schema)(json).pipe(
      Either.mapLeft((error) =>
        refuse(422, "JSON does not match the expected shape", {
          detail: ParseResult.TreeFormatter.formatErrorSync(error)
        })
      )
    )
    return { value, json }
  })
