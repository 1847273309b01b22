import { Effect, HashMap, Layer, Logger } from "effect"

/** Collects every log line (level, message and annotations), for tests that assert on logs. */
export class CapturedLogs extends Effect.Tag("test/CapturedLogs")<CapturedLogs, {
  readonly lines: Effect.Effect<ReadonlyArray<string>>
}>() {}

export const captureLogs = Layer.unwrapEffect(
  Effect.sync(() => {
    const lines: Array<string> = []
    return Layer.merge(
      Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ annotations, logLevel, message }) => {
          const text = Array.isArray(message) ? message.join(" ") : String(message)
          const fields = [...HashMap.toEntries(annotations)].map(([key, value]) => `${key}=${String(value)}`).join(" ")
          lines.push(`${logLevel.label} ${text}${fields === "" ? "" : ` ${fields}`}`)
        })
      ),
      Layer.succeed(CapturedLogs, { lines: Effect.sync(() => [...lines]) })
    )
  })
)
