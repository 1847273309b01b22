/**
 * The CLI's logger: every line to stderr (stdout carries results), as one JSON object per
 * line for journald or pretty for a terminal, at the level the operator asked for.
 *
 * A JSON line carries Effect's keys (`message`, `logLevel`, `timestamp`, `annotations`,
 * `spans`, `fiberId`, `cause`) and the reference agent's (tracing-subscriber's JSON
 * format): `level` (`ERROR WARN INFO DEBUG TRACE`), `target` (`nixfleet_agent`, or the
 * line's `target` annotation) and `fields` (`message` and the annotations), so that journal
 * queries and alerts written for the reference agent still match.
 *
 * The level: `--log-level` when given, else `NIXFLEET_AGENT_LOG_LEVEL`, else `RUST_LOG`
 * (the reference agent's filter; its `nixfleet_agent` directive, or its default level),
 * else info. The environment's level is set around the whole command line (see
 * {@link withEnvironmentLogLevel}), so @effect/cli's `--log-level`, set inside it, wins. A
 * value that cannot be read is one warning and info, never an exit: the reference agent
 * falls back to info too.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Inspectable from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"

/**
 * A warning about the environment's level, waiting for the command's logger to write it
 * (the level is read before any command installs its logger).
 *
 * @internal
 */
export class LogLevelWarning extends Context.Reference<LogLevelWarning>()("@nixfleet/agent/cli/LogLevelWarning", {
  defaultValue: (): string | undefined => undefined
}) {}

/** The reference agent's crate: the target of every line that names none. */
const DEFAULT_TARGET = "nixfleet_agent"

/** tracing's level names; it has no FATAL, and a fatal line is an error there. */
const upstreamLevel = (label: string): string => {
  switch (label) {
    case "FATAL":
      return "ERROR"
    default:
      return label
  }
}

const errorToJson = (value: unknown): unknown =>
  value instanceof Error ? { name: value.name, message: value.message } : value

/** The message as one string, as tracing's `fields.message` is. */
const messageText = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((part) => typeof part === "string" ? part : Inspectable.stringifyCircular(errorToJson(part)))
    .join(" ")
}

/**
 * One JSON object per line, with Effect's keys and the reference agent's.
 *
 * @internal
 */
export const jsonLogger: Logger.Logger<unknown, string> = Logger.map(Logger.structuredLogger, (entry) => {
  const target = entry.annotations["target"]
  return Inspectable.stringifyCircular({
    ...entry,
    message: Array.isArray(entry.message) ? entry.message.map(errorToJson) : errorToJson(entry.message),
    level: upstreamLevel(entry.logLevel),
    target: typeof target === "string" && target !== "" ? target : DEFAULT_TARGET,
    fields: { ...entry.annotations, message: messageText(entry.message) }
  })
})

const tracingLevels: Readonly<Record<string, LogLevel.LogLevel>> = {
  off: LogLevel.None,
  "0": LogLevel.None,
  error: LogLevel.Error,
  "1": LogLevel.Error,
  warn: LogLevel.Warning,
  "2": LogLevel.Warning,
  info: LogLevel.Info,
  "3": LogLevel.Info,
  debug: LogLevel.Debug,
  "4": LogLevel.Debug,
  trace: LogLevel.Trace,
  "5": LogLevel.Trace
}

/** `--log-level`'s words (Effect's levels) and tracing's. */
const agentLevels: Readonly<Record<string, LogLevel.LogLevel>> = {
  ...tracingLevels,
  all: LogLevel.All,
  none: LogLevel.None,
  fatal: LogLevel.Fatal,
  warning: LogLevel.Warning
}

const isOurTarget = (target: string) => target === DEFAULT_TARGET || target.startsWith(`${DEFAULT_TARGET}::`)

/**
 * The level a `RUST_LOG` filter gives this agent's lines: its directive for
 * `nixfleet_agent` (the most specific, as in tracing), else its first plain level, else
 * `undefined` (nothing in it concerns this agent). `undefined` too when it does not parse.
 *
 * @internal
 */
export const rustLogLevel = (filter: string): LogLevel.LogLevel | undefined => {
  let plain: LogLevel.LogLevel | undefined
  for (const raw of filter.split(",")) {
    const directive = raw.trim()
    if (directive === "") continue
    const equals = directive.lastIndexOf("=")
    if (equals < 0) {
      const level = tracingLevels[directive.toLowerCase()]
      // A bare target enables every level of it.
      if (level === undefined && isOurTarget(directive)) return LogLevel.Trace
      if (level !== undefined && plain === undefined) plain = level
      continue
    }
    // `target[span{field=value}]=level`: only the target before any span filter matters here.
    const target = directive.slice(0, equals).split("[")[0] ?? ""
    const level = tracingLevels[directive.slice(equals + 1).trim().toLowerCase()]
    if (level !== undefined && isOurTarget(target.trim())) return level
  }
  return plain
}

/**
 * What the environment asks for: the level, and a warning for a value that was ignored.
 *
 * @internal
 */
export const environmentLogLevel: Effect.Effect<{
  readonly level: LogLevel.LogLevel | undefined
  readonly warning: string | undefined
}> = Effect.gen(function*() {
  const own = yield* Effect.orElseSucceed(Config.option(Config.string("NIXFLEET_AGENT_LOG_LEVEL")), Option.none)
  if (Option.isSome(own) && own.value.trim() !== "") {
    const level = agentLevels[own.value.trim().toLowerCase()]
    if (level !== undefined) return { level, warning: undefined }
    return {
      level: undefined,
      warning: `NIXFLEET_AGENT_LOG_LEVEL=${
        JSON.stringify(own.value)
      } is not a level (error, warn, info, debug, trace, off); using info`
    }
  }
  const rust = yield* Effect.orElseSucceed(Config.option(Config.string("RUST_LOG")), Option.none)
  if (Option.isNone(rust) || rust.value.trim() === "") return { level: undefined, warning: undefined }
  const level = rustLogLevel(rust.value)
  return level !== undefined ? { level, warning: undefined } : {
    level: undefined,
    warning: `RUST_LOG=${JSON.stringify(rust.value)} names no level for nixfleet_agent; using info`
  }
})

/**
 * Runs the command line at the environment's level. Outermost, so that what is set inside
 * (`--log-level`, a command's own level) overrides it.
 *
 * @internal
 */
export const withEnvironmentLogLevel = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(
    environmentLogLevel,
    ({ level, warning }) =>
      (level === undefined ? self : Logger.withMinimumLogLevel(self, level)).pipe(
        Effect.provideService(LogLevelWarning, warning)
      )
  )

/**
 * The logger; it writes the pending warning about the environment's level, if any.
 *
 * @internal
 */
export const loggerLayer = (format: "json" | "pretty") => {
  const logger = Logger.replace(
    Logger.defaultLogger,
    // The pretty logger writes by itself (to stdout unless told otherwise); the JSON one
    // only formats.
    format === "json" ? Logger.withConsoleError(jsonLogger) : Logger.prettyLogger({ stderr: true })
  )
  const warning = Layer.effectDiscard(
    Effect.flatMap(
      LogLevelWarning,
      (text) =>
        text === undefined ? Effect.void : Effect.logWarning(text).pipe(Effect.annotateLogs("setting", "log level"))
    )
  )
  // Built after the logger, so that the warning is written by it.
  return Layer.provideMerge(warning, logger)
}
