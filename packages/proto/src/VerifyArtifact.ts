/**
 * Signed-artifact verification (spec §4.3), identical for fleet.resolved, rollout
 * manifests, revocations and bootstrap-nonces: canonicalise the raw bytes, check the
 * signature against the trusted keys, then the header, `rejectBefore` and freshness.
 *
 * Signatures are checked as strictly as the reference agent checks them: ed25519 like
 * ed25519-dalek's `verify_strict` (small-order public keys and R points and unreduced s
 * refused, which `node:crypto` alone would accept), ecdsa-p256 over SHA-256 with high-s
 * signatures normalised to low-s first (TPMs emit both).
 *
 * @since 0.1.0
 */
import { ed25519 } from "@noble/curves/ed25519.js"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import * as ArtifactVerifyError from "./ArtifactVerifyError.js"
import { canonicalizeTextEither } from "./Jcs.js"
import { U32 } from "./Numbers.js"
import { nullWhenAbsent } from "./Optional.js"
import { Timestamp } from "./Timestamp.js"
import { activeKeys, type KeySlot, type KeySlotRole, type TrustedPubkey } from "./TrustConfig.js"

/**
 * Clock-skew tolerance, in seconds, added to the freshness window and allowed for
 * `signedAt` in the future (the reference agent's `CLOCK_SKEW_SLACK_SECS`).
 *
 * @since 0.1.0
 */
export const CLOCK_SKEW_SLACK_SECS = 60

const ACCEPTED_SCHEMA_VERSION = 1

/** The order ℓ of the edwards25519 prime-order subgroup: a canonical s is below it. */
const ED25519_ORDER = 2n ** 252n + 27742317777372353535851937790883648493n

/** The order n of the P-256 group. */
const P256_ORDER = 0xffffffff_00000000_ffffffff_ffffffff_bce6faad_a7179e84_f3b9cac2_fc632551n

/**
 * What every signed artifact has, and all that verification reads: unknown fields are
 * ignored here and kept in the canonical bytes and the returned JSON.
 */
const ArtifactHeader = Schema.Struct({
  schemaVersion: U32,
  meta: Schema.Struct({ signedAt: nullWhenAbsent(Timestamp) })
})

const decodeHeader = Schema.decodeUnknownEither(ArtifactHeader)

/** Keeps a byte-order mark, so that JSON parsing refuses it as serde_json does. */
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/**
 * What verifying with one key gave: a verified signature, a key whose material is
 * unusable, or a signature this key does not accept.
 */
type Outcome =
  | { readonly _tag: "Verified" }
  | { readonly _tag: "BadKey"; readonly reason: string }
  | { readonly _tag: "BadSignature"; readonly reason: string }

const verified: Outcome = { _tag: "Verified" }
const badKey = (reason: string): Outcome => ({ _tag: "BadKey", reason })
const badSignature = (reason: string): Outcome => ({ _tag: "BadSignature", reason })

/** Runs a library call that reports bad input by throwing; the thrown message becomes the reason. */
const attempt = <A>(f: () => A): Either.Either<A, string> =>
  Either.try({ try: f, catch: (error) => (error instanceof Error ? error.message : String(error)) })

/**
 * Standard base64 with padding and zero trailing bits, nothing else (as the reference
 * agent's decoder): `Buffer` decoding is lenient, so the result must encode back to the
 * same text.
 */
const decodeBase64 = (text: string): Uint8Array | undefined => {
  const bytes = Buffer.from(text, "base64")
  return bytes.toString("base64") === text ? bytes : undefined
}

