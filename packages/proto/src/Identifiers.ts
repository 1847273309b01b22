/**
 * Validated identifiers: anything that ends up in a path or an argv passes one of these
 * first.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** Nix's base-32 alphabet: digits and lowercase letters without e, o, t and u. */
const NIX_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"

/** Nix refuses store path names longer than 211 characters. */
const MAX_STORE_NAME = 211

const CLOSURE_NAME = new RegExp(`^[${NIX_BASE32}]{32}-[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]*$`)

/**
 * The basename of a Nix store path, `<32 nix-base32 chars>-<name>`, with the characters
 * Nix allows in a name and a name that does not start with a dot. Nothing else may reach
 * `/nix/store/…`, `nix-store` or `nix-env`.
 *
 * @since 0.1.0
 */
export const ClosureName = Schema.String.pipe(
  Schema.filter((s) => CLOSURE_NAME.test(s) && s.length - 33 <= MAX_STORE_NAME, {
    message: (issue) =>
      `expected a Nix store basename (<32 nix-base32 chars>-<name>), got ${JSON.stringify(issue.actual)}`
  }),
  Schema.brand("ClosureName")
).annotations({
  identifier: "ClosureName",
  arbitrary: () => (fc) =>
    fc
      .tuple(
        fc.array(fc.constantFrom(...NIX_BASE32), { minLength: 32, maxLength: 32 }),
        fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,30}$/)
      )
      .map(([hash, name]) => `${hash.join("")}-${name}` as ClosureName)
})
/** @since 0.1.0 */
export type ClosureName = typeof ClosureName.Type

/** Long enough for a channel and a full SHA-256 ref, short enough for `<id>.json.sig` file names. */
const MAX_ROLLOUT_ID = 200

const ROLLOUT_ID = /^[a-z0-9_-]+@[0-9a-f]+$/

/**
 * A rollout id as the control plane's routes accept it: `<channel>@<channel ref>`, the
 * channel `[a-z0-9_-]+` and the ref lowercase hex (a git commit), at most 200 characters.
 *
 * @since 0.1.0
 */
export const RolloutId = Schema.String.pipe(
  Schema.filter((s) => ROLLOUT_ID.test(s) && s.length <= MAX_ROLLOUT_ID, {
    message: (issue) =>
      `expected a rollout id <channel [a-z0-9_-]+>@<lowercase hex>, got ${JSON.stringify(issue.actual)}`
  }),
  Schema.brand("RolloutId")
).annotations({
  identifier: "RolloutId",
  arbitrary: () => (fc) =>
    fc
      .tuple(fc.stringMatching(/^[a-z0-9_-]{1,20}$/), fc.stringMatching(/^[0-9a-f]{8,40}$/))
      .map(([channel, ref]) => `${channel}@${ref}` as RolloutId)
})
/** @since 0.1.0 */
export type RolloutId = typeof RolloutId.Type

/**
 * The channel of a rollout id: the part before the first `@`, or all of it.
 *
 * @since 0.1.0
 */
export const rolloutChannel = (rolloutId: string): string => {
  const at = rolloutId.indexOf("@")
  return at === -1 ? rolloutId : rolloutId.slice(0, at)
}

/**
 * The channel ref of a rollout id: the part after the first `@`, or `""`.
 *
 * @since 0.1.0
 */
export const rolloutChannelRef = (rolloutId: string): string => {
  const at = rolloutId.indexOf("@")
  return at === -1 ? "" : rolloutId.slice(at + 1)
}
