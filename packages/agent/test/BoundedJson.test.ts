/**
 * The pre-scan and the safe formatting every control-plane answer goes through.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import {
  decodeJson,
  formatParseError,
  MAX_DEPTH,
  MAX_ENTRIES,
  parseJson,
  prescan,
  safeText
} from "../src/support/boundedJson.js"

const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`
const array = (length: number) => `[${new Array<string>(length).fill("1").join(",")}]`
const object = (length: number) => `{${Array.from({ length }, (_, i) => `"k${i}":1`).join(",")}}`

describe("prescan", () => {
  it("bounds nesting and entries, arrays and objects alike", () => {
    expect(prescan(nested(MAX_DEPTH))).toBeUndefined()
    expect(prescan(nested(MAX_DEPTH + 1))).toMatch(/nested deeper than 64 levels/)
    expect(prescan(`{"a":${nested(MAX_DEPTH)}}`)).toMatch(/nested deeper/)
    expect(prescan(array(MAX_ENTRIES))).toBeUndefined()
    expect(prescan(array(MAX_ENTRIES + 1))).toMatch(/more than 10000 entries/)
    expect(prescan(object(MAX_ENTRIES))).toBeUndefined()
    expect(prescan(object(MAX_ENTRIES + 1))).toMatch(/more than 10000 entries/)
    // Entries are counted per container, not in total.
    expect(prescan(`[${array(MAX_ENTRIES)},${array(MAX_ENTRIES)}]`)).toBeUndefined()
  })

  it("reads strings as strings: brackets, commas and escaped quotes inside them count for nothing", () => {
    expect(prescan(`{"a":${JSON.stringify("[".repeat(1000) + ",".repeat(20_000))}}`)).toBeUndefined()
    expect(prescan(`{"a":"x\\"${"[".repeat(100)}","b":"\\\\"}`)).toBeUndefined()
    expect(prescan(`["\\\\",${nested(MAX_DEPTH)}]`)).toMatch(/nested deeper/)
  })

  it("refuses control characters in strings but tab, line feed and carriage return", () => {
    expect(prescan(JSON.stringify({ certPem: "-----BEGIN-----\r\n\tAAAA\n-----END-----\n" }))).toBeUndefined()
    expect(prescan("\"\\u00e9\\u2603\\uD83D\\uDE00\"")).toBeUndefined()
    for (const escape of ["\\u0000", "\\u001b", "\\u001B", "\\u0007", "\\u007f", "\\u0085", "\\u009b", "\\b", "\\f"]) {
      expect(prescan(`{"a":"x${escape}"}`), escape).toMatch(/control character U\+00[0-9A-F]{2}/)
    }
    for (const raw of ["\u0000", "\u001b", "\u007f", "\u009b"]) {
      expect(prescan(`{"a":"x${raw}"}`), JSON.stringify(raw)).toMatch(/control character/)
    }
  })
})

describe("parseJson and decodeJson", () => {
  it("say why, in one short line", () => {
    expect(parseJson("{\"a\":1}")).toStrictEqual(Either.right({ a: 1 }))
    expect(parseJson("{\"a\": <<\u001b[2J>>}")).toMatchObject({ _tag: "Left", left: { reason: "syntax" } })
    expect(parseJson(nested(10_000))).toMatchObject({ _tag: "Left", left: { reason: "limits" } })
  })

  it.effect("a schema error names the path and stays bounded", () =>
    Effect.gen(function*() {
      const decode = decodeJson(Schema.Struct({ list: Schema.Array(Schema.Struct({ n: Schema.Int })) }))
      const error = yield* Effect.flip(decode(`{"list":[{"n":1},{"n":"${"x".repeat(100_000)}"}]}`))
      expect(error.reason).toBe("schema")
      expect(error.detail).toMatch(/^\$\.list\[1\]\.n: Expected/)
      expect(error.detail.length).toBeLessThanOrEqual(512)
    }))
})

describe("formatParseError", () => {
  it("never throws: a value whose formatting throws gives a generic message", () => {
    // Every property read throws (a getter, a proxy): what the formatter reads to describe it.
    const hostile = new Proxy({}, {
      get() {
        throw new Error("boom")
      }
    })
    const error = Schema.decodeUnknownEither(Schema.String)(hostile)
    expect(Either.isLeft(error)).toBe(true)
    if (Either.isLeft(error)) expect(formatParseError(error.left)).toMatch(/could not be formatted/)
  })

  it("does not overflow on a value nested 10,000 levels deep", () => {
    const error = Schema.decodeUnknownEither(Schema.String)(JSON.parse(nested(10_000)))
    if (Either.isLeft(error)) {
      const text = formatParseError(error.left)
      expect(text.length).toBeLessThanOrEqual(512)
    } else {
      expect.fail("decoded")
    }
  })
})

describe("safeText", () => {
  it("escapes control characters and line separators, and cuts at the bound", () => {
    expect(safeText("a\u0000b\u001b[2J\nc\u2028\u009b")).toBe("a\\u0000b\\u001B[2J\\nc\\u2028\\u009B")
    expect(safeText("x".repeat(600))).toHaveLength(512)
    expect(safeText("x".repeat(600)).endsWith("…")).toBe(true)
    expect(safeText("\u0000".repeat(600)).length).toBeLessThanOrEqual(512)
    // A cut never leaves half a surrogate pair, and a lone one is escaped.
    expect(safeText(`${"x".repeat(510)}😀😀`, 512)).toBe(`${"x".repeat(510)}…`)
    expect(safeText("a\uD800b")).toBe("a\\uD800b")
  })
})
