/**
 * The daemon's node flags and environment, set in the bin script's shebang: node accepts
 * the flags, the script runs through the shebang (`env -S`), and the flake's wrapper
 * (nix/node-flags.nix, evaluated with nixpkgs' lib) passes exactly the same.
 */
import { describe, expect, it } from "@effect/vitest"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { shebangSettings } from "../../../scripts/shebang.js"
import { VERSION } from "../src/support/version.js"
import { describeNeeding, moduleEvalMissing, NIXPKGS_LIB } from "./support/moduleEval.js"

const REPO = Path.resolve(__dirname, "../../..")
const BIN = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")
const BUNDLE = Path.join(REPO, "packages/agent/dist/bundle/nixfleet-agent.mjs")
const settings = shebangSettings(Fs.readFileSync(BIN, "utf8"))

describe("the bin script's shebang", () => {
  it("sets node flags and a glibc malloc setting", () => {
    expect(settings.nodeFlags).toContain("--max-semi-space-size=1")
    expect(settings.env).toStrictEqual({ MALLOC_MMAP_THRESHOLD_: "131072" })
  })

  it.live("names flags node accepts", () =>
    Effect.gen(function*() {
      const done = yield* runProcess(process.execPath, [...settings.nodeFlags, "-e", "0"])
      expect(done.code, done.stderr).toBe(0)
      expect(done.stderr).toBe("")
    }))

  it.live("runs the script when it is executed", () =>
    Effect.gen(function*() {
      // The bundle is what `npm run build` (prepare) leaves; Bundle.test.ts builds its own.
      expect(Fs.existsSync(BUNDLE), "run `npm run build` first").toBe(true)
      const done = yield* runProcess(BIN, ["--version"])
      expect(done.code, done.stderr).toBe(0)
      expect(done.stdout.trim()).toBe(VERSION)
    }))
})

describeNeeding(moduleEvalMissing(), "the flake's wrapper (nix/node-flags.nix)", () => {
  it.live("passes the shebang's flags and environment", () =>
    Effect.gen(function*() {
      const done = yield* runProcess("nix-instantiate", [
        "--eval",
        "--strict",
        "--json",
        "-E",
        `import ./nix/node-flags.nix { lib = import ${NIXPKGS_LIB}; }`
      ], { cwd: REPO })
      expect(done.code, done.stderr).toBe(0)
      expect(JSON.parse(done.stdout)).toStrictEqual({ env: settings.env, flags: settings.nodeFlags })
    }))
})
