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
    // The pretty logger writes by itself (to stdout unless told otherwise); the JSON one
    // only formats.
    format === "json" ? Logger.withConsoleError(Logger.jsonLogger) : Logger.prettyLogger({ stderr: true })
  )
