/**
 * What each command loads: `--version`, `--help`, `status`, `activate` and `export-queue`
 * never load the runtime, SQLite (export-queue aside: the outbox is its job), the HTTP
 * client, x509, OpenTelemetry or the dev control plane; `run` loads the runtime, SQLite and the
 * HTTP client, but neither x509 (enrollment and renewal load it when they run),
 * OpenTelemetry (no endpoint set) nor the dev control plane. Each command runs as a process from the sources, with a module hook that records
 * every module it resolves; the bundle splits at the same dynamic imports (Bundle.test.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { TARGET } from "./support/fixtures.js"
import {
  AGENT_SOURCE,
  eventually,
  logged,
  spawnScript,
  startAgent,
  startControlPlane,
  tail,
  tempDirectory,
  TEST_MODES,
  testModeHost
} from "./support/processes.js"

const TIMEOUT = 90_000

/** What a command must not load, by the module URLs that give it away. */
const HEAVY = {
  runtime: /\/packages\/agent\/src\/AgentRuntime\.ts$/,
  sqlite: /\/node_modules\/(better-sqlite3|@effect\/sql-sqlite-node)\//,
  httpClient:
    /\/node_modules\/undici\/|\/@effect\/platform\/dist\/esm\/HttpClient\.js$|\/src\/controlplane\/ControlPlaneHttp\.ts$/,
  x509: /\/node_modules\/@peculiar\/x509\//,
  openTelemetry: /opentelemetry/,
  devControlPlane: /\/packages\/dev-control-plane\//
} as const

type Heavy = keyof typeof HEAVY

/** The heavy parts among `urls`. */
const heavyParts = (urls: ReadonlyArray<string>): ReadonlyArray<Heavy> =>
  (Object.keys(HEAVY) as Array<Heavy>).filter((part) => urls.some((url) => HEAVY[part].test(url)))

/**
 * A module hook, registered through NODE_OPTIONS, that appends every URL the process
 * resolves to a file.
 */
const moduleLog = (dir: string) => {
  const log = Path.join(dir, "resolved.log")
  Fs.writeFileSync(
    Path.join(dir, "hook.mjs"),
    `import { appendFileSync } from "node:fs"\n` +
      "export async function resolve(specifier, context, next) {\n" +
      "  const resolved = await next(specifier, context)\n" +
      `  appendFileSync(${JSON.stringify(log)}, resolved.url + "\\n")\n` +
      "  return resolved\n}\n"
  )
  Fs.writeFileSync(
    Path.join(dir, "register.mjs"),
    `import { register } from "node:module"\nregister(${JSON.stringify(`file://${dir}/hook.mjs`)})\n`
  )
  return {
    env: { NODE_OPTIONS: `--import ${dir}/register.mjs` },
    resolved: (): ReadonlyArray<string> => Fs.existsSync(log) ? Fs.readFileSync(log, "utf8").split("\n") : []
  }
}

/** Runs `nixfleet-agent ...args` from the sources to its end; what it resolved, its exit code and stderr. */
const command = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.gen(function*() {
    const dir = yield* tempDirectory
    const modules = moduleLog(dir)
    const spawned = yield* spawnScript("agent", AGENT_SOURCE, args, { ...env, ...modules.env })
    const exit = yield* spawned.awaitExit(60_000)
    return { code: exit?.code, stderr: tail(spawned.stderr()), loaded: heavyParts(modules.resolved()) }
  }).pipe(Effect.scoped)

describe("what each command loads", () => {
  it.live("--version and --help load none of the heavy parts", () =>
    Effect.gen(function*() {
      const version = yield* command(["--version"])
      expect(version.code, version.stderr).toBe(0)
      expect(version.loaded).toStrictEqual([])
      const help = yield* command(["--help"])
      expect(help.code, help.stderr).toBe(0)
      expect(help.loaded).toStrictEqual([])
    }), TIMEOUT)

  it.scopedLive("status on a state directory without an agent loads none of them", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      const done = yield* command(["status", "--state-dir", dir, "--current-system-path", Path.join(dir, "none")])
      expect(done.code, done.stderr).toBe(3)
      expect(done.loaded).toStrictEqual([])
    }), TIMEOUT)

  it.scopedLive("activate loads the pipeline only", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      // No Nix on PATH: the pipeline fails at its first command, after everything it needs is loaded.
      const done = yield* command([
        "activate",
        TARGET,
        "--state-dir",
        Path.join(dir, "state"),
        "--system-profile",
        Path.join(dir, "profile"),
        "--current-system-path",
        Path.join(dir, "current-system"),
        "--switch-lock-path",
        Path.join(dir, "switch.lock"),
        "--switch-method",
        "direct"
      ], { PATH: Path.join(dir, "no-bin") })
      expect(done.code, done.stderr).toBe(1)
      expect(done.loaded).toStrictEqual([])
    }), TIMEOUT)

  it.scopedLive("export-queue loads SQLite, and nothing else of them", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      const done = yield* command(["export-queue", "--state-dir", dir])
      expect(done.loaded.filter((part) => part !== "sqlite"), done.stderr).toStrictEqual([])
    }), TIMEOUT)

  it.scopedLive(
    "run loads the runtime, SQLite and the HTTP client, not x509, OpenTelemetry or the dev control plane",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const modules = moduleLog(dir)
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startAgent(cp, host, { ...TEST_MODES, ...modules.env }, AGENT_SOURCE)
        yield* eventually(
          "boot recovery",
          Effect.sync(() => logged(agent, "boot recovery done")),
          45_000,
          Effect.sync(() => tail(agent.stderr()))
        )
        agent.signal("SIGTERM")
        expect((yield* agent.awaitExit(30_000))?.code, tail(agent.stderr())).toBe(0)
        expect(heavyParts(modules.resolved())).toStrictEqual(["runtime", "sqlite", "httpClient"])
      }),
    TIMEOUT
  )
})
