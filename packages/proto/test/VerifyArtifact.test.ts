import { describe, expect, it } from "@effect/vitest"
import {
  ArtifactVerifyError,
  canonicalize,
  FleetResolved,
  type KeySlot,
  sha256Hex,
  type TrustedPubkey,
  verifyArtifact,
  type VerifyArtifactInput,
  verifyEd25519
} from "@nixfleet/proto"
import { ED25519_TORSION_SUBGROUP } from "@noble/curves/ed25519.js"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"

// ---------------------------------------------------------------------------------------
// Keys and vectors of spec §8.2

const PKCS8_ED25519_PREFIX = "302e020100300506032b657004220420"
const CI_SEED = "0e43df6d2b81fd90fba2fe9de01336de5241cc3db64c35cd9fd60aa0e6f56be9"
const ORG_SEED = "ebcb55c83bb27071bc36c6d949b1515991c3d7df37fd1bea0cfa0f313819de5a"
const CI_PUBLIC = "XGEGLc7caQGxOHt9EcWsRyhKk2fj6v5OVdDd+BFO8KY="
const ORG_PUBLIC = "9xv2fxeXzDTTeieMp4Alc0bpresfKVHTh8gzUZUYSGY="

const privateKeyFromSeed = (seedHex: string): Crypto.KeyObject =>
  Crypto.createPrivateKey({ key: Buffer.from(PKCS8_ED25519_PREFIX + seedHex, "hex"), format: "der", type: "pkcs8" })

const ciKey = privateKeyFromSeed(CI_SEED)
const orgKey = privateKeyFromSeed(ORG_SEED)
const ci: TrustedPubkey = { algorithm: "ed25519", public: CI_PUBLIC }
const org: TrustedPubkey = { algorithm: "ed25519", public: ORG_PUBLIC }
const ciSlot: KeySlot = { current: ci, previous: null, rejectBefore: null }

const V1 =
  `{"channel":"stable","channelRef":"def4567abc123def4567abc123def4567abc123d","displayName":"stable@def4567","disruptionBudgets":[],"fleetResolvedHash":"1111111111111111111111111111111111111111111111111111111111111111","healthGate":{},"hostSet":[{"hostname":"agent-01","targetClosure":"0000000000000000000000000000000000000000-host-a","waveIndex":0},{"hostname":"agent-02","targetClosure":"1111111111111111111111111111111111111111-host-b","waveIndex":1}],"meta":{"ciCommit":"def45678","schemaVersion":1,"signatureAlgorithm":"ed25519","signedAt":"2026-04-30T12:00:00Z"},"schemaVersion":1}`
const V1_SHA256 = "50c465ad7264192c013f21f258f234aefd8f159f24468d6f7fc6dead9d6e57b1"
const V1_SIG =
  "88fd02e7a69556ab96bdc18674e79507bf2deca492ee6d454a86784127e355cdd1e5e43bb480a109ed2df74aa12abf22acf20a7172db725351103cb99b75cc08"

const V2 =
  `{"channelEdges":[],"channels":{"stable":{"freshnessWindow":180,"reconcileIntervalMinutes":30,"rolloutPolicy":"none","signingIntervalMinutes":60}},"disruptionBudgets":[],"edges":[],"hosts":{"h1":{"channel":"stable","closureHash":"sha256-abc123","platform":"x86_64-linux","pubkey":"ssh-ed25519 AAAA...","tags":["production"]}},"meta":{"ciCommit":"deadbeef","schemaVersion":1,"signatureAlgorithm":"ed25519","signedAt":"2026-04-24T10:00:00Z"},"rolloutPolicies":{"none":{"healthGate":{"systemdFailedUnits":{"max":0}},"onHealthFailure":"halt","strategy":"all-at-once","waves":[{"selector":{"all":true,"channel":null,"hosts":[],"tags":[],"tagsAny":[]},"soakMinutes":0}]}},"schemaVersion":1,"waves":{"stable":[{"hosts":["h1"],"soakMinutes":0}]}}`
