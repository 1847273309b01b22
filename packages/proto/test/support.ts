/**
 * Assertions shared by the wire-schema tests.
 */
import { expect } from "@effect/vitest"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/**
 * Decodes an upstream JSON document, checks that encoding the result gives back exactly
 * the same document, and returns the decoded value.
 */
export const expectRoundTrip = <A, I>(schema: Schema.Schema<A, I>, json: unknown): A => {
  const decoded = Schema.decodeUnknownSync(schema)(json)
  expect(Schema.encodeSync(schema)(decoded)).toStrictEqual(json)
  return decoded
}

/** Decodes an input that must be accepted. */
export const decodeOk = <A, I>(schema: Schema.Schema<A, I>, input: unknown): A =>
  Schema.decodeUnknownSync(schema)(input)

/** Encodes a value that must be encodable. */
export const encodeOk = <A, I>(schema: Schema.Schema<A, I>, value: A): I => Schema.encodeSync(schema)(value)

/**
 * Decodes an input that must be refused: the result is a `ParseError` in the `Either`
 * (never a throw), whose message contains `fragment` when given. Returns the message.
 */
export const expectRejected = <A, I>(schema: Schema.Schema<A, I>, input: unknown, fragment?: string): string => {
  const result = Schema.decodeUnknownEither(schema)(input)
  if (Either.isRight(result)) {
    throw new Error(`expected a ParseError, decoded ${JSON.stringify(result.right)}`)
  }
  expect(ParseResult.isParseError(result.left)).toBe(true)
  if (fragment !== undefined) expect(result.left.message).toContain(fragment)
  return result.left.message
}

/** `decode(encode(value))` must give `value` back. */
export const expectTypeRoundTrip = <A, I>(schema: Schema.Schema<A, I>, value: A): void => {
  expect(Schema.decodeUnknownSync(schema)(Schema.encodeSync(schema)(value))).toStrictEqual(value)
}

/** Inputs that are not JSON objects. */
export const nonObjects: ReadonlyArray<unknown> = [null, undefined, 42, "text", true, [], [{}]]

/**
 * RFC 8785 canonical text for the JSON the fixtures use (ASCII strings, safe integers,
 * booleans, null): object keys sorted by UTF-16 code units, no whitespace.
 */
export const canonicalText = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonicalText).join(",")}]`
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalText(item)}`).join(",")}}`
  }
  return JSON.stringify(value)
}
