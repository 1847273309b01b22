import { Effect, Layer, Logger } from "effect"

/** Collects the text of every log line, for tests that assert on warnings. */
export class CapturedLogs extends Effect.Tag("test/CapturedLogs")<CapturedLogs, {
  readonly lines: Effect.Effect<ReadonlyArray<string>>
}>() {}

export const captureLogs = Layer.unwrapEffect(
  Effect.sync(() => {
    const lines: Array<string> = []
    return Layer.merge(
      Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message }) => {
          lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
        })
      ),
      Layer.succeed(CapturedLogs, { lines: Effect.sync(() => [...lines]) })
    )
  })
)