const V2_SHA256 = "34ff43df7930a1164579e584617cbf731feba96a9c2bee7a5bdf1f6c6d0540c4"
const V2_SIG =
  "4f411e12e98ee967d324b0894b323f9926ac8ebe696a2705bd7f5efd2f95f10dfa240f0c8c6a58f6bb6531f8242937bb52f851293a59e035cb29e4804bb5d109"

/** The repository golden `signed-artifact.canonical` (pre-rename `system` host key). */
const V3 = V2.replace(
  `"platform":"x86_64-linux","pubkey":"ssh-ed25519 AAAA..."`,
  `"pubkey":"ssh-ed25519 AAAA...","system":"x86_64-linux"`
)
const V3_SHA256 = "21c4b70f07f8618f9e53267fe9817f50899b7c36de2250a98d0c6c031c9fc56c"
const V3_SIG =
  "def260c034cc4dd347e182966af3e546aab165b1abd48c117deb390311d402b22c413a321aa058efbbc59f3e05d2e2de5e4f09e55fd7c161ddb1fda074de9f01"

const V4_CLAIMS =
  `{"expectedPubkeyFingerprint":"WI7OI6P7PqLDRBMNdVCBK9KGq6DoOcmi93AruaLOq3o=","expiresAt":"2026-05-02T00:00:00Z","hostname":"krach","issuedAt":"2026-05-01T00:00:00Z","nonce":"00112233445566778899aabbccddeeff"}`
const V4_SIGNATURE = "LtIAkQ6OhMVSBuo8hfnN4k21Kx5ycCFlV0+FEfMBaQG+0AFuieXAEr15nMslQii8bmxUcz7f3xTbiNoeBegFDA=="

// ---------------------------------------------------------------------------------------
// Fresh fixtures

const SIGNED_AT = "2026-05-17T12:00:00Z"
const signedAtMs = Date.parse(SIGNED_AT)
const at = (offsetMs: number): Date => new Date(signedAtMs + offsetMs)
const WINDOW = 3600

const utf8 = (text: string): Uint8Array => Buffer.from(text, "utf8")

/** The raw bytes of `value` (insertion order, not canonical) and a signature over its JCS. */
const signed = (value: unknown, key: Crypto.KeyObject = ciKey) => ({
  bytes: utf8(JSON.stringify(value)),
  signature: new Uint8Array(Crypto.sign(null, utf8(canonicalize(value)), key))
})

const manifest = (meta: Record<string, unknown> = { signedAt: SIGNED_AT }) => ({
  schemaVersion: 1,
  channel: "stable",
  meta: { ciCommit: "def45678", ...meta },
  futureField: { kept: true }
})

const input = (overrides: Partial<VerifyArtifactInput> = {}): VerifyArtifactInput => ({
  ...signed(manifest()),
  trust: ciSlot,
  now: at(10_000),
  freshnessWindowSecs: WINDOW,
  ...overrides
})

/** Runs verification and returns the error it must fail with. */
const refusal = (args: VerifyArtifactInput) => Effect.flip(verifyArtifact(args))

const base64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64")

