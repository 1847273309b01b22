import { describe, expect, it } from "@effect/vitest"
import { canonicalize, canonicalizeEither, canonicalizeText, canonicalizeTextEither, JcsError } from "@nixfleet/proto"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import { Buffer } from "node:buffer"

/** Expects `result` to be a refusal at `path` whose reason contains `fragment`. */
const expectRefused = (result: Either.Either<string, JcsError>, path: string, fragment: string): void => {
  if (Either.isRight(result)) throw new Error(`expected a JcsError, got ${result.right}`)
  expect(result.left).toBeInstanceOf(JcsError)
  expect(result.left._tag).toBe("JcsError")
  expect(result.left.path).toBe(path)
  expect(result.left.reason).toContain(fragment)
  expect(result.left.message).toContain(path)
}

/** Whether a JSON value holds a number that canonicalisation refuses. */
const hasUnsafeNumber = (value: unknown): boolean => {
  if (typeof value === "number") return Math.abs(value) > Number.MAX_SAFE_INTEGER
  if (Array.isArray(value)) return value.some(hasUnsafeNumber)
  if (value !== null && typeof value === "object") return Object.values(value).some(hasUnsafeNumber)
  return false
}

describe("canonicalizeText: the RFC 8785 appendix corpus of nixfleet-canonicalize (§8.1)", () => {
  const cases: ReadonlyArray<readonly [name: string, input: string, expected: string]> = [
    ["empty object", "{}", "{}"],
    ["empty array", "[]", "[]"],
    ["sorted keys stay", `{"a":1,"b":2}`, `{"a":1,"b":2}`],
    ["unsorted keys are sorted", `{"b":2,"a":1}`, `{"a":1,"b":2}`],
    ["numeric-string keys sort as strings", `{"2":"two","10":"ten","1":"one"}`, `{"1":"one","10":"ten","2":"two"}`],
    ["E.1: arrays keep their order", `[56,{"d":true,"10":null,"1":[]}]`, `[56,{"1":[],"10":null,"d":true}]`],
    ["nested objects sort recursively", `{"outer":{"z":1,"a":2}}`, `{"outer":{"a":2,"z":1}}`],
    ["control characters as short escapes", `{"k":"\\b\\t\\n"}`, `{"k":"\\b\\t\\n"}`],
    ["escaped solidus is written unescaped", `{"url":"http:\\/\\/example.com"}`, `{"url":"http://example.com"}`],
    ["primitives", `{"t":true,"f":false,"n":null}`, `{"f":false,"n":null,"t":true}`]
  ]

  for (const [name, input, expected] of cases) {
    it(name, () => {
      expect(canonicalizeText(input)).toBe(expected)
      // Every canonical output is a fixed point.
      expect(canonicalizeText(expected)).toBe(expected)
    })
  }

  it("sorts the repository golden object and keeps array order", () => {
    expect(canonicalizeText(`{"b":2,"a":{"z":null,"y":true,"x":[3,1,2]},"schemaVersion":1}`)).toBe(
      `{"a":{"x":[3,1,2],"y":true,"z":null},"b":2,"schemaVersion":1}`
    )
  })

  it("keeps the already-canonical stream-b golden unchanged", () => {
    const golden = `{"compliant":true,"host":"web-01","port":443,"reachable":false}`
    expect(canonicalizeText(golden)).toBe(golden)
  })

  it("gives the V5 table of §8.2", () => {
    expect(canonicalizeText(`{"2":"two","10":"ten","1":"one"}`)).toBe(`{"1":"one","10":"ten","2":"two"}`)
    expect(canonicalizeText(`[56,{"d":true,"10":null,"1":[]}]`)).toBe(`[56,{"1":[],"10":null,"d":true}]`)
    expect(canonicalizeText(`{"url":"http:\\/\\/example.com"}`)).toBe(`{"url":"http://example.com"}`)
    expect(canonicalizeText(`{"t":true,"f":false,"n":null}`)).toBe(`{"f":false,"n":null,"t":true}`)
  })

  it("removes insignificant whitespace", () => {
    const text = canonicalizeText(`{ "schemaVersion" : 1,\n\t"meta": {"signedAt": "2026-04-24T10:00:00Z"} }\r\n`)
    expect(text).toBe(`{"meta":{"signedAt":"2026-04-24T10:00:00Z"},"schemaVersion":1}`)
  })

  it("keeps the last of duplicate keys, as serde_json does", () => {
    expect(canonicalizeText(`{"a":1,"b":2,"a":3}`)).toBe(`{"a":3,"b":2}`)
  })
})

