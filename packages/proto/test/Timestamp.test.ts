import { describe, expect, it } from "@effect/vitest"
import { Instant, parseRfc3339, Timestamp } from "@nixfleet/proto"
import * as Arbitrary from "effect/Arbitrary"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { decodeOk, encodeOk, expectRejected, expectRoundTrip } from "./support.js"

const CHRONO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3})?Z$/

describe("Timestamp", () => {
  it("reads and writes the control plane's UTC timestamps unchanged", () => {
    expect(expectRoundTrip(Timestamp, "2026-05-17T12:00:00Z")).toStrictEqual(new Date(Date.UTC(2026, 4, 17, 12)))
    expect(expectRoundTrip(Timestamp, "2026-05-17T12:00:00.250Z").getTime()).toBe(Date.UTC(2026, 4, 17, 12, 0, 0, 250))
    expectRoundTrip(Timestamp, "2026-04-30T12:00:00Z")
    expectRoundTrip(Timestamp, "1999-12-31T23:59:59.999Z")
  })

  it("writes no fraction when the milliseconds are zero, otherwise exactly three digits", () => {
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00.000Z"))).toBe("2026-05-17T12:00:00Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00.000000000Z"))).toBe("2026-05-17T12:00:00Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00.1Z"))).toBe("2026-05-17T12:00:00.100Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00.05Z"))).toBe("2026-05-17T12:00:00.050Z")
    expect(encodeOk(Timestamp, new Date(Date.UTC(2026, 4, 17, 12, 0, 0, 7)))).toBe("2026-05-17T12:00:00.007Z")
  })

  it("drops the digits below the millisecond instead of rounding", () => {
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00.123456789Z"))).toBe("2026-05-17T12:00:00.123Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00.999999Z"))).toBe("2026-05-17T12:00:00.999Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00.0009Z"))).toBe("2026-05-17T12:00:00Z")
  })

  it("accepts any offset and writes the instant in UTC", () => {
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T14:00:00+02:00"))).toBe("2026-05-17T12:00:00Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T06:30:00.5-05:30"))).toBe("2026-05-17T12:00:00.500Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00+00:00"))).toBe("2026-05-17T12:00:00Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17T12:00:00-00:00"))).toBe("2026-05-17T12:00:00Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-01-01T00:30:00+01:00"))).toBe("2025-12-31T23:30:00Z")
  })

  it("accepts a lower-case t and z, a space separator and JavaScript's toISOString output", () => {
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17t12:00:00z"))).toBe("2026-05-17T12:00:00Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2026-05-17 12:00:00Z"))).toBe("2026-05-17T12:00:00Z")
    const now = new Date(Date.UTC(2026, 4, 17, 12, 0, 0, 250))
    expect(decodeOk(Timestamp, now.toISOString())).toStrictEqual(now)
  })

  it("reads a leap second as the start of the next second", () => {
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2016-12-31T23:59:60Z"))).toBe("2017-01-01T00:00:00Z")
  })

  it("checks the calendar", () => {
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2024-02-29T00:00:00Z"))).toBe("2024-02-29T00:00:00Z")
    expect(encodeOk(Timestamp, decodeOk(Timestamp, "2000-02-29T00:00:00Z"))).toBe("2000-02-29T00:00:00Z")
    expectRejected(Timestamp, "2026-02-29T00:00:00Z")
    expectRejected(Timestamp, "1900-02-29T00:00:00Z")
    expectRejected(Timestamp, "2026-02-30T00:00:00Z")
    expectRejected(Timestamp, "2026-04-31T00:00:00Z")
    expectRejected(Timestamp, "2026-13-01T00:00:00Z")
    expectRejected(Timestamp, "2026-00-10T00:00:00Z")
    expectRejected(Timestamp, "2026-05-00T00:00:00Z")
  })

  it("refuses text that is not an RFC 3339 date-time", () => {
    for (
      const bad of [
        "2026-05-17T12:00:00",
        "2026-05-17T12:00:00.250",
        "2026-05-17",
        "2026-05-17T24:00:00Z",
        "2026-05-17T12:60:00Z",
        "2026-05-17T12:00:61Z",
        "2026-05-17T12:00:00+24:00",
        "2026-05-17T12:00:00+02:60",
        "2026-05-17T12:00:00+0200",
        "2026-05-17T12:00:00.Z",
        "2026-5-17T12:00:00Z",
        "2026-05-17T12:00Z",
        " 2026-05-17T12:00:00Z",
        "2026-05-17T12:00:00Z ",
        "2026-05-17T12:00:00Z\n",
        "2026-05-17X12:00:00Z",
        "Sun, 17 May 2026 12:00:00 GMT",
        "",
        "now"
      ]
    ) {
      expectRejected(Timestamp, bad, "expected an RFC 3339 timestamp")
    }
  })

  it("refuses values that are not strings", () => {
    for (const bad of [1747483200, 1747483200000, null, undefined, {}, [], true]) {
      expectRejected(Timestamp, bad)
    }
    expectRejected(Timestamp, new Date(Date.UTC(2026, 4, 17)))
  })

  it("fails to encode, without throwing, a date RFC 3339 cannot express", () => {
    for (const bad of [new Date(Number.NaN), new Date(Date.UTC(10000, 0, 1)), new Date(Date.UTC(-1, 0, 1))]) {
      const result = Schema.encodeEither(Timestamp)(bad)
      expect(Either.isLeft(result) && ParseResult.isParseError(result.left)).toBe(true)
    }
    expect(encodeOk(Timestamp, new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)))).toBe("9999-12-31T23:59:59.999Z")
  })

  it("parseRfc3339 reads years below 100 as themselves", () => {
    expect(parseRfc3339("0050-06-01T00:00:00Z")?.getUTCFullYear()).toBe(50)
    expect(parseRfc3339("not a date")).toBeUndefined()
  })

  it.prop("writes every instant the chrono way and reads it back", [Arbitrary.make(Instant)], ([instant]) => {
    const text = encodeOk(Timestamp, instant)
    expect(text).toMatch(CHRONO_UTC)
    expect(text.endsWith(".000Z")).toBe(false)
    expect(decodeOk(Timestamp, text)).toStrictEqual(instant)
  })

  it.prop(
    "reads an instant written with any offset as the same instant",
    [Arbitrary.make(Instant), Arbitrary.make(Schema.Int.pipe(Schema.between(-23 * 60 - 59, 23 * 60 + 59)))],
    ([instant, offsetMinutes]) => {
      const local = new Date(instant.getTime() + offsetMinutes * 60_000).toISOString().slice(0, -1)
      const sign = offsetMinutes < 0 ? "-" : "+"
      const abs = Math.abs(offsetMinutes)
      const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`
      expect(decodeOk(Timestamp, `${local}${offset}`)).toStrictEqual(instant)
    }
  )
})