describe("verifyArtifact: the vectors of §8.2", () => {
  it.effect("V1 (rollout manifest) verifies with the CI test key and hashes to the spec's SHA-256", () =>
    Effect.gen(function*() {
      const result = yield* verifyArtifact({
        bytes: utf8(V1),
        signature: Buffer.from(V1_SIG, "hex"),
        trust: ciSlot,
        now: new Date("2026-04-30T12:30:00Z"),
        freshnessWindowSecs: WINDOW
      })
      expect(result.canonical).toBe(V1)
      expect(result.sha256).toBe(V1_SHA256)
      expect(result.json).toStrictEqual(JSON.parse(V1))
    }))

  it.effect("V1 is Stale once now is past signedAt + 3600 s + 60 s", () =>
    Effect.gen(function*() {
      const args = {
        bytes: utf8(V1),
        signature: Buffer.from(V1_SIG, "hex"),
        trust: ciSlot,
        freshnessWindowSecs: WINDOW
      }
      yield* verifyArtifact({ ...args, now: new Date("2026-04-30T13:01:00Z") })
      const error = yield* refusal({ ...args, now: new Date("2026-04-30T13:01:01Z") })
      expect(error._tag).toBe("Stale")
    }))

  it.effect("V2 (fleet.resolved) verifies, raw and pretty-printed, with the same canonical hash", () =>
    Effect.gen(function*() {
      const signature = Buffer.from(V2_SIG, "hex")
      const base = { signature, trust: ciSlot, now: new Date("2026-04-24T10:10:00Z"), freshnessWindowSecs: WINDOW }
      const raw = yield* verifyArtifact({ ...base, bytes: utf8(V2) })
      expect(raw.sha256).toBe(V2_SHA256)
      expect(utf8(raw.canonical).length).toBe(737)

      const pretty = JSON.stringify(JSON.parse(V2), null, 2)
      expect(sha256Hex(pretty)).not.toBe(V2_SHA256)
      const fromPretty = yield* verifyArtifact({ ...base, bytes: utf8(pretty) })
      expect(fromPretty.canonical).toBe(V2)
      expect(fromPretty.sha256).toBe(V2_SHA256)
    }))

  it.effect("V3 (the repository golden with the v0.2 `system` key) verifies with the spec's hash and decodes", () =>
    Effect.gen(function*() {
      const result = yield* verifyArtifact({
        bytes: utf8(V3),
        signature: Buffer.from(V3_SIG, "hex"),
        trust: ciSlot,
        now: new Date("2026-04-24T10:10:00Z"),
        freshnessWindowSecs: WINDOW
      })
      expect(utf8(result.canonical).length).toBe(735)
      expect(result.sha256).toBe(V3_SHA256)
      // The fleet the v0.2 reference signs is a fleet here too, and re-encodes to the same bytes.
      const fleet = yield* Schema.decodeUnknown(FleetResolved)(result.json)
      expect(fleet.hosts["h1"]).toMatchObject({ platform: "x86_64-linux", platformKey: "system" })
      expect(canonicalize(yield* Schema.encode(FleetResolved)(fleet))).toBe(V3)
    }))

  it("V4: the bootstrap token's signature verifies over the JCS of its claims with the org root key", () => {
    const signature = Buffer.from(V4_SIGNATURE, "base64")
    const claims = JSON.parse(V4_CLAIMS)
    const asSerialized = canonicalize({
      hostname: claims.hostname,
      expectedPubkeyFingerprint: claims.expectedPubkeyFingerprint,
      issuedAt: claims.issuedAt,
      expiresAt: claims.expiresAt,
      nonce: claims.nonce
    })
    expect(asSerialized).toBe(V4_CLAIMS)
    expect(verifyEd25519(ORG_PUBLIC, asSerialized, signature)).toBe(true)
    expect(verifyEd25519(ORG_PUBLIC, utf8(asSerialized), signature)).toBe(true)
    expect(verifyEd25519(CI_PUBLIC, asSerialized, signature)).toBe(false)
    expect(verifyEd25519(ORG_PUBLIC, asSerialized.replace("krach", "krack"), signature)).toBe(false)
    expect(verifyEd25519(ORG_PUBLIC.slice(0, -1), asSerialized, signature)).toBe(false)
    // The fingerprint is base64(SHA-256(raw CI public key)).
    expect(Crypto.createHash("sha256").update(Buffer.from(CI_PUBLIC, "base64")).digest("base64")).toBe(
      claims.expectedPubkeyFingerprint
    )
  })
})

