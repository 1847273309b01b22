/**
 * The CLI's logger: every line to stderr (stdout carries results), as one JSON object per
 * line for journald or pretty for a terminal.
 *
 * @since 0.1.0
 */
import * as Logger from "effect/Logger"

/**
 * @since 0.1.0
 */
export const loggerLayer = (format: "json" | "pretty") =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.withConsoleError(format === "json" ? Logger.jsonLogger : Logger.prettyLoggerDefault)
  )
