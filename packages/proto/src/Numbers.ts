/**
 * Integer ranges of the Rust wire types, kept inside what a JavaScript number holds exactly.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * A Rust `u64`, limited to 2^53 − 1 so that it survives a JavaScript number (seq,
 * lastEventSeq, sustainedDurationSecs).
 *
 * @since 0.1.0
 */
export const U64 = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER)).annotations({ identifier: "U64" })

/** @since 0.1.0 */
export const U32 = Schema.Int.pipe(Schema.between(0, 0xffff_ffff)).annotations({ identifier: "U32" })

/** @since 0.1.0 */
export const U16 = Schema.Int.pipe(Schema.between(0, 0xffff)).annotations({ identifier: "U16" })

/**
 * A Rust `i32` (exit codes; the agent uses -1, -2 and -3 for its own failure classes).
 *
 * @since 0.1.0
 */
export const I32 = Schema.Int.pipe(Schema.between(-0x8000_0000, 0x7fff_ffff)).annotations({ identifier: "I32" })