describe("verifyArtifact: fresh fixtures", () => {
  it.effect("verifies non-canonical bytes and returns the canonical text, its hash and the parsed JSON", () =>
    Effect.gen(function*() {
      const value = manifest()
      const result = yield* verifyArtifact(input())
      expect(result.canonical).toBe(canonicalize(value))
      expect(result.canonical).not.toBe(JSON.stringify(value))
      expect(result.sha256).toBe(Crypto.createHash("sha256").update(canonicalize(value)).digest("hex"))
      expect(result.sha256).toMatch(/^[0-9a-f]{64}$/)
      expect(result.json).toStrictEqual(value)
    }))
})

describe("verifyArtifact: NoTrustRoots", () => {
  it.effect("is returned when the slot has no key to try", () =>
    Effect.gen(function*() {
      for (const trust of [{}, { current: null, previous: null }, { successor: ci, retireAt: at(0) }]) {
        const error = yield* refusal(input({ trust }))
        expect(error._tag).toBe("NoTrustRoots")
        expect(error.message).toContain("no trust roots")
      }
    }))
})

describe("verifyArtifact: Parse", () => {
  it.effect("refuses bytes that are not JSON, whatever the signature", () =>
    Effect.gen(function*() {
      for (const text of ["garbage", "", "{", `{"a":1}trailing`, "\ufeff{}", `{"n":1e400}`, `{"n":9007199254740993}`]) {
        const error = yield* refusal(input({ bytes: utf8(text) }))
        expect(error._tag).toBe("Parse")
      }
    }))

  it.effect("refuses bytes that are not UTF-8", () =>
    Effect.gen(function*() {
      for (const bytes of [[0xff, 0xfe], [0x22, 0xc3, 0x22], [0x22, 0xed, 0xa0, 0x80, 0x22]]) {
        const error = yield* refusal(input({ bytes: Uint8Array.from(bytes) }))
        expect(error._tag).toBe("Parse")
        expect(error.message).toContain("UTF-8")
      }
    }))

  it.effect("refuses signed JSON without the artifact header, after checking the signature", () =>
    Effect.gen(function*() {
      const headerless = [
        { meta: { signedAt: SIGNED_AT } },
        { schemaVersion: 1 },
        { schemaVersion: "1", meta: { signedAt: SIGNED_AT } },
        { schemaVersion: 1.5, meta: { signedAt: SIGNED_AT } },
        { schemaVersion: 1, meta: "signed" },
        { schemaVersion: 1, meta: { signedAt: "yesterday" } },
        [1, 2, 3]
      ]
      for (const value of headerless) {
        const error = yield* refusal(input(signed(value)))
        expect(error._tag).toBe("Parse")
        expect(error.message).toContain("artifact header")
      }
      // The same document with a wrong signature is refused for its signature first.
      const unsigned = yield* refusal(input({ ...signed({ schemaVersion: 1 }), signature: new Uint8Array(64) }))
      expect(unsigned._tag).toBe("BadSignature")
    }))
})

describe("verifyArtifact: BadPubkeyEncoding", () => {
  it.effect("reports a key that does not decode to the algorithm's length", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [TrustedPubkey, string]> = [
        [{ algorithm: "ed25519", public: base64(new Uint8Array(31).fill(7)) }, "expected 32 bytes, got 31"],
        [{ algorithm: "ed25519", public: CI_PUBLIC.replace("=", "") }, "base64"],
        [{ algorithm: "ed25519", public: `${CI_PUBLIC} ` }, "base64"],
        [{ algorithm: "ed25519", public: "!!!!" }, "base64"],
        [{ algorithm: "ecdsa-p256", public: base64(new Uint8Array(65).fill(4)) }, "expected 64 bytes"],
        [{ algorithm: "ecdsa-p256", public: base64(new Uint8Array(64).fill(1)) }, "not a P-256 point"]
      ]
      for (const [key, reason] of cases) {
        const error = yield* refusal(input({ trust: { current: key } }))
        if (error._tag !== "BadPubkeyEncoding") throw new Error(`expected BadPubkeyEncoding, got ${error._tag}`)
        expect(error.role).toBe("current")
        expect(error.algorithm).toBe(key.algorithm)
        expect(error.reason).toContain(reason)
      }
    }))

  it.effect("does not let a malformed key hide a good one", () =>
    Effect.gen(function*() {
      const broken = { algorithm: "ed25519", public: base64(new Uint8Array(31)) }
      yield* verifyArtifact(input({ trust: { current: broken, previous: ci } }))
      const error = yield* refusal(input({ trust: { current: org, previous: broken } }))
      if (error._tag !== "BadPubkeyEncoding") throw new Error(`expected BadPubkeyEncoding, got ${error._tag}`)
      expect(error.role).toBe("previous")
    }))
})

