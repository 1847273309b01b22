import { describe, expect, it } from "@effect/vitest"
import { ClosureName, rolloutChannel, rolloutChannelRef, RolloutId } from "@nixfleet/proto"
import * as Arbitrary from "effect/Arbitrary"
import { decodeOk, expectRejected } from "./support.js"

const HASH = "1p2y8qg4bmd0rfvrxjz0yhm4cz3lcaqy"

describe("ClosureName", () => {
  it("accepts real Nix store basenames", () => {
    for (
      const name of [
        `${HASH}-nixos-system-web-01-26.05`,
        `${HASH}-nixos-system-krach-25.11.20250101.abcdef0`,
        "zwm4i4l1s7ajhx7vqfa2a3sdmkxm4b3c-darwin-system-26.05.1b2c3d4",
        "0000000000000000000000000000000a-hello-2.12.1",
        `${HASH}-python3.12-foo_bar`,
        `${HASH}-gcc-wrapper-13.2.0+git`,
        `${HASH}-what?=yes`,
        `${HASH}-a`
      ]
    ) {
      expect(decodeOk(ClosureName, name)).toBe(name)
    }
  })

  it("accepts names up to Nix's 211 characters and refuses longer ones", () => {
    expect(decodeOk(ClosureName, `${HASH}-${"a".repeat(211)}`)).toHaveLength(32 + 1 + 211)
    expectRejected(ClosureName, `${HASH}-${"a".repeat(212)}`, "expected a Nix store basename")
    expectRejected(ClosureName, `${HASH}-${"a".repeat(100_000)}`)
  })

  it("refuses paths and path tricks", () => {
    for (
      const bad of [
        "../etc",
        "..",
        ".",
        "",
        `/nix/store/${HASH}-hello`,
        `${HASH}-foo/bar`,
        `${HASH}-../../etc/passwd`,
        `${HASH}-..`,
        `${HASH}-.hidden`,
        `${HASH}/-hello`,
        `${HASH}-`
      ]
    ) {
      expectRejected(ClosureName, bad, "expected a Nix store basename")
    }
  })

  it("refuses shell and argv injection", () => {
    for (
      const bad of [
        `${HASH}-hello world`,
        `${HASH}-hello\n`,
        `${HASH}-hello\nrm -rf /`,
        `${HASH}-hello\t`,
        `${HASH}-$(reboot)`,
        `${HASH}-\`reboot\``,
        `${HASH}-a;reboot`,
        `${HASH}-a|b`,
        `${HASH}-a&b`,
        `${HASH}-a'b`,
        `${HASH}-a"b`,
        `${HASH}-a\\b`,
        `${HASH}-a*`,
        `${HASH}-a\u0000`,
        `${HASH}-é`,
        `-${HASH}-hello`,
        "--option",
        "-rf"
      ]
    ) {
      expectRejected(ClosureName, bad, "expected a Nix store basename")
    }
  })

  it("refuses a hash outside Nix's base-32 alphabet or of the wrong length", () => {
    for (const letter of ["e", "o", "u", "t"]) {
      expectRejected(ClosureName, `${letter}${HASH.slice(1)}-hello`)
    }
    expectRejected(ClosureName, `${HASH.toUpperCase()}-hello`)
    expectRejected(ClosureName, `${HASH.slice(1)}-hello`)
    expectRejected(ClosureName, `${HASH}a-hello`)
    expectRejected(ClosureName, "sha256-abc123")
    expectRejected(ClosureName, "0000000000000000000000000000000000000000-host-a")
  })

  it("refuses non-strings", () => {
    for (const bad of [null, 42, {}, [HASH]]) expectRejected(ClosureName, bad)
  })

  it.prop("its arbitrary only draws valid names", [Arbitrary.make(ClosureName)], ([name]) => {
    expect(decodeOk(ClosureName, name)).toBe(name)
  })
})

describe("RolloutId", () => {
  it("accepts <channel>@<lowercase hex>", () => {
    for (
      const id of [
        "stable@def4567abc123def4567abc123def4567abc123d",
        "stable@5f2c0e1a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e",
        "stable@deadbeef",
        "edge-slow_2@0",
        `c@${"a".repeat(198)}`
      ]
    ) {
      expect(decodeOk(RolloutId, id)).toBe(id)
    }
  })

  it("refuses malformed ids", () => {
    for (
      const bad of [
        "stable@DEF4567ABC",
        "stable@Def4567",
        "Stable@def4567",
        "stable@xyz",
        "stable",
        "def4567abc123def4567abc123def4567abc123d",
        "@def4567",
        "stable@",
        "@",
        "",
        "stable@def@4567",
        "stable@@def4567",
        "stable/x@def4567",
        "stable@def4567/..",
        "../stable@def4567",
        "..@def4567",
        "stable@def4567\n",
        " stable@def4567",
        "stable.prod@def4567",
        `c@${"a".repeat(199)}`
      ]
    ) {
      expectRejected(RolloutId, bad, "expected a rollout id")
    }
    expectRejected(RolloutId, 42)
  })

  it("splits into channel and channel ref at the first @", () => {
    expect(rolloutChannel("stable@def4567")).toBe("stable")
    expect(rolloutChannelRef("stable@def4567")).toBe("def4567")
    expect(rolloutChannel("stable")).toBe("stable")
    expect(rolloutChannelRef("stable")).toBe("")
    expect(rolloutChannel("a@b@c")).toBe("a")
    expect(rolloutChannelRef("a@b@c")).toBe("b@c")
  })

  it.prop("its arbitrary only draws valid ids", [Arbitrary.make(RolloutId)], ([id]) => {
    expect(decodeOk(RolloutId, id)).toBe(id)
    expect(`${rolloutChannel(id)}@${rolloutChannelRef(id)}`).toBe(id)
  })
})
