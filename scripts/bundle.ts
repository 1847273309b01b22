/**
 * The `nixfleet-agent` command line as the packages run it: `packages/agent/src/bin.ts`
 * bundled by esbuild into one ES module, plus one chunk per lazily loaded part (each
 * command's implementation is a dynamic import, so `--version`, `--help` and `status`
 * load only the entry chunk and the command line). Run by the root `build` script (and so
 * by `prepare` on `npm ci`/`npm install`, and by the flake's package) after `tsc -b`.
 *
 * - Bundled from the TypeScript sources (`@nixfleet/source`), the workspace packages
 *   included; the library entry points (`dist/index.js`) stay unbundled for embedders.
 * - Left external and loaded from node_modules as before: the native modules
 *   (better-sqlite3, unix-dgram) and `@nixfleet/dev-control-plane`, a development
 *   dependency that only `dev` imports.
 * - Linked source maps, without the sources' text, with full detail for our own code only
 *   (sourceMaps.ts). A second entry point, `stack-traces.mjs`, formats stack traces from
 *   them when one is needed (src/node/stackTraces.ts); `bin/nixfleet-agent.js` installs
 *   it, so stack traces name our TypeScript files at no cost to start-up or memory.
 * - The metafile goes to `packages/agent/build/bundle-meta.json` (not shipped): what each
 *   chunk holds (`npx esbuild --analyze` style questions: why is X loaded at start).
 *
 *   npx tsx scripts/bundle.ts
 */
import * as esbuild from "esbuild"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { reduceSourceMap } from "./sourceMaps.js"

const REPO = Path.resolve(import.meta.dirname, "..")
const AGENT = Path.join(REPO, "packages/agent")
/** Where the bundle goes: under dist, so the package's `files` and the flake's copy carry it. */
export const BUNDLE_DIR = Path.join(AGENT, "dist/bundle")
export const META_FILE = Path.join(AGENT, "build/bundle-meta.json")

/** Native modules and the dev-only package: resolved from node_modules at run time. */
export const EXTERNAL = ["better-sqlite3", "unix-dgram"]

// Bundled CommonJS dependencies call `require` (for Node's built-in modules); an ES module
// has none, so each output file gets one.
const BANNER = "import { createRequire as __nixfleetCreateRequire } from \"node:module\";\n" +
  "const require = __nixfleetCreateRequire(import.meta.url);"

/**
 * Builds the bundle into `outdir` (emptied first) and returns what it holds (esbuild's
 * metafile: each output file and the sources in it).
 */
export const buildBundle = async (outdir: string): Promise<esbuild.Metafile> => {
  Fs.rmSync(outdir, { recursive: true, force: true })
  const result = await esbuild.build({
    absWorkingDir: REPO,
    entryPoints: {
      "nixfleet-agent": Path.join(AGENT, "src/bin.ts"),
      "stack-traces": Path.join(AGENT, "src/node/stackTraces.ts")
    },
    outdir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    conditions: ["@nixfleet/source"],
    // A package's ES module build first (node's default is `main`, often CommonJS): `import()`
    // of a CommonJS module in the bundle gives its exports as `default` only, where Node
    // gives them by name too (OpenTelemetry's and x509's, loaded lazily, came back empty).
    mainFields: ["module", "main"],
    external: EXTERNAL,
    outExtension: { ".js": ".mjs" },
    chunkNames: "chunks/[name]-[hash]",
    banner: { js: BANNER },
    // Whitespace and syntax only: names stay as written (keepNames for the ones esbuild
    // renames), for logs, errors and the frames of dependencies.
    minifyWhitespace: true,
    minifySyntax: true,
    keepNames: false,
    sourcemap: "linked",
    sourcesContent: false,
    legalComments: "none",
    metafile: true,
    logLevel: "warning"
  })
  for (const file of Object.keys(result.metafile.outputs).filter((name) => name.endsWith(".map"))) {
    const path = Path.join(REPO, file)
    const map = JSON.parse(Fs.readFileSync(path, "utf8"))
    Fs.writeFileSync(path, JSON.stringify(reduceSourceMap(map, (source) => !source.includes("node_modules/"))))
  }
  return result.metafile
}

/**
 * The dev control plane's `main.ts` as one file, for the tests that run it as a process
 * (packages/agent/test/support/processes.ts): it starts in a fraction of the time its
 * `tsc` output takes to load, module by module. Not shipped; readable as built (no
 * minification, no source map) for a failing test's stack traces.
 */
export const CONTROL_PLANE_BUNDLE = Path.join(REPO, "packages/dev-control-plane/build/bundle/main.mjs")

/** Builds the dev control plane's bundle into `outfile`; returns what it holds. */
export const buildControlPlaneBundle = async (outfile: string): Promise<esbuild.Metafile> => {
  const result = await esbuild.build({
    absWorkingDir: REPO,
    entryPoints: [Path.join(REPO, "packages/dev-control-plane/src/main.ts")],
    outfile,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    conditions: ["@nixfleet/source"],
    banner: { js: BANNER },
    metafile: true,
    logLevel: "warning"
  })
  return result.metafile
}

if (import.meta.filename === Path.resolve(process.argv[1] ?? "")) {
  const started = performance.now()
  const metafile = await buildBundle(BUNDLE_DIR)
  Fs.mkdirSync(Path.dirname(META_FILE), { recursive: true })
  Fs.writeFileSync(META_FILE, JSON.stringify(metafile))
  await buildControlPlaneBundle(CONTROL_PLANE_BUNDLE)
  const outputs = Object.entries(metafile.outputs).filter(([file]) => file.endsWith(".mjs"))
  const bytes = outputs.reduce((total, [, output]) => total + output.bytes, 0)
  process.stdout.write(
    `bundle: ${Path.relative(REPO, BUNDLE_DIR)}: ${outputs.length} files, ${(bytes / 1024 / 1024).toFixed(1)} MiB ` +
      `in ${Math.round(performance.now() - started)} ms\n`
  )
}