const bigEndian = (bytes: Uint8Array): bigint =>
  bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString("hex")}`)

const littleEndian = (bytes: Uint8Array): bigint => bigEndian(Uint8Array.from(bytes).reverse())

const bigEndian32 = (value: bigint): Uint8Array => Buffer.from(value.toString(16).padStart(64, "0"), "hex")

const base64Url = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64url")

const ed25519Point = (bytes: Uint8Array) => attempt(() => ed25519.Point.fromBytes(bytes))

const verifyEd25519Bytes = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Outcome => {
  if (publicKey.length !== 32) return badKey(`expected 32 bytes, got ${publicKey.length}`)
  const a = ed25519Point(publicKey)
  if (Either.isLeft(a)) return badKey(`not an edwards25519 point: ${a.left}`)
  if (signature.length !== 64) return badSignature(`signature is ${signature.length} bytes, expected 64`)
  if (a.right.isSmallOrder()) return badSignature("public key is a small-order point")
  const r = ed25519Point(signature.subarray(0, 32))
  if (Either.isLeft(r)) return badSignature(`R is not an edwards25519 point: ${r.left}`)
  if (r.right.isSmallOrder()) return badSignature("R is a small-order point")
  if (littleEndian(signature.subarray(32)) >= ED25519_ORDER) return badSignature("s is not reduced modulo ℓ")
  const key = attempt(() =>
    Crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: base64Url(publicKey) }, format: "jwk" })
  )
  if (Either.isLeft(key)) return badKey(key.left)
  const valid = attempt(() => Crypto.verify(null, message, key.right, signature))
  if (Either.isLeft(valid)) return badSignature(valid.left)
  return valid.right ? verified : badSignature("signature does not match")
}

const verifyP256Bytes = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Outcome => {
  if (publicKey.length !== 64) return badKey(`expected 64 bytes (X‖Y, no 0x04 prefix), got ${publicKey.length}`)
  const key = attempt(() =>
    Crypto.createPublicKey({
      key: { kty: "EC", crv: "P-256", x: base64Url(publicKey.subarray(0, 32)), y: base64Url(publicKey.subarray(32)) },
      format: "jwk"
    })
  )
  if (Either.isLeft(key)) return badKey(`not a P-256 point: ${key.left}`)
  if (signature.length !== 64) return badSignature(`signature is ${signature.length} bytes, expected 64 (r‖s)`)
  const r = bigEndian(signature.subarray(0, 32))
  const s = bigEndian(signature.subarray(32))
  if (r === 0n || r >= P256_ORDER || s === 0n || s >= P256_ORDER) return badSignature("r or s is outside [1, n − 1]")
  const lowS = s > P256_ORDER / 2n ? P256_ORDER - s : s
  const normalised = Buffer.concat([signature.subarray(0, 32), bigEndian32(lowS)])
  const valid = attempt(() =>
    Crypto.verify("sha256", message, { key: key.right, dsaEncoding: "ieee-p1363" }, normalised)
  )
  if (Either.isLeft(valid)) return badSignature(valid.left)
  return valid.right ? verified : badSignature("signature does not match")
}

/** The verifier for an algorithm this agent supports, or `undefined` to skip the key. */
const verifierFor = (algorithm: string) => {
  switch (algorithm) {
    case "ed25519":
      return verifyEd25519Bytes
    case "ecdsa-p256":
      return verifyP256Bytes
    default:
      return undefined
  }
}

/**
 * Strict ed25519 verification of `message` (a string is taken as UTF-8) under a base64
 * public key, with the same rules as artifact signatures. For signatures checked outside
 * `verifyArtifact`, such as a bootstrap token's over the JCS of its claims. `false` for a
 * malformed key as for a wrong signature.
 *
 * @since 0.1.0
 */
export const verifyEd25519 = (
  publicKeyBase64: string,
  message: string | Uint8Array,
  signature: Uint8Array
): boolean => {
  const publicKey = decodeBase64(publicKeyBase64)
  const bytes = typeof message === "string" ? Buffer.from(message, "utf8") : message
  return publicKey !== undefined && verifyEd25519Bytes(publicKey, bytes, signature)._tag === "Verified"
}

/**
 * Step 3 of §4.3: the first key that verifies wins. Keys with an unknown algorithm are
 * skipped; a malformed key does not stop the others from being tried, and is reported
 * (rather than a bare bad signature) when none verified.
 */
const checkSignature = (
  message: Uint8Array,
  signature: Uint8Array,
  keys: ReadonlyArray<{ readonly role: KeySlotRole; readonly key: TrustedPubkey }>
): Either.Either<
  KeySlotRole,
  ArtifactVerifyError.BadPubkeyEncoding | ArtifactVerifyError.UnsupportedAlgorithm | ArtifactVerifyError.BadSignature
> => {
  const attempts: Array<string> = []
  let malformed: ArtifactVerifyError.BadPubkeyEncoding | undefined
  let supported = false
  for (const { key, role } of keys) {
    const verify = verifierFor(key.algorithm)
    if (verify === undefined) continue
    supported = true
    const publicKey = decodeBase64(key.public)
    const outcome = publicKey === undefined
      ? badKey("not standard padded base64")
      : verify(publicKey, message, signature)
    switch (outcome._tag) {
      case "Verified":
        return Either.right(role)
      case "BadKey":
        malformed ??= new ArtifactVerifyError.BadPubkeyEncoding({
          role,
          algorithm: key.algorithm,
          reason: outcome.reason
        })
        attempts.push(`${role} (${key.algorithm}): malformed public key: ${outcome.reason}`)
        break
      case "BadSignature":
        attempts.push(`${role} (${key.algorithm}): ${outcome.reason}`)
        break
    }
  }
  if (!supported) {
    return Either.left(
      new ArtifactVerifyError.UnsupportedAlgorithm({ algorithms: keys.map(({ key }) => key.algorithm) })
    )
  }
  return Either.left(malformed ?? new ArtifactVerifyError.BadSignature({ attempts }))
}

/**
 * Lowercase hex SHA-256 of a text's UTF-8 bytes: applied to canonical JSON it is the
 * artifact hash (`fleetResolvedHash`).
 *
 * @since 0.1.0
 */
export const sha256Hex = (text: string): string => Crypto.createHash("sha256").update(text, "utf8").digest("hex")

/**
 * What `verifyArtifact` checks: the raw artifact bytes and the raw signature bytes as
 * served, the `ciReleaseKey` slot of the trust file, the verifier's clock and its
 * freshness window in seconds (the clock-skew slack is added on top).
 *
 * @since 0.1.0
 */
export interface VerifyArtifactInput {
  readonly bytes: Uint8Array
  readonly signature: Uint8Array
  readonly trust: KeySlot
  readonly now: Date
  readonly freshnessWindowSecs: number
}

/**
 * A verified artifact: its canonical JSON text (the signed bytes), the lowercase hex
 * SHA-256 of that text, and the parsed canonical JSON with unknown fields intact, for the
 * caller to decode with the artifact's own schema.
 *
 * @since 0.1.0
 */
export interface VerifiedArtifact {
  readonly canonical: string
  readonly sha256: string
  readonly json: unknown
}

/**
 * Verifies a signed artifact, in the order of spec §4.3: trusted keys at `now`
 * (`NoTrustRoots`), UTF-8 and JSON with a canonical form (`Parse`), signature
 * (`BadPubkeyEncoding`, `UnsupportedAlgorithm`, `BadSignature`), header (`Parse`,
 * `SchemaVersionUnsupported`, `NotSigned`), `rejectBefore` (`RejectedBeforeTimestamp`),
 * freshness (`Stale`, `FutureDated`). Never throws and never dies, whatever the bytes; an
 * invalid `now` or window fails as `Stale` rather than passing.
 *
 * @since 0.1.0
 */
export const verifyArtifact: (
  input: VerifyArtifactInput
) => Effect.Effect<VerifiedArtifact, ArtifactVerifyError.ArtifactVerifyError> = Effect.fn("verifyArtifact")(
  function*(input: VerifyArtifactInput) {
    const keys = activeKeys(input.trust, input.now)
    if (keys.length === 0) return yield* new ArtifactVerifyError.NoTrustRoots()

    const text = yield* attempt(() => UTF8.decode(input.bytes)).pipe(
      Either.mapLeft((reason) => new ArtifactVerifyError.Parse({ message: `artifact is not UTF-8: ${reason}` }))
    )
    const canonical = yield* canonicalizeTextEither(text).pipe(
      Either.mapLeft((error) => new ArtifactVerifyError.Parse({ message: error.message }))
    )

    const role = yield* checkSignature(Buffer.from(canonical, "utf8"), input.signature, keys)
    const sha256 = sha256Hex(canonical)
    yield* Effect.annotateCurrentSpan({ "artifact.sha256": sha256, "artifact.key": role })

    const json: unknown = JSON.parse(canonical)
    const header = yield* decodeHeader(json).pipe(
      Either.mapLeft((error) =>
        new ArtifactVerifyError.Parse({
          message: `artifact header: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
        })
      )
    )
    if (header.schemaVersion !== ACCEPTED_SCHEMA_VERSION) {
      return yield* new ArtifactVerifyError.SchemaVersionUnsupported({ schemaVersion: header.schemaVersion })
    }
    const signedAt = header.meta.signedAt
    if (signedAt === null) return yield* new ArtifactVerifyError.NotSigned()

    const rejectBefore = input.trust.rejectBefore
    if (rejectBefore != null && signedAt.getTime() < rejectBefore.getTime()) {
      return yield* new ArtifactVerifyError.RejectedBeforeTimestamp({ signedAt, rejectBefore })
    }
    // Written as "not within" so that NaN (an invalid `now` or window) fails closed.
    const elapsedMs = input.now.getTime() - signedAt.getTime()
    if (!(elapsedMs <= (input.freshnessWindowSecs + CLOCK_SKEW_SLACK_SECS) * 1000)) {
      return yield* new ArtifactVerifyError.Stale({
        signedAt,
        now: input.now,
        windowSecs: input.freshnessWindowSecs,
        slackSecs: CLOCK_SKEW_SLACK_SECS
      })
    }
    if (!(-elapsedMs <= CLOCK_SKEW_SLACK_SECS * 1000)) {
      return yield* new ArtifactVerifyError.FutureDated({ signedAt, now: input.now, slackSecs: CLOCK_SKEW_SLACK_SECS })
    }
    return { canonical, sha256, json }
  }
)
