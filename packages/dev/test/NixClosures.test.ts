/**
 * Reading a sandbox's system state as the demo and the fixtures do, on links made by hand
 * (no Nix needed): the current-system link's basename, and the profile's closure through
 * its generation link; a missing link is null, never a failure.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { currentClosure, profileClosure } from "../src/NixClosures.js"
import * as Sandbox from "../src/Sandbox.js"

const CLOSURE = "0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web-01"

const sandbox = Effect.acquireRelease(
  Effect.sync(() => {
    const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-dev-closures-"))
    Fs.mkdirSync(Path.join(root, "run"))
    Fs.mkdirSync(Path.join(root, "profiles"))
    return Sandbox.layout(root)
  }),
  (layout) => Effect.sync(() => Fs.rmSync(layout.root, { recursive: true, force: true }))
)

describe("NixClosures: the sandbox's links", () => {
  it.scoped("currentClosure: the link's basename, or null without a link", () =>
    Effect.gen(function*() {
      const layout = yield* sandbox
      expect(yield* currentClosure(layout)).toBeNull()
      Fs.symlinkSync(`/nix/store/${CLOSURE}/`, layout.currentSystem)
      expect(yield* currentClosure(layout)).toBe(CLOSURE)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("profileClosure: through the generation link, relative to the profile's directory", () =>
    Effect.gen(function*() {
      const layout = yield* sandbox
      expect(yield* profileClosure(layout)).toBeNull()
      const profiles = Path.dirname(layout.profile)
      Fs.symlinkSync("system-2-link", layout.profile)
      Fs.symlinkSync(`/nix/store/${CLOSURE}`, Path.join(profiles, "system-2-link"))
      expect(yield* profileClosure(layout)).toBe(CLOSURE)
    }).pipe(Effect.provide(NodeContext.layer)))
})
