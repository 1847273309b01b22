/**
 * Reading the trust file (`TrustConfig` JSON): at start, to refuse an agent that could
 * verify nothing, and before every verification, so that a rotated key takes effect at once.
 *
 * @internal
 */
import { TrustConfig } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs/promises"
import { formatParseError } from "./boundedJson.js"

/**
 * The trust file's contents; fails with one line saying what is wrong with it.
 *
 * @internal
 */
export const readTrustFile = (file: string): Effect.Effect<TrustConfig, string> =>
  Effect.tryPromise({
    try: () => Fs.readFile(file, "utf8"),
    catch: (error) => `cannot read the trust file ${file}: ${String(error)}`
  }).pipe(
    Effect.flatMap((text) => Effect.try({ try: (): unknown => JSON.parse(text), catch: () => `${file} is not JSON` })),
    Effect.flatMap((json) =>
      Schema.decodeUnknown(TrustConfig)(json).pipe(
        Effect.mapError((error) => `${file} is not a trust configuration: ${formatParseError(error)}`)
      )
    )
  )
