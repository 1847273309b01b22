/**
 * Input from a hostile control plane, before any signature is known good: integers beyond
 * what a JavaScript number holds, artifacts nested far deeper than the stack allows or
 * holding huge arrays, and control bytes. Each is a typed refusal (a `ParseError`, an
 * `ArtifactVerifyError`, a `JcsError`), never a throw, a defect or a stack overflow.
 */
import { describe, expect, it } from "@effect/vitest"
import { canonicalizeTextEither, I32, type KeySlot, U16, U32, U64, verifyArtifact } from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Crypto from "node:crypto"

const key = Crypto.generateKeyPairSync("ed25519")
const slot: KeySlot = {
  current: {
    algorithm: "ed25519",
    public: Buffer.from(key.publicKey.export({ format: "jwk" }).x ?? "", "base64url").toString("base64")
  },
  previous: null,
  rejectBefore: null
}
const now = new Date("2026-05-17T12:00:00Z")
const encode = (text: string) => new TextEncoder().encode(text)
const verify = (text: string, signature: Uint8Array = new Uint8Array(64)) =>
  verifyArtifact({ bytes: encode(text), signature, trust: slot, now, freshnessWindowSecs: 3600 })

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

describe("integers", () => {
  it("2^53 and beyond, negative, fractional, non-finite and numeric strings are decode errors", () => {
    const refused: ReadonlyArray<unknown> = [
      2 ** 53,
      2 ** 53 + 2,
      JSON.parse("9007199254740993"),
      1e300,
      -1,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      "NaN",
      "1",
      null
    ]
    for (const value of refused) {
      expect(Either.isLeft(Schema.decodeUnknownEither(U64)(value)), String(value)).toBe(true)
      expect(Either.isLeft(Schema.decodeUnknownEither(U32)(value)), String(value)).toBe(true)
      expect(Either.isLeft(Schema.decodeUnknownEither(U16)(value)), String(value)).toBe(true)
    }
    for (const value of [2 ** 31, -(2 ** 31) - 1, 0.5, "NaN", Number.NaN]) {
      expect(Either.isLeft(Schema.decodeUnknownEither(I32)(value)), String(value)).toBe(true)
    }
    expect(Schema.decodeUnknownSync(U64)(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER)
    expect(Schema.decodeUnknownSync(U32)(0xffff_ffff)).toBe(0xffff_ffff)
    expect(Schema.decodeUnknownSync(I32)(-3)).toBe(-3)
  })
})

describe("signed artifacts before the signature is checked", () => {
  it.effect("10,000 and 1,000,000 levels deep: Parse", () =>
    Effect.gen(function*() {
      for (const depth of [10_000, 1_000_000]) {
        const text = `{"schemaVersion":1,"hosts":${"[".repeat(depth)}${"]".repeat(depth)}}`
        const error = yield* Effect.flip(verify(text))
        expect(error._tag).toBe("Parse")
        expect(error.message).toContain("nested deeper than 127 levels")
      }
      // Unbalanced: the parser's own refusal.
      expect((yield* Effect.flip(verify("[".repeat(2_000_000))))._tag).toBe("Parse")
    }))

  it.effect("a 500,000-element array is canonicalised and refused by the signature", () =>
    Effect.gen(function*() {
      const text = `{"schemaVersion":1,"hosts":[${new Array<string>(500_000).fill("0").join(",")}]}`
      const error = yield* Effect.flip(verify(text))
      expect(error._tag).toBe("BadSignature")
    }))

  it.effect("2^53 is Parse; wrong types are refused by the signature before the header is read", () =>
    Effect.gen(function*() {
      expect((yield* Effect.flip(verify(`{"schemaVersion":9007199254740992}`)))._tag).toBe("Parse")
      expect((yield* Effect.flip(verify(`{"schemaVersion":"1","meta":[]}`)))._tag).toBe("BadSignature")
    }))

  it.effect("control bytes: the refusal quotes none of them raw", () =>
    Effect.gen(function*() {
      for (const text of ["\u001b[2J{\"a\":1}", "{\"a\":\"\u0000\u001b]52;c;ZXZpbA==\u0007\"}", "\u009b31m"]) {
        const error = yield* Effect.flip(verify(text))
        expect(error._tag).toBe("Parse")
        expect(CONTROL.test(error.message), JSON.stringify(error.message)).toBe(false)
      }
      const escaped = yield* Effect.flip(verify("{\"a\":\"\\u0000\\u001b[2J\"}"))
      expect(escaped._tag).toBe("BadSignature")
      expect(CONTROL.test(escaped.message)).toBe(false)
    }))

  it("canonicalizeTextEither never throws on deep input", () => {
    const result = canonicalizeTextEither(`${"[".repeat(100_000)}${"]".repeat(100_000)}`)
    expect(Either.isLeft(result) && result.left.reason).toMatch(/nested deeper than 127 levels/)
  })
})
