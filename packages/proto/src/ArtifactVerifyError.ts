/**
 * Why a signed artifact was refused, one class per reason (spec §4.3). Each carries what an
 * operator needs to act: which key failed and how, or which timestamps were compared.
 * Imported as a namespace: `ArtifactVerifyError.Stale`, `ArtifactVerifyError.ArtifactVerifyError`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import { formatRfc3339 } from "./Timestamp.js"
import type { KeySlotRole } from "./TrustConfig.js"

const show = (date: Date): string => formatRfc3339(date) ?? String(date)

/**
 * The key slot has no key to try at `now` (no `current`, no `previous`, no successor in
 * its window).
 *
 * @since 0.1.0
 */
export class NoTrustRoots extends Data.TaggedError("NoTrustRoots") {
  override get message(): string {
    return "no trust roots configured for artifact verification"
  }
}

/**
 * The artifact is not UTF-8, not JSON, has no canonical form, or lacks the
 * `schemaVersion` / `meta` header every signed artifact has. `message` says which and
 * where.
 *
 * @since 0.1.0
 */
export class Parse extends Data.TaggedError("Parse")<{ readonly message: string }> {}

/**
 * A trusted key's material is malformed for its algorithm (not standard padded base64,
 * wrong length, not a point on the curve). Reported only when no key verified the
 * signature: a malformed key never hides a good one.
 *
 * @since 0.1.0
 */
export class BadPubkeyEncoding extends Data.TaggedError("BadPubkeyEncoding")<{
  readonly role: KeySlotRole
  readonly algorithm: string
  readonly reason: string
}> {
  override get message(): string {
    return `trusted pubkey material is malformed (${this.role}, ${this.algorithm}): ${this.reason}`
  }
}

/**
 * No trusted key has an algorithm this verifier supports (`ed25519`, `ecdsa-p256`).
 *
 * @since 0.1.0
 */
export class UnsupportedAlgorithm extends Data.TaggedError("UnsupportedAlgorithm")<{
  readonly algorithms: ReadonlyArray<string>
}> {
  override get message(): string {
    return `unsupported signature algorithm: ${this.algorithms.join(", ")} (supported: ed25519, ecdsa-p256)`
  }
}

/**
 * The signature verifies against none of the trusted keys. `attempts` says, per key
 * tried, why it did not (wrong length, small-order point, plain mismatch, …).
 *
 * @since 0.1.0
 */
export class BadSignature extends Data.TaggedError("BadSignature")<{
  readonly attempts: ReadonlyArray<string>
}> {
  override get message(): string {
    return `signature does not verify against any declared trust root (${this.attempts.join("; ")})`
  }
}

/**
 * The artifact's top-level `schemaVersion` is not 1.
 *
 * @since 0.1.0
 */
export class SchemaVersionUnsupported extends Data.TaggedError("SchemaVersionUnsupported")<{
  readonly schemaVersion: number
}> {
  override get message(): string {
    return `unsupported schemaVersion: ${this.schemaVersion} (accepted: 1)`
  }
}

/**
 * `meta.signedAt` is absent or `null`: the artifact cannot be checked for freshness.
 *
 * @since 0.1.0
 */
export class NotSigned extends Data.TaggedError("NotSigned") {
  override get message(): string {
    return "artifact is unsigned (meta.signedAt is absent or null)"
  }
}

/**
 * The artifact was signed before the slot's `rejectBefore`, the compromise switch: refused
 * whichever key signed it.
 *
 * @since 0.1.0
 */
export class RejectedBeforeTimestamp extends Data.TaggedError("RejectedBeforeTimestamp")<{
  readonly signedAt: Date
  readonly rejectBefore: Date
}> {
  override get message(): string {
    return `artifact signed at ${show(this.signedAt)} is older than rejectBefore ${
      show(this.rejectBefore)
    } (compromise switch)`
  }
}

/**
 * The artifact is older than the freshness window plus the clock-skew slack.
 *
 * @since 0.1.0
 */
export class Stale extends Data.TaggedError("Stale")<{
  readonly signedAt: Date
  readonly now: Date
  readonly windowSecs: number
  readonly slackSecs: number
}> {
  override get message(): string {
    return `stale artifact: signedAt=${show(this.signedAt)}, now=${
      show(this.now)
    }, window=${this.windowSecs}s (+${this.slackSecs}s clock-skew slack)`
  }
}

/**
 * The artifact claims to be signed more than the clock-skew slack in the future:
 * pre-signing suggests a compromised CI key (rotate, and set `rejectBefore`).
 *
 * @since 0.1.0
 */
export class FutureDated extends Data.TaggedError("FutureDated")<{
  readonly signedAt: Date
  readonly now: Date
  readonly slackSecs: number
}> {
  override get message(): string {
    return `future-dated artifact: signedAt=${show(this.signedAt)} is more than ${this.slackSecs}s ahead of now=${
      show(this.now)
    } (pre-signing suggests CI key compromise - rotate via rejectBefore)`
  }
}

/**
 * Every reason `verifyArtifact` refuses an artifact, discriminated by `_tag`.
 *
 * @since 0.1.0
 */
export type ArtifactVerifyError =
  | NoTrustRoots
  | Parse
  | BadPubkeyEncoding
  | UnsupportedAlgorithm
  | BadSignature
  | SchemaVersionUnsupported
  | NotSigned
  | RejectedBeforeTimestamp
  | Stale
  | FutureDated
