/**
 * JSON objects used as maps (hosts, channels, policies, framework articles).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * A map key. `__proto__` is refused: decoding writes keys into a plain object, where that
 * key would replace the prototype instead of adding an entry, silently losing the value.
 *
 * @since 0.1.0
 */
export const JsonRecordKey = Schema.String.pipe(
  Schema.filter((key) => key !== "__proto__")
).annotations({ identifier: "a key other than \"__proto__\"" })

/**
 * A JSON object whose keys are data, such as `hosts` of `fleet.resolved`. A key the key
 * schema refuses is an error here, not an excess property silently dropped; inside the
 * values, unknown fields are ignored as everywhere else.
 *
 * @since 0.1.0
 */
export const JsonRecord = <A, I, R>(value: Schema.Schema<A, I, R>) =>
  Schema.Record({
    key: JsonRecordKey,
    value: value.annotations({ parseOptions: { onExcessProperty: "ignore" } })
  }).annotations({ parseOptions: { onExcessProperty: "error" } })
