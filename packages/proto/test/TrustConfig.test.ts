import { describe, expect, it } from "@effect/vitest"
import { activeKeys, KeySlot, TrustConfig, TrustedPubkey } from "@nixfleet/proto"
import * as Schema from "effect/Schema"
import { decodeOk, encodeOk, expectRejected, expectRoundTrip, expectTypeRoundTrip } from "./support.js"

const ci = { algorithm: "ed25519", public: "XGEGLc7caQGxOHt9EcWsRyhKk2fj6v5OVdDd+BFO8KY=" }
const org = { algorithm: "ed25519", public: "9xv2fxeXzDTTeieMp4Alc0bpresfKVHTh8gzUZUYSGY=" }
const next = { algorithm: "ecdsa-p256", public: "AAAA" }

/** The trust.json example of spec §3.7. */
const specExample = JSON.parse(`{"schemaVersion":1,
 "ciReleaseKey":{"current":{"algorithm":"ed25519","public":"XGEGLc7caQGxOHt9EcWsRyhKk2fj6v5OVdDd+BFO8KY="},"previous":null,"rejectBefore":null},
 "cacheKeys":[],"orgRootKey":{"current":{"algorithm":"ed25519","public":"9xv2fxeXzDTTeieMp4Alc0bpresfKVHTh8gzUZUYSGY="}}}`)

describe("TrustConfig", () => {
  it("round-trips the §3.7 example exactly: null stays null, absent stays absent", () => {
    const config = expectRoundTrip(TrustConfig, specExample)
    expect(config.ciReleaseKey).toStrictEqual({ current: ci, previous: null, rejectBefore: null })
    expect(config.orgRootKey).toStrictEqual({ current: org })
    expect(config.cacheKeys).toStrictEqual([])
    expect("issuanceCaPems" in config).toBe(false)
    expect("rootCaPem" in config).toBe(false)
  })

  it("round-trips a complete file, with timestamps written the way chrono writes them", () => {
    const full = {
      schemaVersion: 1,
      ciReleaseKey: {
        current: ci,
        previous: org,
        rejectBefore: "2026-05-01T00:00:00Z",
        successor: next,
        retireAt: "2026-06-01T00:00:00.250Z"
      },
      cacheKeys: ["cache.example.org-1:AAAA"],
      orgRootKey: null,
      rootCaPem: "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n",
      issuanceCaPems: ["-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n"]
    }
    const config = expectRoundTrip(TrustConfig, full)
    expect(config.ciReleaseKey.rejectBefore).toStrictEqual(new Date("2026-05-01T00:00:00Z"))
    expect(config.ciReleaseKey.retireAt).toStrictEqual(new Date("2026-06-01T00:00:00.250Z"))
    expect(encodeOk(KeySlot, decodeOk(KeySlot, { rejectBefore: "2026-05-01T02:00:00+02:00" }))).toStrictEqual({
      rejectBefore: "2026-05-01T00:00:00Z"
    })
  })

  it("reads a minimal file and an empty key slot", () => {
    expect(expectRoundTrip(TrustConfig, { schemaVersion: 1, ciReleaseKey: {} })).toStrictEqual({
      schemaVersion: 1,
      ciReleaseKey: {}
    })
  })

  it("drops unknown fields and keeps unknown algorithms", () => {
    const config = decodeOk(TrustConfig, {
      schemaVersion: 1,
      ciReleaseKey: { current: { algorithm: "rsa", public: "not checked here", comment: "x" }, extra: 1 },
      atticCacheKey: null
    })
    expect(config).toStrictEqual({
      schemaVersion: 1,
      ciReleaseKey: { current: { algorithm: "rsa", public: "not checked here" } }
    })
  })

  it("refuses malformed files with a ParseError", () => {
    expectRejected(TrustConfig, {}, "schemaVersion")
    expectRejected(TrustConfig, { schemaVersion: 1 }, "ciReleaseKey")
    expectRejected(TrustConfig, { schemaVersion: -1, ciReleaseKey: {} })
    expectRejected(TrustConfig, { schemaVersion: 1, ciReleaseKey: { current: { algorithm: "ed25519" } } }, "public")
    expectRejected(TrustConfig, { schemaVersion: 1, ciReleaseKey: { rejectBefore: "yesterday" } }, "RFC 3339")
    expectRejected(TrustConfig, { schemaVersion: 1, ciReleaseKey: {}, cacheKeys: null })
    expectRejected(TrustedPubkey, { algorithm: 1, public: "" })
    expectRejected(KeySlot, null)
  })

  it.prop("decode(encode(config)) gives the config back", [TrustConfig], ([config]) => {
    expectTypeRoundTrip(TrustConfig, config)
  })

  it.prop(
    "encode(decode(json)) gives the JSON back, whichever fields are absent or null",
    [TrustConfig],
    ([config]) => {
      expectRoundTrip(TrustConfig, Schema.encodeSync(TrustConfig)(config))
    }
  )
})

describe("activeKeys", () => {
  const now = new Date("2026-05-17T12:00:00Z")

  it("lists current, then previous, then the successor only while now < retireAt", () => {
    const slot = { current: ci, previous: org, successor: next, retireAt: new Date(now.getTime() + 1) }
    expect(activeKeys(slot, now)).toStrictEqual([
      { role: "current", key: ci },
      { role: "previous", key: org },
      { role: "successor", key: next }
    ])
    expect(activeKeys({ ...slot, retireAt: now }, now).map((k) => k.role)).toStrictEqual(["current", "previous"])
    expect(activeKeys({ ...slot, retireAt: null }, now).map((k) => k.role)).toStrictEqual(["current", "previous"])
    expect(activeKeys({ successor: next }, now)).toStrictEqual([])
  })

  it("treats absent and null alike", () => {
    expect(activeKeys({}, now)).toStrictEqual([])
    expect(activeKeys({ current: null, previous: org }, now)).toStrictEqual([{ role: "previous", key: org }])
  })
})
