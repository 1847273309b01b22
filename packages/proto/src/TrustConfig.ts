/**
 * `trust.json` (`--trust-file`): the keys an agent accepts signed artifacts from, with
 * rotation (`previous`, `successor` until `retireAt`) and the compromise switch
 * (`rejectBefore`).
 *
 * Absent and `null` optional fields are kept apart in memory: a field absent on the wire is
 * absent in memory, a `null` stays `null`, so `encode(decode(j))` gives back exactly `j`
 * (the §3.7 example writes `"previous":null` in one slot and omits it in another). Readers
 * treat absent like `null` (and an absent list like `[]`); {@link activeKeys} does so for
 * key slots.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { U32 } from "./Numbers.js"
import { Timestamp } from "./Timestamp.js"

/** An optional field that may also be `null`; absent and `null` both survive a round trip. */
const absentOrNull = <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  Schema.optionalWith(Schema.NullOr(schema), { exact: true })

/**
 * A trusted public key. `algorithm` is free text so that a trust file naming an algorithm
 * this agent does not know still loads (verification skips such keys); `public` is
 * standard padded base64 (ed25519: 32 raw bytes; ecdsa-p256: 64 bytes X‖Y), decoded and
 * checked only when a signature is verified.
 *
 * @since 0.1.0
 */
export const TrustedPubkey = Schema.Struct({
  algorithm: Schema.String,
  public: Schema.String
}).annotations({ identifier: "TrustedPubkey" })
/** @since 0.1.0 */
export type TrustedPubkey = typeof TrustedPubkey.Type

/**
 * One rotating trust root. Every field may be absent or `null`: `current` and `previous`
 * are both trusted; `successor` is trusted only while `now < retireAt`; artifacts signed
 * before `rejectBefore` are refused whichever key signed them.
 *
 * @since 0.1.0
 */
export const KeySlot = Schema.Struct({
  current: absentOrNull(TrustedPubkey),
  previous: absentOrNull(TrustedPubkey),
  rejectBefore: absentOrNull(Timestamp),
  successor: absentOrNull(TrustedPubkey),
  retireAt: absentOrNull(Timestamp)
}).annotations({ identifier: "KeySlot" })
/** @since 0.1.0 */
export type KeySlot = typeof KeySlot.Type

/**
 * The agent's trust roots. `ciReleaseKey` verifies fleet.resolved, rollout manifests,
 * revocations and bootstrap-nonces; `orgRootKey` verifies bootstrap tokens; `cacheKeys`
 * (absent ≡ `[]`) are Nix substituter keys passed through opaquely; `rootCaPem` and
 * `issuanceCaPems` (absent ≡ `[]`) are the fleet CA certificates. `schemaVersion` is read
 * as any u32 so that the caller can refuse a version it does not know with its own error.
 *
 * @since 0.1.0
 */
export const TrustConfig = Schema.Struct({
  schemaVersion: U32,
  ciReleaseKey: KeySlot,
  cacheKeys: Schema.optionalWith(Schema.Array(Schema.String), { exact: true }),
  orgRootKey: absentOrNull(KeySlot),
  rootCaPem: absentOrNull(Schema.String),
  issuanceCaPems: Schema.optionalWith(Schema.Array(Schema.String), { exact: true })
}).annotations({ identifier: "TrustConfig" })
/** @since 0.1.0 */
export type TrustConfig = typeof TrustConfig.Type

/**
 * Which field of a {@link KeySlot} a key came from.
 *
 * @since 0.1.0
 */
export type KeySlotRole = "current" | "previous" | "successor"

/**
 * The keys of a slot that may verify a signature at `now`, in the order verifiers try
 * them (first match wins, so the newer key is tried first): `current`, `previous`, then
 * `successor` only when `retireAt` is set and `now < retireAt`.
 *
 * @since 0.1.0
 */
export const activeKeys = (
  slot: KeySlot,
  now: Date
): ReadonlyArray<{ readonly role: KeySlotRole; readonly key: TrustedPubkey }> => {
  const keys: Array<{ readonly role: KeySlotRole; readonly key: TrustedPubkey }> = []
  if (slot.current != null) keys.push({ role: "current", key: slot.current })
  if (slot.previous != null) keys.push({ role: "previous", key: slot.previous })
  if (slot.successor != null && slot.retireAt != null && now.getTime() < slot.retireAt.getTime()) {
    keys.push({ role: "successor", key: slot.successor })
  }
  return keys
}
