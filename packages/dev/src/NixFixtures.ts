/**
 * Real-Nix fixtures for the activation pipeline's tests.
 *
 * A {@link NixSandbox} is a temporary directory standing in for a host's mutable system
 * state (`run/current-system`, `profiles/system`, the switch lock, the agent's state
 * directory). {@link buildClosure} builds, with the host's real Nix and no nixpkgs, a small
 * store path shaped like a NixOS system closure whose `bin/switch-to-configuration` is a
 * shell script with a chosen behaviour; the script has the sandbox's paths baked in, so it
 * flips the sandbox's current-system link and records markers under the sandbox instead of
 * touching the host. The sandbox, the closures and the binary cache are the demo's (the
 * rest of this package, which `nixfleet-agent dev` runs); this entry
 * (`@nixfleet/dev/NixFixtures`) adds what only the tests and scripts need.
 *
 * Every failure here is a test setup error: the effects die with a message saying what
 * was run and what it printed.
 */
import { NodeContext } from "@effect/platform-node"
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as BinaryCache from "./BinaryCache.js"
import * as NixClosures from "./NixClosures.js"
import { type Environment, nixConfig, OFFLINE, substituteFrom, withEnvironment } from "./NixEnvironment.js"
import * as Sandbox from "./Sandbox.js"

export type { ClosureSpec, Component, SwitchBehaviour } from "./NixClosures.js"

/** Every fixture Nix call: no substituters (no network), `nix copy` enabled. */
const baseEnv = nixConfig(OFFLINE)

// ---------------------------------------------------------------------------------------
// Subprocesses and files
// ---------------------------------------------------------------------------------------

/**
 * What a finished subprocess reported.
 */
export interface ProcessResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const describeCommand = (command: string, args: ReadonlyArray<string>) => [command, ...args].join(" ")

/**
 * Runs `command` with an argv array (no shell) and collects its output; `env` is merged
 * over the test process's environment. Dies if the command cannot be started; a non-zero
 * exit is a result, not a failure. Interrupting the effect kills the child.
 */
export const runProcess = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly env?: Readonly<Record<string, string>> | undefined; readonly cwd?: string | undefined } = {}
): Effect.Effect<ProcessResult> =>
  Effect.async<ProcessResult, Error>((resume) => {
    let done = false
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    child.on("error", (e) => {
      if (done) return
      done = true
      resume(Effect.fail(new Error(`cannot run ${describeCommand(command, args)}: ${e.message}`)))
    })
    child.on("close", (code, signal) => {
      if (done) return
      done = true
      resume(Effect.succeed({ code, signal, stdout, stderr }))
    })
    return Effect.sync(() => {
      if (!done) child.kill("SIGKILL")
    })
  }).pipe(Effect.orDie)

/** A filesystem call; a rejection is a defect carrying `what`. */
const io = <A>(what: string, f: () => Promise<A>): Effect.Effect<A> =>
  Effect.tryPromise({ try: f, catch: (e) => new Error(`${what}: ${message(e)}`) }).pipe(Effect.orDie)

const isNotFound = (e: unknown) => e instanceof Error && "code" in e && e.code === "ENOENT"

/**
 * Runs one of the demo's sandbox operations with `env` on top of the process's
 * environment; its failure is a setup error, so a defect with its message.
 */
const nix = <A, E extends { readonly message: string }>(
  effect: Effect.Effect<A, E, NodeContext.NodeContext>,
  env: Environment = baseEnv
): Effect.Effect<A> =>
  effect.pipe(
    Effect.provide(withEnvironment(env)),
    Effect.provide(NodeContext.layer),
    Effect.catchAll((error) => Effect.dieMessage(error.message))
  )

// ---------------------------------------------------------------------------------------
// Is Nix there?
// ---------------------------------------------------------------------------------------

const isExecutableFile = (file: string) => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

const onPath = (name: string) =>
  (process.env["PATH"] ?? "").split(path.delimiter).some((dir) => dir !== "" && isExecutableFile(path.join(dir, name)))

/**
 * Whether `nix-store` and `nix-build` are on PATH. Synchronous, so that it can decide at
 * collection time whether a suite runs.
 */
export const nixAvailable: Effect.Effect<boolean> = Effect.sync(() => onPath("nix-store") && onPath("nix-build"))

/**
 * What a Nix suite does: run; be skipped (no Nix, not CI); or fail (no Nix on CI, where a
 * silently skipped suite would hide that the pipeline was never tested against Nix).
 */
export type NixSuiteMode = "run" | "skip" | "fail"

/** The decision {@link describeNix} makes. */
export const nixSuiteMode = (available: boolean, ci: boolean): NixSuiteMode => available ? "run" : ci ? "fail" : "skip"

