/**
 * Stack traces of bundled code, mapped when formatted: esbuild bundles a module that throws
 * (with a linked source map) and the mapper itself, as scripts/bundle.ts does, and a plain
 * `node` process installs the mapper and prints the error's stack: it names the TypeScript
 * file and line, frames outside the bundle directory stay as V8 wrote them, and without a
 * map nothing changes.
 */
import { describe, expect, it } from "@effect/vitest"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as esbuild from "esbuild"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { tempDirectory } from "./support/processes.js"

const SOURCE = [
  "// line 1",
  "export const boom = (): never => {",
  "  // line 3",
  "  throw new Error(\"boom\")",
  "}",
  ""
].join("\n")

/** `<dir>/bundle/{boom,stack-traces}.mjs`, with linked maps when `withMap`; `boom.ts` stays in `<dir>/src`. */
const build = (withMap: boolean) =>
  Effect.flatMap(tempDirectory, (dir) =>
    Effect.promise(async () => {
      Fs.mkdirSync(Path.join(dir, "src"))
      Fs.writeFileSync(Path.join(dir, "src/boom.ts"), SOURCE)
      await esbuild.build({
        entryPoints: {
          boom: Path.join(dir, "src/boom.ts"),
          "stack-traces": Path.join(__dirname, "../src/node/stackTraces.ts")
        },
        outdir: Path.join(dir, "bundle"),
        outExtension: { ".js": ".mjs" },
        format: "esm",
        platform: "node",
        bundle: true,
        minifyWhitespace: true,
        sourcemap: withMap ? "linked" : false,
        sourcesContent: false,
        logLevel: "silent"
      })
      return dir
    }))

/** The stack of boom()'s error in a node process whose stack traces map `mappedDir`. */
const stackOf = (dir: string, mappedDir: string) =>
  Effect.map(
    runProcess(process.execPath, [
      "--input-type=module",
      "-e",
      `import { mapStackTraces } from ${
        JSON.stringify(pathToFileURL(Path.join(dir, "bundle/stack-traces.mjs")).href)
      }\n` +
      `mapStackTraces(${JSON.stringify(mappedDir)})\n` +
      `const { boom } = await import(${JSON.stringify(pathToFileURL(Path.join(dir, "bundle/boom.mjs")).href)})\n` +
      "try { boom() } catch (error) { process.stdout.write(error.stack) }\n"
    ]),
    (done) => done.stdout
  )

describe("mapStackTraces", () => {
  it.scopedLive("names the TypeScript file and line of a bundled frame", () =>
    Effect.gen(function*() {
      const dir = yield* build(true)
      const stack = yield* stackOf(dir, Path.join(dir, "bundle"))
      expect(stack.split("\n")[0]).toBe("Error: boom")
      expect(stack).toContain(`at boom (${Path.join(dir, "src/boom.ts")}:4:9)`)
      expect(stack).not.toContain("boom.mjs")
      // The caller, outside the bundle directory, as V8 wrote it.
      expect(stack).toContain("[eval1]:")
    }))

  it.scopedLive("leaves frames alone when the bundle has no map, or is not the mapped directory", () =>
    Effect.gen(function*() {
      const unmapped = yield* build(false)
      expect(yield* stackOf(unmapped, Path.join(unmapped, "bundle"))).toMatch(/at boom \(file:.*\/boom\.mjs:1:\d+\)/)
      const elsewhere = yield* build(true)
      expect(yield* stackOf(elsewhere, Path.join(elsewhere, "src"))).toMatch(/at boom \(file:.*\/boom\.mjs:1:\d+\)/)
    }))
})
