import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

/**
 * The first `maxBytes` of a response body and whether there was more. Reading stops there,
 * so a hostile or broken server cannot make the agent buffer an unbounded body.
 *
 * @internal
 */
export const readBounded = (
  response: HttpClientResponse.HttpClientResponse,
  maxBytes: number
): Effect.Effect<{ readonly bytes: Uint8Array; readonly truncated: boolean }, HttpClientError.ResponseError> =>
  response.stream.pipe(
    Stream.mapAccum(0, (seen, chunk: Uint8Array) => [seen + chunk.length, { chunk, seen }] as const),
    Stream.takeUntil(({ chunk, seen }) => seen + chunk.length > maxBytes),
    Stream.runCollect,
    Effect.map((chunks) => {
      const parts = Chunk.toReadonlyArray(chunks)
      const total = parts.reduce((n, { chunk }) => n + chunk.length, 0)
      const bytes = new Uint8Array(Math.min(total, maxBytes))
      let offset = 0
      for (const { chunk } of parts) {
        if (offset >= bytes.length) break
        const take = chunk.subarray(0, bytes.length - offset)
        bytes.set(take, offset)
        offset += take.length
      }
      return { bytes, truncated: total > maxBytes }
    })
  )
