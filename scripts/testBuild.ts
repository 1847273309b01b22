/**
 * Before any test runs: the build the process tests spawn, brought up to date once per run
 * (vitest's `globalSetup`, named by vitest.shared.ts), so that a test never runs a stale
 * CLI: a source edited, then one test file run, runs the edit.
 *
 * - `tsc -b` of the dev tools' package (`@nixfleet/dev`, and so of the agent's library, the
 *   dev control plane, proto and state-machine): the `dist` that `nixfleet-agent dev` loads
 *   the demo from, by name, the one build output the spawned processes load besides the
 *   bundles. Incremental: an edit to the agent costs a type check of what it touches. Type
 *   errors are printed but do not stop the run: tsc has emitted the JavaScript all the
 *   same, and `npm run typecheck` is where they fail. A build that emits nothing (a broken
 *   tsconfig) fails the run.
 * - The CLI's bundle (`packages/agent/dist/bundle`, run by `packages/agent/bin`) and the dev
 *   control plane's (scripts/bundle.ts), each rebuilt only when one of its inputs changed
 *   since it was built; an esbuild error fails the run. A new bundle replaces the old one
 *   file by file with renames, so that the processes of a concurrent run never load a
 *   half-written file or miss a chunk.
 */
import type { Metafile } from "esbuild"
import { execFile } from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { buildBundle, buildControlPlaneBundle, BUNDLE_DIR, CONTROL_PLANE_BUNDLE, META_FILE } from "./bundle.js"

const REPO = Path.resolve(import.meta.dirname, "..")
const TSC = createRequire(import.meta.url).resolve("typescript/bin/tsc")
const TSC_PROJECT = "packages/dev/tsconfig.src.json"
const CONTROL_PLANE_META = Path.join(Path.dirname(CONTROL_PLANE_BUNDLE), "meta.json")
/** What decides how a bundle is built, besides its inputs. */
const BUILD_SCRIPTS = ["scripts/bundle.ts", "scripts/sourceMaps.ts", "package-lock.json"]

class BuildFailed extends Error {
  override readonly name = "BuildFailed"
}

const mtime = (path: string): number | undefined => {
  try {
    return Fs.statSync(path).mtimeMs
  } catch {
    return undefined
  }
}

const readMeta = (metaFile: string): Metafile | undefined => {
  try {
    return JSON.parse(Fs.readFileSync(metaFile, "utf8")) as Metafile
  } catch {
    return undefined
  }
}

/**
 * Whether the bundle whose metafile is `metaFile` (stamped with the time its build started)
 * still reflects every input it was built from, and `output` is there.
 */
const upToDate = (metaFile: string, output: string): boolean => {
  const builtAt = mtime(metaFile)
  const meta = readMeta(metaFile)
  if (builtAt === undefined || meta === undefined || !Fs.existsSync(output)) return false
  return [...Object.keys(meta.inputs), ...BUILD_SCRIPTS].every((input) => {
    const changed = mtime(Path.resolve(REPO, input))
    return changed !== undefined && changed <= builtAt
  })
}

/** The metafile, stamped with the time the build started (an input edited during it is then newer). */
const writeMeta = (metaFile: string, meta: Metafile, startedAt: Date) => {
  Fs.mkdirSync(Path.dirname(metaFile), { recursive: true })
  Fs.writeFileSync(metaFile, JSON.stringify(meta))
  Fs.utimesSync(metaFile, startedAt, startedAt)
}

const esbuildFailure = (what: string) => (e: unknown) => {
  throw new BuildFailed(`${what}: ${e instanceof Error ? e.message : String(e)}`)
}

/** A chunk no longer part of the bundle is removed this long after it was replaced. */
const STALE_CHUNK_MS = 10 * 60_000

/** The chunks' file names (`<name>-<hash>.mjs` and their maps) in a metafile's outputs. */
const chunksOf = (meta: Metafile | undefined): ReadonlySet<string> =>
  new Set(
    Object.keys(meta?.outputs ?? {}).flatMap((file) => {
      const name = Path.basename(file)
      return Path.basename(Path.dirname(file)) === "chunks" ? [name, `${name}.map`] : []
    })
  )

