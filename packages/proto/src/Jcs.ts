/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): the bytes every signed artifact's signature
 * and hash are computed over.
 *
 * Our own implementation, so that the rules are ours to state and test: object keys sorted
 * by UTF-16 code units, no whitespace, strings and numbers written as ECMAScript
 * `JSON.stringify` writes them (which is what RFC 8785 specifies), `-0` as `0`. Anything
 * the Rust producer (serde_json + serde_jcs) would read or write differently is refused
 * instead of being canonicalised to bytes that could never match a signature.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Either from "effect/Either"

/**
 * Why a value or a text has no canonical form. `path` locates the offending value
 * (`$` is the root, then `.key` or `[index]`).
 *
 * @since 0.1.0
 */
export class JcsError extends Data.TaggedError("JcsError")<{
  readonly reason: string
  readonly path: string
}> {
  override get message(): string {
    return `cannot canonicalise JSON at ${this.path}: ${this.reason}`
  }
}

/**
 * Containers nested deeper than this are refused: serde_json, which the control plane and
 * the reference agent parse artifacts with, stops at the same depth, and the bound keeps
 * the recursion below far from the stack limit.
 */
const MAX_DEPTH = 127

/**
 * A high surrogate not followed by a low one, or a low surrogate not preceded by a high
 * one (what `String.prototype.isWellFormed` rejects; that method is outside the ES2023
 * library this project compiles against).
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

const isPlainObject = (value: object): value is Record<string, unknown> => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const compareUtf16 = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const keyPath = (path: string, key: string): string =>
  /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`

const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (typeof value !== "object") return typeof value
  return Object.getPrototypeOf(value)?.constructor?.name ?? "object"
}

/**
 * Appends the canonical form of `value` to `out`, or returns why it has none.
 * `ancestors` holds the containers being written, to tell a cycle from a shared value.
 */
const write = (
  value: unknown,
  path: string,
  depth: number,
  ancestors: Set<object>,
  out: Array<string>
): JcsError | undefined => {
  switch (typeof value) {
    case "boolean":
      out.push(value ? "true" : "false")
      return undefined
    case "string":
      if (LONE_SURROGATE.test(value)) {
        return new JcsError({ path, reason: "string contains a lone UTF-16 surrogate (not well-formed Unicode)" })
      }
      out.push(JSON.stringify(value))
      return undefined
    case "number":
      if (!Number.isFinite(value)) return new JcsError({ path, reason: `${value} is not a JSON number` })
      if (Math.abs(value) > Number.MAX_SAFE_INTEGER) {
        return new JcsError({
          path,
          reason: `${value} is beyond ±(2^53 − 1); JavaScript cannot hold it exactly, so its canonical form ` +
            "could differ from the producer's"
        })
      }
      // JSON.stringify writes -0 as "0", as RFC 8785 requires.
      out.push(JSON.stringify(value))
      return undefined
    case "object":
      break
    default:
      return new JcsError({ path, reason: `a ${typeof value} is not JSON data` })
  }
  if (value === null) {
    out.push("null")
    return undefined
  }
  if (ancestors.has(value)) return new JcsError({ path, reason: "cycle: the value contains itself" })
  if (depth >= MAX_DEPTH) {
    return new JcsError({ path, reason: `containers nested deeper than ${MAX_DEPTH} levels` })
  }
  ancestors.add(value)
  const error = Array.isArray(value)
    ? writeArray(value, path, depth, ancestors, out)
    : isPlainObject(value)
    ? writeObject(value, path, depth, ancestors, out)
    : new JcsError({ path, reason: `a ${describe(value)} is not plain JSON data (encode it first)` })
  ancestors.delete(value)
  return error
}

const writeArray = (
  value: ReadonlyArray<unknown>,
  path: string,
  depth: number,
  ancestors: Set<object>,
  out: Array<string>
): JcsError | undefined => {
  out.push("[")
  for (let i = 0; i < value.length; i++) {
    if (i > 0) out.push(",")
    const error = write(value[i], `${path}[${i}]`, depth + 1, ancestors, out)
    if (error !== undefined) return error
  }
  out.push("]")
  return undefined
}

const writeObject = (
  value: Record<string, unknown>,
  path: string,
  depth: number,
  ancestors: Set<object>,
  out: Array<string>
): JcsError | undefined => {
  const keys = Object.keys(value).sort(compareUtf16)
  out.push("{")
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    const at = keyPath(path, key)
    if (LONE_SURROGATE.test(key)) {
      return new JcsError({ path: at, reason: "key contains a lone UTF-16 surrogate (not well-formed Unicode)" })
    }
    if (i > 0) out.push(",")
    out.push(JSON.stringify(key), ":")
    const error = write(value[key], at, depth + 1, ancestors, out)
    if (error !== undefined) return error
  }
  out.push("}")
  return undefined
}

/**
 * The RFC 8785 canonical form of a JSON value, or why it has none: a non-finite number, a
 * number beyond ±(2^53 − 1), a string or key that is not well-formed Unicode, `undefined`,
 * a function, a symbol, a bigint, anything but arrays and plain objects, a cycle, or more
 * than 127 nested containers.
 *
 * @since 0.1.0
 */
export const canonicalizeEither = (value: unknown): Either.Either<string, JcsError> => {
  const out: Array<string> = []
  const error = write(value, "$", 0, new Set(), out)
  if (error !== undefined) return Either.left(error)
  try {
    return Either.right(out.join(""))
  } catch (tooLong) {
    // Exponent notation can grow a number fourfold ("1e15"), so a text near the engine's
    // string limit may have a canonical form beyond it.
    if (!(tooLong instanceof RangeError)) throw tooLong
    return Either.left(new JcsError({ path: "$", reason: "canonical form exceeds the maximum string length" }))
  }
}

/**
 * The engine's syntax-error message quotes the text, which comes from the network: its
 * control characters are escaped so that a reason never carries terminal escapes.
 */
const escapeControls = (message: string): string =>
  message.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`
  )

/**
 * The RFC 8785 canonical form of a JSON text: `JSON.parse` (duplicate keys: the last one
 * wins, as in serde_json), then {@link canonicalizeEither}. A syntax error, or a text the
 * engine cannot hold parsed, is a `JcsError` at `$`: whatever the text, nothing is thrown.
 *
 * @since 0.1.0
 */
export const canonicalizeTextEither = (text: string): Either.Either<string, JcsError> => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return Either.left(
      new JcsError({
        path: "$",
        reason: error instanceof SyntaxError
          ? `not JSON: ${escapeControls(error.message)}`
          : "the engine cannot parse this text (too large or too deeply nested)"
      })
    )
  }
  return canonicalizeEither(value)
}

/**
 * {@link canonicalizeEither} for callers that would rather throw: throws the `JcsError`.
 *
 * @since 0.1.0
 */
export const canonicalize = (value: unknown): string => Either.getOrThrowWith(canonicalizeEither(value), (e) => e)

/**
 * {@link canonicalizeTextEither} for callers that would rather throw: throws the
 * `JcsError`.
 *
 * @since 0.1.0
 */
export const canonicalizeText = (text: string): string => Either.getOrThrowWith(canonicalizeTextEither(text), (e) => e)