describe("verifyArtifact: UnsupportedAlgorithm", () => {
  it.effect("is returned only when no key has a supported algorithm", () =>
    Effect.gen(function*() {
      const rsa = { algorithm: "rsa", public: "AAAA" }
      const error = yield* refusal(input({ trust: { current: rsa, previous: { algorithm: "p256", public: "" } } }))
      if (error._tag !== "UnsupportedAlgorithm") throw new Error(`expected UnsupportedAlgorithm, got ${error._tag}`)
      expect(error.algorithms).toStrictEqual(["rsa", "p256"])
      // An unknown algorithm next to a supported key is skipped.
      yield* verifyArtifact(input({ trust: { current: rsa, previous: ci } }))
      const bad = yield* refusal(input({ trust: { current: rsa, previous: org } }))
      expect(bad._tag).toBe("BadSignature")
    }))

  it.effect("takes the algorithm from the trust key, not from meta.signatureAlgorithm", () =>
    Effect.gen(function*() {
      yield* verifyArtifact(input(signed(manifest({ signedAt: SIGNED_AT, signatureAlgorithm: "ecdsa-p256" }))))
    }))
})

describe("verifyArtifact: BadSignature", () => {
  it.effect("refuses a tampered artifact, a signature by another key and a 63- or 65-byte signature", () =>
    Effect.gen(function*() {
      const good = input()
      const tampered = Buffer.from(good.bytes).toString("utf8").replace("stable", "stablf")
      const flipped = Uint8Array.from(good.signature)
      flipped[10] = flipped[10]! ^ 1
      const cases: ReadonlyArray<readonly [VerifyArtifactInput, string]> = [
        [input({ bytes: utf8(tampered) }), "does not match"],
        [input({ signature: flipped }), "does not match"],
        [input({ trust: { current: org } }), "does not match"],
        [input({ signature: good.signature.subarray(0, 63) }), "63 bytes, expected 64"],
        [input({ signature: Buffer.concat([good.signature, Buffer.alloc(1)]) }), "65 bytes, expected 64"],
        [input({ signature: new Uint8Array(0) }), "0 bytes, expected 64"]
      ]
      for (const [args, reason] of cases) {
        const error = yield* refusal(args)
        if (error._tag !== "BadSignature") throw new Error(`expected BadSignature, got ${error._tag}`)
        expect(error.attempts).toHaveLength(1)
        expect(error.attempts[0]).toContain(reason)
      }
    }))
})

describe("verifyArtifact: header checks", () => {
  it.effect("SchemaVersionUnsupported for a top-level schemaVersion other than 1", () =>
    Effect.gen(function*() {
      for (const schemaVersion of [0, 2]) {
        const error = yield* refusal(input(signed({ ...manifest(), schemaVersion })))
        if (error._tag !== "SchemaVersionUnsupported") throw new Error(`got ${error._tag}`)
        expect(error.schemaVersion).toBe(schemaVersion)
      }
    }))

  it.effect("NotSigned when meta.signedAt is absent or null", () =>
    Effect.gen(function*() {
      for (const meta of [{}, { signedAt: null }]) {
        const error = yield* refusal(input(signed(manifest(meta))))
        expect(error._tag).toBe("NotSigned")
      }
    }))
})

