/**
 * The agent's unit under a real systemd: `shared/tools/systemd-box/box` boots this machine's
 * systemd as PID 1 of a private PID and mount namespace over a copy-on-write overlay of `/`
 * (its README says why it is the only way systemd may be started here). The unit is the
 * one the NixOS module, evaluated by nixpkgs' module system, renders; its ExecStart runs the
 * command line as users run it (`packages/agent/bin/nixfleet-agent.js` on the bundle, with
 * its shebang's node flags) with this node, through a stand-in package under a directory
 * shared into the box. Used by the systemd tests and the benchmark.
 *
 * Every failure here is a setup error: the effects die with what was run and what it said.
 */
import { type ProcessResult, runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { buildBundle } from "../bundle.js"
import { evalNixos, moduleEvalMissing, onPath, REPO, type Settings } from "../nix/moduleEval.js"

export const BOX = Path.resolve(REPO, "../shared/tools/systemd-box/box")
export const UNIT = "nixfleet-agent"

/** What this machine lacks to run the unit under systemd in a box, or undefined. */
export const boxMissing = (): string | undefined => {
  if (!Fs.existsSync(BOX)) return `the systemd box ${BOX} (shared/tools/systemd-box beside the checkout)`
  if (process.getuid?.() !== 0) return "root (the systemd box needs it)"
  if (!Fs.existsSync("/lib/systemd/systemd")) return "/lib/systemd/systemd (Debian: apt-get install systemd)"
  if (!onPath("unshare") || !onPath("nsenter")) return "unshare and nsenter (util-linux)"
  if (!onPath("dbus-daemon")) return "dbus-daemon (Debian: apt-get install dbus; systemd-run --wait needs the bus)"
  const filesystems = Fs.existsSync("/proc/filesystems") ? Fs.readFileSync("/proc/filesystems", "utf8") : ""
  if (!/\boverlay\b/.test(filesystems)) return "overlayfs"
  return moduleEvalMissing()
}

const fail = (what: string, done: ProcessResult) =>
  Effect.dieMessage(`${what} exited ${done.code ?? done.signal}:\n${done.stdout}\n${done.stderr}`)

/** The native modules the bundle leaves external, linked from the checkout's node_modules. */
const NATIVE = ["better-sqlite3", "unix-dgram"]

/**
 * The command line as users run it, built from the sources under test into `dir` (not the
 * checkout's `dist/bundle`, which other builds may be rewriting): the package's
 * `bin/nixfleet-agent.js` next to `dist/bundle` and the native modules. Its path. Before
 * the box starts, which sees files as they were at its start.
 */
export const installCli = (dir: string): Effect.Effect<string> =>
  Effect.promise(async () => {
    const root = Path.join(dir, "agent-install")
    await buildBundle(Path.join(root, "dist/bundle"))
    Fs.writeFileSync(Path.join(root, "package.json"), JSON.stringify({ type: "module" }))
    Fs.mkdirSync(Path.join(root, "bin"), { recursive: true })
    const bin = Path.join(root, "bin/nixfleet-agent.js")
    Fs.copyFileSync(Path.join(REPO, "packages/agent/bin/nixfleet-agent.js"), bin)
    Fs.mkdirSync(Path.join(root, "node_modules"), { recursive: true })
    for (const name of NATIVE) {
      Fs.symlinkSync(Path.join(REPO, "node_modules", name), Path.join(root, "node_modules", name))
    }
    return bin
  })

/**
 * How the package's wrapper (nix/package.nix) runs `bin`: the variables and node flags of
 * its shebang (`#!/usr/bin/env -S NAME=value … node --flag …`), then the script. As argv for
 * `env`.
 */
export const cliArgv = (bin: string): ReadonlyArray<string> => {
  const shebang = Fs.readFileSync(bin, "utf8").split("\n")[0] ?? ""
  const words = shebang.replace(/^#!\/usr\/bin\/env -S /, "").split(" ").filter((word) => word !== "")
  const node = words.indexOf("node")
  if (node < 0) throw new Error(`no \`node\` in the shebang of ${bin}: ${shebang}`)
  return [...words.slice(0, node), process.execPath, ...words.slice(node + 1), bin]
}

/** A temporary directory (resolved), removed with the scope. */
export const tempDirectory = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => Fs.realpathSync(Fs.mkdtempSync(Path.join(Os.tmpdir(), prefix)))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

export interface Box {
  /** Its systemd's PID, in this namespace. */
  readonly pid: string
  /** Runs argv inside the box; a non-zero exit is a result. */
  readonly exec: (argv: ReadonlyArray<string>) => Effect.Effect<ProcessResult>
  /** Runs argv inside the box; dies unless it exits 0. Its stdout. */
  readonly run: (argv: ReadonlyArray<string>) => Effect.Effect<string>
  /** `systemctl show` of `properties`, as a record. */
  readonly show: (unit: string, properties: ReadonlyArray<string>) => Effect.Effect<Record<string, string>>
  /** The unit's own output in the journal (`_SYSTEMD_UNIT=`, `-o cat`), one entry per line. */
  readonly journal: (unit: string) => Effect.Effect<ReadonlyArray<string>>
  /** Installs `text` as /run/systemd/system/<name> (and a drop-in), then daemon-reload. */
  readonly install: (name: string, text: string, dropIn?: string) => Effect.Effect<void>
}

/**
 * Boots a box sharing the repository and `shares` (read-write, at the same paths); stopped
 * with the scope. `exchange` (one of the shares) holds the unit files on their way in. The
 * repository is always shared: the box mounts a fresh `/tmp`, so a checkout under `/tmp`
 * (as a CI clone may be) would otherwise be missing inside.
 */
export const startBox = (
  shares: ReadonlyArray<string>,
  exchange: string
): Effect.Effect<Box, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pid = yield* Effect.acquireRelease(
      Effect.flatMap(
        runProcess(BOX, ["start", ...[...new Set([REPO, ...shares])].flatMap((dir) => ["--share", dir])]),
        (done) => done.code === 0 ? Effect.succeed(done.stdout.trim()) : fail("box start", done)
      ),
      (pid) => Effect.asVoid(runProcess(BOX, ["stop", pid]))
    )
    const exec = (argv: ReadonlyArray<string>) => runProcess(BOX, ["exec", pid, ...argv])
    const run = (argv: ReadonlyArray<string>) =>
      Effect.flatMap(exec(argv), (done) => done.code === 0 ? Effect.succeed(done.stdout) : fail(argv.join(" "), done))
    const show = (unit: string, properties: ReadonlyArray<string>) =>
      Effect.map(run(["systemctl", "show", unit, ...properties.map((p) => `--property=${p}`)]), (text) => {
        const values: Record<string, string> = {}
        for (const line of text.split("\n")) {
          const eq = line.indexOf("=")
          if (eq > 0) values[line.slice(0, eq)] = line.slice(eq + 1)
        }
        return values
      })
    const journal = (unit: string) =>
      Effect.map(
        run(["journalctl", `_SYSTEMD_UNIT=${unit}.service`, "-o", "cat", "--no-pager"]),
        (text) => text.split("\n").filter((line) => line !== "")
      )
    let installs = 0
    const install = (name: string, text: string, dropIn?: string) =>
      Effect.gen(function*() {
        const staged = Path.join(exchange, `unit-${installs++}`)
        Fs.writeFileSync(staged, text)
        yield* run(["install", "-D", "-m", "0644", staged, `/run/systemd/system/${name}`])
        yield* run(["rm", "-rf", `/run/systemd/system/${name}.d`])
        if (name.endsWith(".service")) {
          // The stand-in package links its native modules into the checkout: a sandboxed
          // unit's PrivateTmp would hide a checkout under /tmp (as a CI clone may be).
          Fs.writeFileSync(`${staged}.checkout.conf`, `[Service]\nBindReadOnlyPaths=${REPO}\n`)
          yield* run([
            "install",
            "-D",
            "-m",
            "0644",
            `${staged}.checkout.conf`,
            `/run/systemd/system/${name}.d/checkout.conf`
          ])
        }
        if (dropIn !== undefined) {
          Fs.writeFileSync(`${staged}.conf`, dropIn)
          yield* run(["install", "-D", "-m", "0644", `${staged}.conf`, `/run/systemd/system/${name}.d/test.conf`])
        }
        yield* run(["systemctl", "daemon-reload"])
      })
    return { pid, exec, run, show, journal, install }
  })

