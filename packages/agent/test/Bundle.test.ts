/**
 * The bundled command line, run for real as a package installs it: the bundle is built
 * (scripts/bundle.ts, as `npm run build` does) into a directory laid out like the installed
 * package, whose node_modules holds only the native modules, so nothing else can be loaded
 * from the repository. There: the chunks loaded at start hold none of the heavy parts, and
 * no chunk holds the dev tools (`dev` loads `@nixfleet/dev` by name, from a checkout);
 * `--version`, `status` on an empty state directory, and `run` against the dev control plane
 * up to boot recovery and a clean stop; `dev`, without the dev tools installed, says so in
 * one line; and stack traces name our TypeScript files.
 */
import { describe, expect, it } from "@effect/vitest"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import type { Metafile } from "esbuild"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { buildBundle } from "../../../scripts/bundle.js"
import { VERSION } from "../src/support/version.js"
import {
  eventually,
  logged,
  REPO,
  startAgent,
  startControlPlane,
  tail,
  tempDirectory,
  TEST_MODES,
  testModeHost
} from "./support/processes.js"

const TIMEOUT = 120_000
const NATIVE = ["better-sqlite3", "unix-dgram"]

interface Installed {
  readonly bin: string
  readonly bundleDir: string
  readonly metafile: Metafile
}

/** `<dir>/{package.json, bin, dist/bundle, node_modules/<native modules>}`, as the agent's package installs. */
const install = (dir: string): Effect.Effect<Installed> =>
  Effect.promise(async () => {
    const bundleDir = Path.join(dir, "dist/bundle")
    const metafile = await buildBundle(bundleDir)
    Fs.writeFileSync(Path.join(dir, "package.json"), JSON.stringify({ type: "module" }))
    Fs.mkdirSync(Path.join(dir, "bin"))
    const bin = Path.join(dir, "bin/nixfleet-agent.js")
    Fs.copyFileSync(Path.join(REPO, "packages/agent/bin/nixfleet-agent.js"), bin)
    Fs.mkdirSync(Path.join(dir, "node_modules"))
    for (const name of NATIVE) {
      const real = Path.join(REPO, "node_modules", name)
      if (Fs.existsSync(real)) Fs.symlinkSync(real, Path.join(dir, "node_modules", name))
    }
    return { bin, bundleDir, metafile }
  })

const agent = (installed: Installed, args: ReadonlyArray<string>, nodeArgs: ReadonlyArray<string> = []) =>
  runProcess(process.execPath, [...nodeArgs, installed.bin, ...args], { cwd: Path.dirname(installed.bundleDir) })

/**
 * The output files the command line loads before a command runs: the entry, what it
 * imports dynamically (the command line, when the argument is not `--version` alone), and
 * what those import statically, transitively.
 */
const commandLineOutputs = (metafile: Metafile): ReadonlyArray<string> => {
  const entry = Object.keys(metafile.outputs).find((file) => file.endsWith("nixfleet-agent.mjs"))
  const seen = new Set<string>()
  const pending = entry === undefined ? [] : [
    entry,
    ...(metafile.outputs[entry]?.imports ?? []).filter((i) => i.kind === "dynamic-import").map((i) => i.path)
  ]
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (seen.has(file)) continue
    seen.add(file)
    for (const imported of metafile.outputs[file]?.imports ?? []) {
      if (imported.kind === "import-statement") pending.push(imported.path)
    }
  }
  return [...seen]
}

/** The dev tools' sources: the demo and the Nix fixtures (once under the agent's src/dev), the dev control plane. */
const DEV_TOOLS = /(^|\/)packages\/(dev|dev-control-plane|agent\/src\/dev)\//

const HEAVY = [
  /\/packages\/agent\/src\/AgentRuntime\.ts$/,
  /node_modules\/(better-sqlite3|@effect\/sql-sqlite-node)\//,
  /node_modules\/undici\//,
  /\/src\/controlplane\/ControlPlaneHttp\.ts$/,
  /node_modules\/@peculiar\/x509\//,
  /opentelemetry/,
  /dev-control-plane/
]