describe("verifyArtifact: rejectBefore", () => {
  it.effect("refuses signedAt < rejectBefore, accepts equality, and is checked before freshness", () =>
    Effect.gen(function*() {
      const error = yield* refusal(input({ trust: { current: ci, rejectBefore: at(1) } }))
      if (error._tag !== "RejectedBeforeTimestamp") throw new Error(`got ${error._tag}`)
      expect(error.signedAt).toStrictEqual(at(0))
      expect(error.rejectBefore).toStrictEqual(at(1))
      yield* verifyArtifact(input({ trust: { current: ci, rejectBefore: at(0) } }))
      const staleToo = yield* refusal(input({ trust: { current: ci, rejectBefore: at(1) }, now: at(86_400_000) }))
      expect(staleToo._tag).toBe("RejectedBeforeTimestamp")
    }))
})

describe("verifyArtifact: freshness", () => {
  it.effect("Stale just past the window + 60 s, accepted at its edge", () =>
    Effect.gen(function*() {
      yield* verifyArtifact(input({ now: at((WINDOW + 59) * 1000) }))
      yield* verifyArtifact(input({ now: at((WINDOW + 60) * 1000) }))
      const error = yield* refusal(input({ now: at((WINDOW + 60) * 1000 + 1) }))
      if (error._tag !== "Stale") throw new Error(`got ${error._tag}`)
      expect(error).toMatchObject({ signedAt: at(0), now: at((WINDOW + 60) * 1000 + 1), windowSecs: WINDOW })
      expect(error.message).toContain("2026-05-17T12:00:00Z")
      const zeroWindow = yield* refusal(input({ now: at(61_000), freshnessWindowSecs: 0 }))
      expect(zeroWindow._tag).toBe("Stale")
    }))

  it.effect("FutureDated more than 60 s ahead, accepted at 59 s and 60 s", () =>
    Effect.gen(function*() {
      yield* verifyArtifact(input({ now: at(-59_000) }))
      yield* verifyArtifact(input({ now: at(-60_000) }))
      const error = yield* refusal(input({ now: at(-61_000) }))
      if (error._tag !== "FutureDated") throw new Error(`got ${error._tag}`)
      expect(error).toMatchObject({ signedAt: at(0), now: at(-61_000), slackSecs: 60 })
      const justPast = yield* refusal(input({ now: at(-60_001) }))
      expect(justPast._tag).toBe("FutureDated")
    }))

  it.effect("fails closed on an invalid clock or window", () =>
    Effect.gen(function*() {
      expect((yield* refusal(input({ now: new Date(Number.NaN) })))._tag).toBe("Stale")
      expect((yield* refusal(input({ freshnessWindowSecs: Number.NaN })))._tag).toBe("Stale")
    }))
})

describe("verifyArtifact: key rotation", () => {
  const byOrg = () => signed(manifest(), orgKey)

  it.effect("accepts the previous key", () =>
    Effect.gen(function*() {
      yield* verifyArtifact(input({ ...byOrg(), trust: { current: ci, previous: org } }))
    }))

  it.effect("accepts the successor only while now < retireAt", () =>
    Effect.gen(function*() {
      const now = at(10_000)
      const slot = (retireAt: Date | null): KeySlot => ({ current: ci, successor: org, retireAt })
      yield* verifyArtifact(input({ ...byOrg(), now, trust: slot(new Date(now.getTime() + 1)) }))
      for (const retireAt of [now, new Date(now.getTime() - 1), null]) {
        const error = yield* refusal(input({ ...byOrg(), now, trust: slot(retireAt) }))
        expect(error._tag).toBe("BadSignature")
      }
    }))

  it.effect("tries current, then previous, then successor", () =>
    Effect.gen(function*() {
      const p256 = Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
      const trust: KeySlot = {
        successor: { algorithm: "ed25519", public: ORG_PUBLIC },
        retireAt: at(86_400_000),
        previous: { algorithm: "ecdsa-p256", public: rawP256(p256.publicKey) },
        current: ci
      }
      const error = yield* refusal(input({ trust, signature: new Uint8Array(64).fill(1) }))
      if (error._tag !== "BadSignature") throw new Error(`got ${error._tag}`)
      expect(error.attempts.map((a) => a.split(" ")[0])).toStrictEqual(["current", "previous", "successor"])
      expect(error.attempts[1]).toContain("(ecdsa-p256)")
    }))
})

