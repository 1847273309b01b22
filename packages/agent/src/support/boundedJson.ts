/**
 * JSON from the control plane, read as if it were hostile: a linear pre-scan refuses what
 * no protocol document holds (deep nesting, huge containers, control characters in
 * strings) before `JSON.parse` builds anything, and every refusal or decode error becomes a
 * short, single-line message that cannot carry terminal escapes. Formatting an error never
 * throws: a schema error over a value nested 10,000 levels deep used to overflow the stack
 * inside `TreeFormatter` and kill the fiber that asked.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/**
 * The deepest nesting of arrays and objects accepted. The protocol's answers are less than
 * 10 levels deep (a heartbeat: answer, snapshot list, snapshot); the bound keeps every
 * recursive walk over a decoded value (schemas, formatters, equality) far from the stack
 * limit.
 *
 * @internal
 */
export const MAX_DEPTH = 64

/**
 * The most entries accepted in one array or object. An answer lists a host's own rollouts,
 * a handful; this is generous and still keeps a 4 MiB body from becoming hundreds of
 * thousands of values to decode and report on.
 *
 * @internal
 */
export const MAX_ENTRIES = 10_000

/**
 * The longest error detail, in characters, once escaped.
 *
 * @internal
 */
export const MAX_DETAIL_CHARS = 512

/** How many schema issues a detail lists before it says how many more there were. */
const MAX_ISSUES = 3

/**
 * A document refused before or during decoding: beyond the limits, not JSON, or not what
 * the schema says. `detail` is bounded and safe to log.
 *
 * @internal
 */
export class JsonRefused extends Data.TaggedError("JsonRefused")<{
  readonly reason: "limits" | "syntax" | "schema"
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

/**
 * A control character no protocol string needs: C0 but tab, line feed and carriage return
 * (which PEM certificates carry), DEL and C1. NUL and ESC (terminal escapes, OSC 52
 * clipboard writes) are among them.
 */
const isRefusedControl = (code: number): boolean =>
  (code < 0x20 && code !== 0x09 && code !== 0x0a && code !== 0x0d) || (code >= 0x7f && code <= 0x9f)

const hex4 = (code: number): string => code.toString(16).toUpperCase().padStart(4, "0")

const HEX4 = /^[0-9A-Fa-f]{4}$/

/**
 * Why a JSON text is refused before parsing, or `undefined`. One pass over the characters
 * with a stack no deeper than `MAX_DEPTH`; it does not validate the syntax (`JSON.parse`
 * does that next), it only bounds what parsing may build.
 *
 * @internal
 */
export const prescan = (text: string): string | undefined => {
  // Per open container, the commas seen in it so far: its entries minus one.
  const commas: Array<number> = []
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (inString) {
      if (code === 0x22) {
        inString = false
      } else if (code === 0x5c) {
        const escape = text.charCodeAt(i + 1)
        if (escape === 0x75) {
          const digits = text.slice(i + 2, i + 6)
          const escaped = HEX4.test(digits) ? Number.parseInt(digits, 16) : -1
          if (escaped >= 0 && isRefusedControl(escaped)) {
            return `a string holds the control character U+${hex4(escaped)} (at character ${i})`
          }
          i += 5
        } else {
          // \b and \f are control characters too.
          if (escape === 0x62 || escape === 0x66) {
            return `a string holds the control character U+${hex4(escape === 0x62 ? 0x08 : 0x0c)} (at character ${i})`
          }
          i += 1
        }
      } else if (isRefusedControl(code)) {
        return `a string holds the control character U+${hex4(code)} (at character ${i})`
      }
      continue
    }
    switch (code) {
      case 0x22:
        inString = true
        break
      case 0x5b:
      case 0x7b:
        if (commas.length >= MAX_DEPTH) return `nested deeper than ${MAX_DEPTH} levels (at character ${i})`
        commas.push(0)
        break
      case 0x5d:
      case 0x7d:
        commas.pop()
        break
      case 0x2c: {
        const last = commas.length - 1
        if (last >= 0) {
          const seen = commas[last]! + 1
          if (seen >= MAX_ENTRIES) {
            return `an array or object with more than ${MAX_ENTRIES} entries (at character ${i})`
          }
          commas[last] = seen
        }
        break
      }
    }
  }
  return undefined
}

/** What `safeText` writes as an escape: controls, line separators and lone surrogates. */
const UNSAFE =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

const ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" }

/**
 * `text` made fit for a log line: control characters (NUL, ESC, line breaks, ...) and lone
 * surrogates written as escapes, and at most `maxChars` characters, cut with `…`.
 *
 * @internal
 */
export const safeText = (text: string, maxChars: number = MAX_DETAIL_CHARS): string => {
  const cut = text.length > maxChars
  const escaped = (cut ? text.slice(0, maxChars) : text).replace(
    UNSAFE,
    (char) => ESCAPES[char] ?? `\\u${hex4(char.charCodeAt(0))}`
  )
  if (!cut && escaped.length <= maxChars) return escaped
  const head = escaped.slice(0, maxChars - 1)
  // Do not end on half a surrogate pair.
  return `${/[\uD800-\uDBFF]$/.test(head) ? head.slice(0, -1) : head}…`
}

const pathText = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((key) =>
    typeof key === "number"
      ? `[${key}]`
      : typeof key === "string" && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)
      ? `.${key}`
      : `[${typeof key === "string" ? JSON.stringify(key) : String(key)}]`
  ).join("")

/**
 * A schema error as one bounded, escaped line: the first issues, each with the path to the
 * offending value (`$.bootstrap_rollouts[0].lastEventSeq: Expected ...`). If formatting
 * fails for any reason, a generic message takes its place.
 *
 * @internal
 */
export const formatParseError = (error: ParseResult.ParseError): string => {
  try {
    const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
    const shown = issues.slice(0, MAX_ISSUES).map((issue) => `$${pathText(issue.path)}: ${issue.message}`)
    const more = issues.length > MAX_ISSUES ? ` (and ${issues.length - MAX_ISSUES} more)` : ""
    return safeText(shown.length === 0 ? "does not match the schema" : `${shown.join("; ")}${more}`)
  } catch {
    return "does not match the schema (the error could not be formatted)"
  }
}

/**
 * Parses a JSON text after `prescan`; every refusal is a `JsonRefused`.
 *
 * @internal
 */
export const parseJson = (text: string): Either.Either<unknown, JsonRefused> => {
  const refused = prescan(text)
  if (refused !== undefined) return Either.left(new JsonRefused({ reason: "limits", detail: refused }))
  try {
    return Either.right(JSON.parse(text))
  } catch {
    // The engine's message quotes the input: it is not repeated.
    return Either.left(new JsonRefused({ reason: "syntax", detail: "not JSON" }))
  }
}

/**
 * Parses and decodes a JSON text with `schema`; every failure is a `JsonRefused` whose
 * detail is bounded and escaped.
 *
 * @internal
 */
export const decodeJson = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknown(schema)
  return (text: string): Effect.Effect<A, JsonRefused> =>
    Effect.flatMap(
      parseJson(text),
      (value) =>
        Effect.mapError(
          decode(value),
          (error) => new JsonRefused({ reason: "schema", detail: formatParseError(error) })
        )
    )
}
