import { describe, expect, it } from "@effect/vitest"
import { FleetResolved, JsonRecord } from "@nixfleet/proto"
import { Either, Schema } from "effect"

describe("JsonRecord", () => {
  it("keeps ordinary keys", () => {
    expect(Schema.decodeUnknownSync(JsonRecord(Schema.Number))(JSON.parse("{\"a\":1,\"constructor\":2}")))
      .toStrictEqual({
        a: 1,
        constructor: 2
      })
  })

  it("refuses a __proto__ key with a clear error instead of losing its value", () => {
    const result = Schema.decodeUnknownEither(JsonRecord(Schema.Number))(JSON.parse("{\"__proto__\":1}"))
    expect(Either.isLeft(result) && result.left.message).toMatch(
      /\["__proto__"\]\s+└─ is unexpected, expected: a key other than "__proto__"/
    )
  })

  it("applies to fleet.resolved hosts", () => {
    const fleet = JSON.parse(
      "{\"schemaVersion\":1,\"hosts\":{\"__proto__\":{\"platform\":\"x86_64-linux\",\"tags\":[],\"channel\":\"stable\",\"closureHash\":null,\"pubkey\":null}},\"channels\":{},\"waves\":{},\"meta\":{\"schemaVersion\":1,\"signedAt\":null,\"ciCommit\":null}}"
    )
    expect(Either.isLeft(Schema.decodeUnknownEither(FleetResolved)(fleet))).toBe(true)
  })
})

describe("JsonRecord values", () => {
  it("still ignore unknown fields", () => {
    const schema = JsonRecord(Schema.Struct({ a: Schema.Number }))
    expect(Schema.decodeUnknownSync(schema)({ h: { a: 1, extra: 2 } })).toStrictEqual({ h: { a: 1 } })
  })
})