/** `CI` is set to something other than empty, `0` or `false`. */
export const isCi = (env: Readonly<Record<string, string | undefined>> = process.env): boolean => {
  const value = env["CI"]?.trim().toLowerCase()
  return value !== undefined && value !== "" && value !== "0" && value !== "false"
}

/** Why a Nix suite cannot run. */
export const NIX_MISSING = "nix-store/nix-build not found on PATH"

// ---------------------------------------------------------------------------------------
// Sandbox
// ---------------------------------------------------------------------------------------

/**
 * A host's mutable system state, in a temporary directory (the agent's sandbox layout).
 */
export interface NixSandbox extends Sandbox.SandboxLayout {
  /** Environment (merged over the process's) to run Nix for this sandbox: no substituters. */
  readonly env: Readonly<Record<string, string>>
}

const runsLog = (sandbox: NixSandbox) => path.join(sandbox.markersDir, "runs.log")

const HANG_PID = /^hang-.*\.pid$/

/** SIGKILLs the `Hang` scripts of this sandbox that still run (checking the pid is still their sleep). */
const killHangs = (sandbox: NixSandbox): Effect.Effect<void> =>
  io(`stop hung switch scripts of ${sandbox.root}`, async () => {
    const names = await fsp.readdir(sandbox.markersDir).catch(() => [])
    for (const name of names.filter((n) => HANG_PID.test(n))) {
      const pid = Number((await fsp.readFile(path.join(sandbox.markersDir, name), "utf8")).trim())
      if (!Number.isInteger(pid) || pid <= 1) continue
      const cmdline = await fsp.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
      if (cmdline !== "/bin/sleep\u00003600\u0000") continue
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // Already gone.
      }
    }
  })

/**
 * A fresh sandbox: `run/`, `profiles/`, `state/` and `markers/` exist under `root`, which
 * is removed with everything in it when the scope closes (after killing any `Hang` switch
 * script still running). The current-system link and the lock are not created.
 */
export const makeSandbox: Effect.Effect<NixSandbox, never, Scope.Scope> = Effect.acquireRelease(
  Effect.flatMap(
    io("create a sandbox", () => fsp.mkdtemp(path.join(os.tmpdir(), "nixfleet-nix-"))),
    (root) => nix(Effect.map(Sandbox.prepare(root), (layout): NixSandbox => ({ ...layout, env: baseEnv })))
  ),
  (sandbox) =>
    Effect.zipRight(
      killHangs(sandbox),
      io(`remove ${sandbox.root}`, () => fsp.rm(sandbox.root, { recursive: true, force: true }))
    )
)

// ---------------------------------------------------------------------------------------
// Closures
// ---------------------------------------------------------------------------------------

/**
 * Builds a closure for this sandbox (see `NixClosures.buildClosure`) and
 * returns its store basename.
 */
export const buildClosure = (sandbox: NixSandbox, spec: NixClosures.ClosureSpec): Effect.Effect<string> =>
  nix(NixClosures.buildClosure(sandbox, spec), sandbox.env)

// ---------------------------------------------------------------------------------------
// The sandbox's system state
// ---------------------------------------------------------------------------------------

/**
 * As if the host had booted `basename`: points the current-system link at it (atomically)
 * and sets the profile to it (`nix-env --set`, a new generation).
 */
export const boot = (sandbox: NixSandbox, basename: string): Effect.Effect<void> =>
  nix(NixClosures.boot(sandbox, basename), sandbox.env)

/** The basename the current-system link points at, or undefined if there is no link. */
export const currentClosure = (sandbox: NixSandbox): Effect.Effect<string | undefined> =>
  nix(Effect.map(NixClosures.currentClosure(sandbox), (closure) => closure ?? undefined))

/** The basename the profile points at through its generation link, or undefined. */
export const profileClosure = (sandbox: NixSandbox): Effect.Effect<string | undefined> =>
  nix(Effect.map(NixClosures.profileClosure(sandbox), (closure) => closure ?? undefined))

/** The profile's generation links (`system-N-link`), sorted by N. */
export const generations = (sandbox: NixSandbox): Effect.Effect<ReadonlyArray<string>> =>
  Effect.map(io(`list ${path.dirname(sandbox.profile)}`, () => fsp.readdir(path.dirname(sandbox.profile))), (names) => {
    const prefix = `${path.basename(sandbox.profile)}-`
    return names
      .flatMap((name) => {
        const n = name.startsWith(prefix) && name.endsWith("-link")
          ? name.slice(prefix.length, -"-link".length)
          : ""
        return /^[0-9]+$/.test(n) ? [{ name, n: Number(n) }] : []
      })
      .sort((a, b) => a.n - b.n)
      .map(({ name }) => name)
  })