/** A P-256 public key as the trust file holds it: base64 of X‖Y, without the 0x04 prefix. */
const rawP256 = (publicKey: Crypto.KeyObject): string => {
  const jwk = publicKey.export({ format: "jwk" })
  return base64(Buffer.concat([Buffer.from(jwk.x!, "base64url"), Buffer.from(jwk.y!, "base64url")]))
}

const P256_ORDER = 0xffffffff_00000000_ffffffff_ffffffff_bce6faad_a7179e84_f3b9cac2_fc632551n

describe("verifyArtifact: ecdsa-p256", () => {
  it.effect("accepts a raw r‖s signature and its high-s twin, refuses others", () =>
    Effect.gen(function*() {
      const { privateKey, publicKey } = Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
      const trust: KeySlot = { current: { algorithm: "ecdsa-p256", public: rawP256(publicKey) } }
      const value = manifest()
      const signature = Crypto.sign("sha256", utf8(canonicalize(value)), { key: privateKey, dsaEncoding: "ieee-p1363" })
      expect(signature).toHaveLength(64)
      const s = BigInt(`0x${signature.subarray(32).toString("hex")}`)
      const twinS = Buffer.from((P256_ORDER - s).toString(16).padStart(64, "0"), "hex")
      const twin = Buffer.concat([signature.subarray(0, 32), twinS])
      const bytes = utf8(JSON.stringify(value))

      for (const sig of [signature, twin]) {
        const result = yield* verifyArtifact(input({ bytes, signature: sig, trust }))
        expect(result.canonical).toBe(canonicalize(value))
      }
      const zeroR = Buffer.concat([Buffer.alloc(32), signature.subarray(32)])
      const outOfRange = Buffer.concat([signature.subarray(0, 32), Buffer.alloc(32, 0xff)])
      for (const [sig, reason] of [[zeroR, "outside"], [outOfRange, "outside"], [signature.subarray(1), "63 bytes"]]) {
        const error = yield* refusal(input({ bytes, signature: sig as Uint8Array, trust }))
        if (error._tag !== "BadSignature") throw new Error(`got ${error._tag}`)
        expect(error.attempts[0]).toContain(reason)
      }
      const byCi = yield* refusal(input({ trust }))
      expect(byCi._tag).toBe("BadSignature")
    }))
})

