/**
 * The demo's sandbox: `create` refuses a directory that holds anything (a previous run's
 * state would confuse the fresh control plane) and leaves it as it was; an absent one is
 * created with the layout's directories, under its resolved path.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Sandbox from "../src/Sandbox.js"

const tempDirectory = Effect.acquireRelease(
  Effect.sync(() => Fs.realpathSync(Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-dev-sandbox-")))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("Sandbox.create", () => {
  it.scoped("refuses a directory that is not empty, touching nothing in it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      Fs.writeFileSync(Path.join(dir, "previous-run"), "kept")
      const error = yield* Effect.flip(Sandbox.create(dir))
      expect(error).toMatchObject({ _tag: "SandboxNotEmpty", path: dir })
      expect(error.message).toBe(`--sandbox ${dir} must be empty or absent`)
      expect(Fs.readdirSync(dir)).toStrictEqual(["previous-run"])
      expect(Fs.readFileSync(Path.join(dir, "previous-run"), "utf8")).toBe("kept")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("creates an absent directory with the layout's directories", () =>
    Effect.gen(function*() {
      const root = Path.join(yield* tempDirectory, "a", "sandbox")
      const sandbox = yield* Sandbox.create(root)
      expect(sandbox).toStrictEqual(Sandbox.layout(root))
      expect(sandbox.currentSystem).toBe(Path.join(root, "run/current-system"))
      expect(Fs.readdirSync(root).sort()).toStrictEqual(["home", "markers", "nix", "profiles", "run", "state"])
      // The links and the lock are the pipeline's to create.
      expect(Fs.readdirSync(Path.join(root, "run"))).toStrictEqual([])
      expect(Fs.readdirSync(Path.join(root, "profiles"))).toStrictEqual([])
    }).pipe(Effect.provide(NodeContext.layer)))
})