describe("canonicalize: strings", () => {
  it("escapes control characters as \\b \\t \\n \\f \\r or lowercase \\u00xx, and nothing else", () => {
    expect(canonicalize("\b\t\n\f\r")).toBe(`"\\b\\t\\n\\f\\r"`)
    expect(canonicalize("\u0000\u0001\u000b\u000e\u001f")).toBe(`"\\u0000\\u0001\\u000b\\u000e\\u001f"`)
    expect(canonicalize(`"\\`)).toBe(`"\\"\\\\"`)
    expect(canonicalize("/\u007f\u00e9\u2028\u20ac\u{1f600}")).toBe(`"/\u007f\u00e9\u2028\u20ac\u{1f600}"`)
    expect(canonicalizeText(`"\\u00E9\\u20AC\\ud83d\\ude00"`)).toBe(`"\u00e9\u20ac\u{1f600}"`)
  })

  it("writes the RFC 8785 §3.2.3 sorting example in UTF-16 code-unit order", () => {
    const value = {
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\u{1f600}": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }
    expect(canonicalize(value)).toBe(
      `{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",` +
        `"\u20ac":"Euro Sign","\u{1f600}":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}`
    )
  })

  it("orders a non-BMP key by its surrogates, before U+E000 to U+FFFF (code-point order would differ)", () => {
    expect(canonicalize({ "\uffff": 1, "\u{10000}": 2, "\ue000": 3, "\ud7ff": 4 })).toBe(
      `{"\ud7ff":4,"\u{10000}":2,"\ue000":3,"\uffff":1}`
    )
  })
})

describe("canonicalize: numbers (RFC 8785 §3.2.2.3 and appendix B)", () => {
  /** The double whose IEEE 754 bits are `hex`, as appendix B lists them. */
  const fromBits = (hex: string): number => Buffer.from(hex, "hex").readDoubleBE(0)

  const appendixB: ReadonlyArray<readonly [bits: string, expected: string]> = [
    ["0000000000000000", "0"],
    ["8000000000000000", "0"],
    ["0000000000000001", "5e-324"],
    ["8000000000000001", "-5e-324"],
    ["3eb0c6f7a0b5ed8c", "9.999999999999997e-7"],
    ["3eb0c6f7a0b5ed8d", "0.000001"],
    ["41b3de4355555553", "333333333.3333332"],
    ["41b3de4355555554", "333333333.33333325"],
    ["41b3de4355555555", "333333333.3333333"],
    ["41b3de4355555556", "333333333.3333334"],
    ["41b3de4355555557", "333333333.33333343"],
    ["becbf647612f3696", "-0.0000033333333333333333"],
    ["43143ff3c1cb0959", "1424953923781206.2"]
  ]

  for (const [bits, expected] of appendixB) {
    it(`${bits} → ${expected}`, () => {
      expect(canonicalize(fromBits(bits))).toBe(expected)
    })
  }

  it("writes -0 as 0, small numbers with an exponent, and safe integers in full", () => {
    expect(canonicalize(-0)).toBe("0")
    expect(canonicalize([-0, 1e-7, 4.5, 2e-3, 1e-27])).toBe("[0,1e-7,4.5,0.002,1e-27]")
    expect(canonicalize([Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER])).toBe(
      "[9007199254740991,-9007199254740991]"
    )
  })

  it("reads number literals as ECMAScript does", () => {
    expect(canonicalizeText("[1.0,1e2,-0,-0.0,4.50,2e-3,0.000000000000000000000000001,333333333.33333329]")).toBe(
      "[1,100,0,0,4.5,0.002,1e-27,333333333.3333333]"
    )
  })

  it("refuses numbers beyond ±(2^53 − 1), which includes appendix B's 1e+21, 1e+23 and 9007199254740992", () => {
    for (
      const bits of ["4340000000000000", "c340000000000000", "444b1ae4d6e2ef50", "44b52d02c7e14af6", "7fefffffffffffff"]
    ) {
      expectRefused(canonicalizeEither(fromBits(bits)), "$", "2^53")
    }
    for (const value of [9007199254740992, -9007199254740992, 1e21, 1e30]) {
      expectRefused(canonicalizeEither(value), "$", "2^53")
    }
    // JSON.parse would round this u64 to 9007199254740992, which the producer never wrote.
    expectRefused(canonicalizeTextEither(`{"seq":9007199254740993}`), "$.seq", "2^53")
    expectRefused(canonicalizeTextEither("[1e21]"), "$[0]", "2^53")
  })

  it("refuses non-finite numbers", () => {
    expectRefused(canonicalizeEither(Number.NaN), "$", "NaN is not a JSON number")
    expectRefused(canonicalizeEither([Number.POSITIVE_INFINITY]), "$[0]", "Infinity is not a JSON number")
    expectRefused(canonicalizeTextEither(`{"big":1e400}`), "$.big", "Infinity is not a JSON number")
  })
})

describe("canonicalize: refusals", () => {
  it("refuses strings and keys that are not well-formed Unicode", () => {
    expectRefused(canonicalizeEither({ a: ["ok", "\ud800"] }), "$.a[1]", "lone UTF-16 surrogate")
    expectRefused(canonicalizeEither("\ude00x"), "$", "lone UTF-16 surrogate")
    expectRefused(canonicalizeEither("x\ud83d"), "$", "lone UTF-16 surrogate")
    expectRefused(canonicalizeEither({ "\udc00": 1 }), `$["\\udc00"]`, "lone UTF-16 surrogate")
    expectRefused(canonicalizeTextEither(`{"k":"\\ud800"}`), "$.k", "lone UTF-16 surrogate")
  })

  it("refuses undefined, functions, symbols and bigints", () => {
    expectRefused(canonicalizeEither(undefined), "$", "undefined is not JSON data")
    expectRefused(canonicalizeEither({ a: undefined }), "$.a", "undefined is not JSON data")
    expectRefused(canonicalizeEither([1, () => 1]), "$[1]", "function is not JSON data")
    expectRefused(canonicalizeEither({ s: Symbol("s") }), "$.s", "symbol is not JSON data")
    expectRefused(canonicalizeEither({ n: 1n }), "$.n", "bigint is not JSON data")
    // A hole in a sparse array reads as undefined.
    const sparse = new Array<unknown>(3)
    sparse[0] = 1
    sparse[2] = 3
    expectRefused(canonicalizeEither(sparse), "$[1]", "undefined is not JSON data")
  })

  it("refuses objects that are not plain JSON data instead of guessing their form", () => {
    expectRefused(canonicalizeEither({ at: new Date(0) }), "$.at", "Date is not plain JSON data")
    expectRefused(canonicalizeEither(new Map([["a", 1]])), "$", "Map is not plain JSON data")
    expect(canonicalize(Object.assign(Object.create(null), { b: 1, a: 2 }))).toBe(`{"a":2,"b":1}`)
  })

  it("refuses cycles but accepts a value shared by two branches", () => {
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic["self"] = { inner: cyclic }
    expectRefused(canonicalizeEither(cyclic), "$.self.inner", "cycle")
    const list: Array<unknown> = []
    list.push(list)
    expectRefused(canonicalizeEither(list), "$[0]", "cycle")
    const shared = { x: 1 }
    expect(canonicalize({ a: shared, b: [shared] })).toBe(`{"a":{"x":1},"b":[{"x":1}]}`)
  })

  it("refuses more than 127 nested containers, as serde_json does, without overflowing the stack", () => {
    expect(canonicalizeText(`${"[".repeat(127)}${"]".repeat(127)}`)).toBe(`${"[".repeat(127)}${"]".repeat(127)}`)
    expectRefused(canonicalizeTextEither(`${"[".repeat(128)}${"]".repeat(128)}`), `$${"[0]".repeat(127)}`, "127")
    expect(Either.isLeft(canonicalizeTextEither(`${"[".repeat(200_000)}${"]".repeat(200_000)}`))).toBe(true)
  })

  it("reports a syntax error as a JcsError at $", () => {
    for (const text of ["", "{", `{"a":1,}`, "[1 2]", "{'a':1}", "NaN", "\ufeff{}", "// c\n{}"]) {
      expectRefused(canonicalizeTextEither(text), "$", "not JSON")
    }
  })

  it("throws the JcsError from the throwing variants", () => {
    expect(() => canonicalize({ n: Number.NaN })).toThrow(JcsError)
    expect(() => canonicalizeText("{")).toThrow(JcsError)
    expect(() => canonicalizeText("{")).toThrow(/cannot canonicalise JSON at \$: not JSON/)
  })
})

describe("canonicalize: properties", () => {
  it.prop(
    "is a fixed point of canonicalizeText, and refuses exactly the values with unsafe numbers",
    [FastCheck.jsonValue({ stringUnit: "binary" })],
    ([value]) => {
      const result = canonicalizeEither(value)
      expect(Either.isLeft(result)).toBe(hasUnsafeNumber(value))
      if (Either.isRight(result)) {
        expect(canonicalizeText(result.right)).toBe(result.right)
        expect(JSON.parse(result.right)).toStrictEqual(JSON.parse(JSON.stringify(value)))
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "does not depend on the order keys were inserted in",
    [FastCheck.dictionary(FastCheck.string({ unit: "binary" }), FastCheck.integer())],
    ([dict]) => {
      const reversed = Object.fromEntries(Object.entries(dict).reverse())
      expect(canonicalize(reversed)).toBe(canonicalize(dict))
    }
  )
})