describe("verifyArtifact: strict ed25519", () => {
  const L = 2n ** 252n + 27742317777372353535851937790883648493n
  const identity = Buffer.from(ED25519_TORSION_SUBGROUP[0]!, "hex")
  const BASE_POINT = Buffer.from("5866666666666666666666666666666666666666666666666666666666666666", "hex")
  const le = (bytes: Uint8Array): bigint => BigInt(`0x${Buffer.from(bytes).reverse().toString("hex")}`)
  const le32 = (n: bigint): Buffer => Buffer.from(n.toString(16).padStart(64, "0"), "hex").reverse()
  const nodeAccepts = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean =>
    Crypto.verify(
      null,
      message,
      Crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: base64Url(publicKey) }, format: "jwk" }),
      signature
    )
  const base64Url = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64url")

  it.effect("refuses small-order public keys, which node:crypto alone accepts", () =>
    Effect.gen(function*() {
      const { bytes } = input()
      const message = utf8(canonicalize(manifest()))
      // With the identity as key, R = B and s = 1 satisfy [s]B = R + [k]A for any message.
      const signature = Buffer.concat([BASE_POINT, le32(1n)])
      expect(nodeAccepts(identity, message, signature)).toBe(true)
      expect(verifyEd25519(base64(identity), message, signature)).toBe(false)
      for (const point of ED25519_TORSION_SUBGROUP) {
        const error = yield* refusal(input({
          bytes,
          signature,
          trust: { current: { algorithm: "ed25519", public: base64(Buffer.from(point, "hex")) } }
        }))
        if (error._tag !== "BadSignature") throw new Error(`got ${error._tag}`)
        expect(error.attempts[0]).toContain("public key is a small-order point")
      }
    }))

  it.effect("refuses a small-order R, which node:crypto alone accepts", () =>
    Effect.gen(function*() {
      // R = identity and s = k·a satisfy [s]B = R + [k]A for the CI key: a forgery only a
      // strict verifier refuses.
      const message = utf8(canonicalize(manifest()))
      const publicKey = Buffer.from(CI_PUBLIC, "base64")
      const h = Crypto.createHash("sha512").update(Buffer.from(CI_SEED, "hex")).digest()
      const a = Buffer.from(h.subarray(0, 32))
      a[0] = a[0]! & 248
      a[31] = (a[31]! & 127) | 64
      const k = le(Crypto.createHash("sha512").update(Buffer.concat([identity, publicKey, message])).digest()) % L
      const forged = Buffer.concat([identity, le32((k * le(a)) % L)])
      expect(nodeAccepts(publicKey, message, forged)).toBe(true)
      const error = yield* refusal(input({ signature: forged }))
      if (error._tag !== "BadSignature") throw new Error(`got ${error._tag}`)
      expect(error.attempts[0]).toContain("R is a small-order point")
    }))

  it.effect("refuses an unreduced s (s + ℓ)", () =>
    Effect.gen(function*() {
      const good = input()
      const s = le(good.signature.subarray(32))
      const malleated = Buffer.concat([good.signature.subarray(0, 32), le32(s + L)])
      const error = yield* refusal(input({ signature: malleated }))
      if (error._tag !== "BadSignature") throw new Error(`got ${error._tag}`)
      expect(error.attempts[0]).toContain("s is not reduced")
    }))
})

describe("verifyArtifact: totality", () => {
  const tags = new Set([
    "NoTrustRoots",
    "Parse",
    "BadPubkeyEncoding",
    "UnsupportedAlgorithm",
    "BadSignature",
    "SchemaVersionUnsupported",
    "NotSigned",
    "RejectedBeforeTimestamp",
    "Stale",
    "FutureDated"
  ])
  const run = (args: VerifyArtifactInput) => Effect.runSyncExit(verifyArtifact(args))

  it.prop(
    "fails with a typed error, never a defect, for any bytes and signature",
    [FastCheck.uint8Array({ maxLength: 300 }), FastCheck.uint8Array({ minLength: 60, maxLength: 68 })],
    ([bytes, signature]) => {
      const exit = run(input({ bytes, signature }))
      if (Exit.isSuccess(exit)) throw new Error("random bytes verified")
      const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      expect(tags.has(error?._tag ?? "defect")).toBe(true)
    }
  )

  it.prop(
    "fails with a typed error, never a defect, for any JSON under any key",
    [
      FastCheck.jsonValue(),
      FastCheck.constantFrom<TrustedPubkey>(ci, { algorithm: "ecdsa-p256", public: base64(new Uint8Array(64)) })
    ],
    ([value, key]) => {
      const exit = run(input({ bytes: utf8(JSON.stringify(value)), trust: { current: key } }))
      if (Exit.isSuccess(exit)) throw new Error("an unsigned document verified")
      const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      expect(tags.has(error?._tag ?? "defect")).toBe(true)
    }
  )

  it("exposes each refusal as a class of the ArtifactVerifyError namespace", () => {
    const error: ArtifactVerifyError.ArtifactVerifyError = new ArtifactVerifyError.BadSignature({ attempts: ["x"] })
    expect(error).toBeInstanceOf(ArtifactVerifyError.BadSignature)
    expect(new ArtifactVerifyError.NoTrustRoots()._tag).toBe("NoTrustRoots")
    expect(new ArtifactVerifyError.Parse({ message: "bad" }).message).toBe("bad")
  })
})
