/**
 * RFC 3339 timestamps as the control plane (Rust chrono) reads and writes them.
 *
 * @since 0.1.0
 */
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/

const daysIn = (year: number, month: number): number => {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/**
 * Parses any RFC 3339 date-time (any offset, any number of fraction digits, `T`, `t` or a
 * space as separator). Digits below the millisecond are dropped. A leap second (`:60`) is
 * read as the first instant of the next second, which is what a `Date` can represent.
 *
 * @since 0.1.0
 */
export const parseRfc3339 = (text: string): Date | undefined => {
  const m = RFC3339.exec(text)
  if (m === null) return undefined
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number
  ]
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined
  if (hour > 23 || minute > 59 || second > 60) return undefined
  let offsetMinutes = 0
  if (m[8] !== undefined) {
    const oh = Number(m[9])
    const om = Number(m[10])
    if (oh > 23 || om > 59) return undefined
    offsetMinutes = (m[8] === "-" ? -1 : 1) * (oh * 60 + om)
  }
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, "0"))
  const date = new Date(0)
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0–99 to 1900–1999.
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second, millis)
  return new Date(date.getTime() - offsetMinutes * 60_000)
}

/**
 * Formats a date the way chrono serialises a `DateTime<Utc>`: UTC with `Z`, no fraction
 * when the milliseconds are zero, otherwise exactly three fraction digits. Returns
 * `undefined` for dates RFC 3339 cannot express (invalid, or a year outside 0000–9999).
 *
 * @since 0.1.0
 */
export const formatRfc3339 = (date: Date): string | undefined => {
  const ms = date.getTime()
  if (!Number.isFinite(ms)) return undefined
  const year = date.getUTCFullYear()
  if (year < 0 || year > 9999) return undefined
  const iso = date.toISOString()
  // toISOString writes years 0000–9999 with four digits and always three fraction digits.
  return iso.endsWith(".000Z") ? `${iso.slice(0, -5)}Z` : iso
}

const MIN_ARBITRARY = new Date("1970-01-01T00:00:00Z")
const MAX_ARBITRARY = new Date("2200-01-01T00:00:00Z")

/**
 * A valid `Date` that RFC 3339 can express. Property tests draw instants between 1970 and
 * 2200.
 *
 * @since 0.1.0
 */
export const Instant = Schema.ValidDateFromSelf.pipe(
  Schema.filter((d) => formatRfc3339(d) !== undefined, {
    message: () => "a date with a year between 0000 and 9999"
  })
).annotations({
  identifier: "Instant",
  arbitrary: () => (fc) => fc.date({ min: MIN_ARBITRARY, max: MAX_ARBITRARY, noInvalidDate: true })
})

/**
 * RFC 3339 text on the wire, `Date` in memory.
 *
 * @since 0.1.0
 */
export const Timestamp = Schema.transformOrFail(Schema.String, Instant, {
  strict: true,
  decode: (text, _, ast) => {
    const date = parseRfc3339(text)
    return date === undefined
      ? ParseResult.fail(new ParseResult.Type(ast, text, `expected an RFC 3339 timestamp, got ${JSON.stringify(text)}`))
      : ParseResult.succeed(date)
  },
  encode: (date, _, ast) => {
    const text = formatRfc3339(date)
    return text === undefined
      ? ParseResult.fail(new ParseResult.Type(ast, date, "date cannot be written as RFC 3339"))
      : ParseResult.succeed(text)
  }
}).annotations({ identifier: "Timestamp" })