const runs = (sandbox: NixSandbox, action: "boot" | "switch"): Effect.Effect<ReadonlyArray<string>> =>
  Effect.map(
    io(`read ${runsLog(sandbox)}`, async () => {
      try {
        return await fsp.readFile(runsLog(sandbox), "utf8")
      } catch (e) {
        if (isNotFound(e)) return ""
        throw e
      }
    }),
    (log) =>
      log.split("\n").flatMap((line) => {
        const [verb, basename] = line.split(" ")
        return verb === action && basename !== undefined ? [basename] : []
      })
  )

/** Basenames whose `switch-to-configuration boot` ran in this sandbox, in order (repeats kept). */
export const bootRuns = (sandbox: NixSandbox): Effect.Effect<ReadonlyArray<string>> => runs(sandbox, "boot")

/** Basenames whose `switch-to-configuration switch` ran in this sandbox, in order (repeats kept). */
export const switchRuns = (sandbox: NixSandbox): Effect.Effect<ReadonlyArray<string>> => runs(sandbox, "switch")

// ---------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------

/**
 * Removes a closure from the local store (`nix-store --delete`). Dies, listing its GC
 * roots, if it is still alive (rooted, e.g. by a profile generation, or referenced), and
 * dies if it is not in the store to begin with.
 */
export const deleteFromStore = (basename: string): Effect.Effect<void> => nix(BinaryCache.deleteFromStore(basename))

/**
 * A signed `file://` binary cache holding `basename` (and its references), which is then
 * deleted from the local store, so that realising it has to substitute. `trustedEnv`
 * trusts the key the cache is signed with; `untrustedEnv` trusts another key only. Both
 * require signatures. The cache and keys are removed when the scope closes.
 */
export const makeBinaryCache = (sandbox: NixSandbox, basename: string): Effect.Effect<
  {
    readonly url: string
    readonly trustedEnv: Readonly<Record<string, string>>
    readonly untrustedEnv: Readonly<Record<string, string>>
  },
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      io("create a binary cache directory", () => fsp.mkdtemp(path.join(sandbox.root, "binary-cache-"))),
      (dir) => io(`remove ${dir}`, () => fsp.rm(dir, { recursive: true, force: true }))
    )
    const cache = yield* nix(BinaryCache.makeBinaryCache(dir, [basename], "nixfleet-fixture-trusted"), sandbox.env)
    const other = yield* nix(BinaryCache.generateSigningKey(dir, "nixfleet-fixture-other"))
    return {
      url: cache.url,
      trustedEnv: nixConfig(substituteFrom(cache)),
      untrustedEnv: nixConfig(substituteFrom({ url: cache.url, publicKey: other.publicKey }))
    }
  })

// ---------------------------------------------------------------------------------------
// Switch lock
// ---------------------------------------------------------------------------------------

const killGroup = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
      resume(Effect.void)
      return
    }
    child.once("exit", () => resume(Effect.void))
    try {
      process.kill(-child.pid, "SIGKILL")
    } catch {
      resume(Effect.void)
    }
  })

/**
 * Holds the sandbox's switch lock, as a switch in progress would, until the scope closes:
 * `flock --exclusive <lockPath>` around a long sleep, in a process group of its own (the
 * sleep inherits the lock, so the whole group is killed on release). Exclusive because
 * shared locks do not exclude each other: while held, `flock --nonblock --shared` fails.
 * Returns once the lock is held; dies if it is not held within 10 s.
 */
export const holdSwitchLock = (sandbox: NixSandbox): Effect.Effect<void, never, Scope.Scope> =>
  Effect.asVoid(
    Effect.acquireRelease(
      Effect.async<ChildProcess, Error>((resume) => {
        let stderr = ""
        let held = false
        const child = spawn(
          "flock",
          ["--exclusive", "--timeout", "10", sandbox.lockPath, "/bin/sh", "-c", "echo held && exec /bin/sleep 3600"],
          { detached: true, stdio: ["ignore", "pipe", "pipe"] }
        )
        child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
          stderr += chunk
        })
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
          if (!held && chunk.includes("held")) {
            held = true
            resume(Effect.succeed(child))
          }
        })
        child.on("error", (e) => {
          if (!held) resume(Effect.fail(new Error(`holdSwitchLock: cannot run flock: ${e.message}`)))
          held = true
        })
        child.on("exit", (code, signal) => {
          if (!held) {
            resume(Effect.fail(new Error(`holdSwitchLock: flock exited (${code ?? signal}) before locking: ${stderr}`)))
          }
          held = true
        })
      }).pipe(Effect.orDie),
      killGroup
    )
  )