describe("the bundle", () => {
  it.scopedLive(
    "runs as installed: --version, status, run to boot recovery, dev without the dev tools",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const installed = yield* install(Path.join(dir, "package"))

        // What the command line loads: none of the heavy parts, no external package.
        const startup = commandLineOutputs(installed.metafile)
        expect(startup.length).toBeGreaterThan(0)
        const inputs = startup.flatMap((file) => Object.keys(installed.metafile.outputs[file]?.inputs ?? {}))
        expect(inputs.some((input) => input.endsWith("src/cli/Cli.ts"))).toBe(true)
        expect(inputs.filter((input) => HEAVY.some((pattern) => pattern.test(input)))).toStrictEqual([])
        const externals = startup.flatMap((file) =>
          (installed.metafile.outputs[file]?.imports ?? []).filter((i) => i.external && !i.path.startsWith("node:"))
        )
        expect(externals).toStrictEqual([])

        // No chunk holds the dev tools, nor imports them by a name esbuild could follow.
        const outputs = Object.values(installed.metafile.outputs)
        expect(outputs.flatMap((output) => Object.keys(output.inputs)).filter((input) => DEV_TOOLS.test(input)))
          .toStrictEqual([])
        expect(outputs.flatMap((output) => output.imports).filter((i) => i.path.startsWith("@nixfleet/")))
          .toStrictEqual([])

        const version = yield* agent(installed, ["--version"])
        expect(version.code, version.stderr).toBe(0)
        expect(version.stdout.trim()).toBe(VERSION)

        const stateDir = Path.join(dir, "empty-state")
        Fs.mkdirSync(stateDir)
        const status = yield* agent(installed, ["status", "--state-dir", stateDir])
        expect(status.code, status.stderr).toBe(3)
        expect(status.stdout).toContain("not running")

        const dev = yield* agent(installed, ["dev"])
        expect(dev.code).toBe(69)
        expect(dev.stderr.trim().split("\n")).toHaveLength(1)
        expect(dev.stderr).toMatch(/^nixfleet-agent: dev needs the @nixfleet\/dev package, .*\(npm start\)$/m)
        expect(dev.stdout).toBe("")

        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const daemon = yield* startAgent(cp, testModeHost(dir), TEST_MODES, installed.bin)
        yield* eventually(
          "boot recovery",
          Effect.sync(() => logged(daemon, "boot recovery done")),
          45_000,
          Effect.sync(() => tail(daemon.stderr()))
        )
        daemon.signal("SIGTERM")
        expect((yield* daemon.awaitExit(30_000))?.code, tail(daemon.stderr())).toBe(0)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "stack traces: a frame in the bundle names src/cli/StatusCommand.ts",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const installed = yield* install(Path.join(dir, "package"))
        // A string of StatusCommand.ts, found in its chunk: a frame there, formatted by the
        // process's Error.prepareStackTrace once the bin script has run.
        const needle = "the status socket sent more than"
        const chunk = Object.keys(installed.metafile.outputs)
          .map((file) => Path.resolve(REPO, file))
          .find((file) => file.endsWith(".mjs") && Fs.readFileSync(file, "utf8").includes(needle))
        expect(chunk).toBeDefined()
        const entry = pathToFileURL(chunk ?? "").href
        const code = Fs.readFileSync(chunk ?? "", "utf8")
        const at = code.indexOf(needle)
        const before = code.slice(0, at)
        const line = before.split("\n").length
        const column = at - before.lastIndexOf("\n")
        const probe = Path.join(dir, "probe.mjs")
        Fs.writeFileSync(
          probe,
          "process.on(\"exit\", () => {\n" +
            `  const site = { toString: () => "askAgent (${entry}:${line}:${column})", getFileName: () => "${entry}", ` +
            `getLineNumber: () => ${line}, getColumnNumber: () => ${column} }\n` +
            "  process.stdout.write(`STACK ${JSON.stringify(Error.prepareStackTrace?.(new Error(\"probe\"), [site]) ?? null)}\\n`)\n" +
            "})\n"
        )
        const done = yield* agent(installed, ["--version"], ["--import", pathToFileURL(probe).href])
        expect(done.code, done.stderr).toBe(0)
        const stack = done.stdout.split("\n").find((text) => text.startsWith("STACK "))
        expect(JSON.parse(stack?.slice("STACK ".length) ?? "null")).toMatch(
          /^Error: probe\n {4}at askAgent \(\/.*\/src\/cli\/StatusCommand\.ts:\d+:\d+\)$/
        )
      }),
    TIMEOUT
  )
})