/**
 * Builds the CLI's bundle beside the current one, then moves its files in, the chunks
 * before the entry points that import them. A process started from the previous bundle
 * (another run's) loads its commands' chunks lazily: the chunks it replaced (names are
 * content hashes) are kept {@link STALE_CHUNK_MS} longer.
 */
const cliBundle = async () => {
  if (upToDate(META_FILE, Path.join(BUNDLE_DIR, "nixfleet-agent.mjs"))) return
  const startedAt = new Date()
  const staging = `${BUNDLE_DIR}.${process.pid}.new`
  const meta = await buildBundle(staging).catch(esbuildFailure("the CLI's bundle (scripts/bundle.ts)"))
  const files = Fs.readdirSync(staging, { recursive: true, encoding: "utf8" })
    .filter((file) => Fs.statSync(Path.join(staging, file)).isFile())
    .sort((a, b) => Number(b.startsWith("chunks/")) - Number(a.startsWith("chunks/")))
  Fs.mkdirSync(Path.join(BUNDLE_DIR, "chunks"), { recursive: true })
  for (const file of files) Fs.renameSync(Path.join(staging, file), Path.join(BUNDLE_DIR, file))
  Fs.rmSync(staging, { recursive: true, force: true })
  const current = chunksOf(meta)
  const replaced = chunksOf(readMeta(META_FILE))
  for (const file of Fs.readdirSync(Path.join(BUNDLE_DIR, "chunks"))) {
    const path = Path.join(BUNDLE_DIR, "chunks", file)
    if (current.has(file)) continue
    if (replaced.has(file)) Fs.utimesSync(path, startedAt, startedAt)
    else if (startedAt.getTime() - (mtime(path) ?? 0) > STALE_CHUNK_MS) Fs.rmSync(path, { force: true })
  }
  writeMeta(META_FILE, meta, startedAt)
}

const controlPlaneBundle = async () => {
  if (upToDate(CONTROL_PLANE_META, CONTROL_PLANE_BUNDLE)) return
  const startedAt = new Date()
  const staging = `${CONTROL_PLANE_BUNDLE}.${process.pid}.new`
  const meta = await buildControlPlaneBundle(staging).catch(
    esbuildFailure("the dev control plane's bundle (scripts/bundle.ts)")
  )
  Fs.renameSync(staging, CONTROL_PLANE_BUNDLE)
  writeMeta(CONTROL_PLANE_META, meta, startedAt)
}

/** `tsc -b` of {@link TSC_PROJECT}; type errors are shown, a build that could not emit throws. */
const typescript = () =>
  new Promise<void>((resolve, reject) => {
    execFile(
      process.execPath,
      [TSC, "-b", TSC_PROJECT],
      { cwd: REPO, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout) => {
        if (error === null) return resolve()
        const output = stdout === "" ? error.message : stdout
        // No diagnostic: tsc itself failed. TS5xxx: the configuration is broken, nothing was emitted.
        if (!/error TS\d+/.test(output) || /error TS5\d{3}/.test(output)) {
          return reject(new BuildFailed(`tsc -b ${TSC_PROJECT} failed:\n${output}`))
        }
        process.stderr.write(
          `\ntsc -b ${TSC_PROJECT}: type errors (the JavaScript was emitted and the tests run on it; ` +
            `npm run typecheck fails):\n${output}\n`
        )
        resolve()
      }
    )
  })

const build = async () => {
  const started = performance.now()
  await Promise.all([typescript(), cliBundle(), controlPlaneBundle()])
  const ms = Math.round(performance.now() - started)
  if (ms > 5_000) process.stderr.write(`build before the tests: ${ms} ms\n`)
}

/**
 * Every project of the run names this file (vitest.shared.ts), and vitest sets each up in
 * the same process with a module instance of its own: the build runs once per process.
 */
const ONCE = Symbol.for("nixfleet.testBuild")

export default function setup(): Promise<void> {
  const registry = globalThis as typeof globalThis & { [ONCE]?: Promise<void> }
  registry[ONCE] ??= build()
  return registry[ONCE]
}
