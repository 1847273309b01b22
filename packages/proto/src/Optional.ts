/**
 * How optional wire fields map to `null` in memory. The control plane's serde types either
 * omit an absent field (`skip_serializing_if`) or write `null`; both must round-trip
 * byte for byte, and consumers accept either form on input.
 *
 * @since 0.1.0
 */
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * An optional key, `T | null` in memory. Decoding accepts an absent key or `null`;
 * encoding omits the key when the value is `null`.
 *
 * @since 0.1.0
 */
export const omittedWhenNull = <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  Schema.optionalToRequired(Schema.NullOr(schema), Schema.NullOr(Schema.typeSchema(schema)), {
    decode: Option.getOrElse(() => null),
    encode: Option.liftPredicate((value) => value !== null)
  })

/**
 * An optional key, `T | null` in memory. Decoding accepts an absent key or `null`;
 * encoding always writes the key, `null` when absent (serde's default for `Option`).
 *
 * @since 0.1.0
 */
export const nullWhenAbsent = <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  Schema.optionalWith(Schema.NullOr(schema), { default: () => null })

/**
 * A key that serde fills with a default when it is absent (`#[serde(default)]`); encoding
 * always writes it.
 *
 * @since 0.1.0
 */
export const withDefault = <A, I, R>(schema: Schema.Schema<A, I, R>, value: () => NoInfer<A>) =>
  Schema.optionalWith(schema, { default: value })