/**
 * The stand-in package `dir/name` whose `bin/nixfleet-agent` the unit runs: `exec` of this
 * node on the installed `bin` with its shebang's flags, as the package's wrapper does (so
 * the agent is the unit's main process, as NotifyAccess=main needs). Another name stands in
 * for another version of the package.
 */
export const agentPackage = (dir: string, bin: string, name = "nixfleet-agent"): string => {
  const pkg = Path.join(dir, name)
  Fs.mkdirSync(Path.join(pkg, "bin"), { recursive: true })
  const wrapper = Path.join(pkg, "bin", "nixfleet-agent")
  Fs.writeFileSync(wrapper, `#!/bin/sh\nexec env ${cliArgv(bin).map((word) => JSON.stringify(word)).join(" ")} "$@"\n`)
  Fs.chmodSync(wrapper, 0o755)
  return pkg
}

/**
 * The unit the NixOS module renders for `settings`, with the stand-in agent package in
 * `pkg` and the host's own tools (`/usr`) for Nix and systemd, and no NixOS locale or
 * zoneinfo variables (their store paths do not exist here).
 */
export const agentUnit = (settings: Settings, pkg: string): Effect.Effect<string> =>
  Effect.flatMap(
    evalNixos(settings, {
      paths: {
        "nixfleet-agent-0.1.0": pkg,
        nix: "/usr",
        systemd: "/usr",
        coreutils: "/usr",
        findutils: "/usr",
        gnugrep: "/usr",
        gnused: "/usr"
      },
      globalEnvironment: {}
    }),
    (result) => result.unit === null ? Effect.dieMessage("the module rendered no unit") : Effect.succeed(result.unit)
  )

/** Polls `check` every 100 ms until it holds; dies after `timeoutMs` with `diagnostics`. */
export const eventually = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  timeoutMs: number,
  diagnostics: Effect.Effect<string, E, R> = Effect.succeed("")
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!(yield* check)) {
      if (Date.now() > deadline) {
        return yield* Effect.dieMessage(`timed out after ${timeoutMs} ms waiting for ${what}\n${yield* diagnostics}`)
      }
      yield* Effect.sleep("100 millis")
    }
  })
