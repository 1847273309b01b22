/**
 * Real-Nix fixtures for the activation pipeline's tests.
 *
 * A {@link NixSandbox} is a temporary directory standing in for a host's mutable system
 * state (`run/current-system`, `profiles/system`, the switch lock, the agent's state
 * directory). {@link buildClosure} builds, with the host's real Nix and no nixpkgs, a small
 * store path shaped like a NixOS system closure whose `bin/switch-to-configuration` is a
 * shell script with a chosen behaviour; the script has the sandbox's paths baked in, so it
 * flips the sandbox's current-system link and records markers under the sandbox instead of
 * touching the host.
 *
 * Every failure here is a test setup error: the effects die with a message saying what
 * was run and what it printed.
 */
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const STORE_DIR = "/nix/store"
const CLOSURE_NIX = fileURLToPath(new URL("closure.nix", import.meta.url))

/** `NIX_CONFIG` lines every fixture Nix call uses: no substituters (no network), `nix copy` enabled. */
const BASE_NIX_CONFIG: ReadonlyArray<string> = ["substituters =", "experimental-features = nix-command"]

const nixConfig = (lines: ReadonlyArray<string>): Readonly<Record<string, string>> => ({
  NIX_CONFIG: `${lines.join("\n")}\n`
})

const baseEnv = nixConfig(BASE_NIX_CONFIG)

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

/** {@link runProcess}, dying unless the command exits 0; returns its stdout. */
const runOk = (
  what: string,
  command: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>> = baseEnv
): Effect.Effect<string> =>
  Effect.flatMap(runProcess(command, args, { env }), (result) =>
    result.code === 0
      ? Effect.succeed(result.stdout)
      : Effect.dieMessage(
        `${what} failed (exit ${result.code ?? `signal ${result.signal}`}): ${describeCommand(command, args)}\n` +
          result.stderr.trim()
      ))

/** A filesystem call; a rejection is a defect carrying `what`. */
const io = <A>(what: string, f: () => Promise<A>): Effect.Effect<A> =>
  Effect.tryPromise({ try: f, catch: (e) => new Error(`${what}: ${message(e)}`) }).pipe(Effect.orDie)

const isNotFound = (e: unknown) => e instanceof Error && "code" in e && e.code === "ENOENT"

/** `readlink`, or undefined if there is no such link. */
const readLinkIfAny = (link: string): Effect.Effect<string | undefined> =>
  io(`readlink ${link}`, async () => {
    try {
      return await fsp.readlink(link)
    } catch (e) {
      if (isNotFound(e)) return undefined
      throw e
    }
  })

let linkCounter = 0

/** Points `link` at `target` atomically (a temporary symlink renamed over it). */
const pointLink = (link: string, target: string): Effect.Effect<void> =>
  io(`point ${link} at ${target}`, async () => {
    const tmp = `${link}.tmp.${process.pid}.${linkCounter++}`
    await fsp.symlink(target, tmp)
    await fsp.rename(tmp, link)
  })

const storePath = (basename: string) => `${STORE_DIR}/${basename}`

/** Single-quoted for `/bin/sh`. */
const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

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
 * A host's mutable system state, in a temporary directory.
 */
export interface NixSandbox {
  /** A fresh temporary directory, removed when the scope closes. */
  readonly root: string
  /** `${root}/run/current-system`: created by {@link boot}, flipped by switch scripts. */
  readonly currentSystem: string
  /** `${root}/profiles/system`: its directory exists, no generation yet. */
  readonly profile: string
  /** `${root}/run/switch-to-configuration.lock`: not created. */
  readonly lockPath: string
  /** `${root}/state`: exists. */
  readonly stateDir: string
  /** Environment (merged over the process's) to run Nix for this sandbox: no substituters. */
  readonly env: Readonly<Record<string, string>>
}

const markersDir = (sandbox: NixSandbox) => path.join(sandbox.root, "markers")
const runsLog = (sandbox: NixSandbox) => path.join(markersDir(sandbox), "runs.log")

const HANG_PID = /^hang-.*\.pid$/

/** SIGKILLs the `Hang` scripts of this sandbox that still run (checking the pid is still their sleep). */
const killHangs = (sandbox: NixSandbox): Effect.Effect<void> =>
  io(`stop hung switch scripts of ${sandbox.root}`, async () => {
    const names = await fsp.readdir(markersDir(sandbox)).catch(() => [])
    for (const name of names.filter((n) => HANG_PID.test(n))) {
      const pid = Number((await fsp.readFile(path.join(markersDir(sandbox), name), "utf8")).trim())
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
 * script still running).
 */
export const makeSandbox: Effect.Effect<NixSandbox, never, Scope.Scope> = Effect.acquireRelease(
  io("create a sandbox", async () => {
    const root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), "nixfleet-nix-")))
    for (const dir of ["run", "profiles", "state", "markers"]) {
      await fsp.mkdir(path.join(root, dir))
    }
    const sandbox: NixSandbox = {
      root,
      currentSystem: path.join(root, "run", "current-system"),
      profile: path.join(root, "profiles", "system"),
      lockPath: path.join(root, "run", "switch-to-configuration.lock"),
      stateDir: path.join(root, "state"),
      env: baseEnv
    }
    return sandbox
  }),
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
 * What `bin/switch-to-configuration switch` does (after recording its marker).
 *
 * - `Flip`: after `delayMs`, points the current-system link at its own closure
 *   (atomically: a temporary symlink, then `mv -T`), exits 0.
 * - `Exit`: exits `code`, link untouched.
 * - `FlipTo`: points the link at another closure (a store basename), exits 0.
 * - `FlipThenExit`: flips to itself, then exits `code`.
 * - `Hang`: `exec /bin/sleep 3600`, link untouched (the script's pid is the sleep's). It
 *   records its pid under the sandbox, and closing the sandbox's scope kills it if it is
 *   still running, so a test that gives up on a hung switch does not leak the sleep.
 */
export type SwitchBehaviour =
  | { readonly _tag: "Flip"; readonly delayMs?: number }
  | { readonly _tag: "Exit"; readonly code: number }
  | { readonly _tag: "FlipTo"; readonly closure: string }
  | { readonly _tag: "FlipThenExit"; readonly code: number }
  | { readonly _tag: "Hang" }

/** The components whose canonical paths the pipeline compares to choose `boot` over `switch`. */
export type Component = "dbus" | "systemd" | "kernel"

/**
 * A closure to build.
 */
export interface ClosureSpec {
  /** The store name suffix, e.g. `nixos-system-web-01`. */
  readonly name: string
  /** What `switch-to-configuration switch` does. */
  readonly switch: SwitchBehaviour
  /** What `switch-to-configuration boot` exits with (default 0); it records a marker either way. */
  readonly bootExitCode?: number
  /**
   * Version labels: closures with the same label for a component share that component's
   * store path, closures with different labels do not. Each defaults to `"1"`.
   */
  readonly components?: { readonly dbus?: string; readonly systemd?: string; readonly kernel?: string }
  /** Extra input, to force a distinct store path. */
  readonly salt?: string
}

const STORE_NAME = /^[A-Za-z0-9+\-._?=]+$/
const BASENAME = /^[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+$/

const exitCode = (code: number) => {
  if (!Number.isInteger(code) || code < 0 || code > 255) {
    throw new Error(`switch fixture: exit code must be an integer in 0..255, got ${code}`)
  }
  return String(code)
}

const behaviourLines = (behaviour: SwitchBehaviour): ReadonlyArray<string> => {
  switch (behaviour._tag) {
    case "Flip": {
      const delayMs = behaviour.delayMs ?? 0
      if (!Number.isFinite(delayMs) || delayMs < 0) {
        throw new Error(`switch fixture: delayMs must be a non-negative number, got ${delayMs}`)
      }
      return [...(delayMs > 0 ? [`/bin/sleep ${(delayMs / 1000).toFixed(3)}`] : []), "flip \"$self\"", "exit 0"]
    }
    case "Exit":
      return [`exit ${exitCode(behaviour.code)}`]
    case "FlipTo":
      if (!BASENAME.test(behaviour.closure)) {
        throw new Error(`switch fixture: FlipTo needs a store basename, got ${JSON.stringify(behaviour.closure)}`)
      }
      return [`flip "$store"/${shellQuote(behaviour.closure)}`, "exit 0"]
    case "FlipThenExit":
      return ["flip \"$self\"", `exit ${exitCode(behaviour.code)}`]
    case "Hang":
      // The pid survives the `exec`: the sandbox kills the sleep when its scope closes.
      return ["echo $$ > \"$markers/hang-$base.$$.pid\"", "exec /bin/sleep 3600"]
  }
}

/**
 * The body of `bin/switch-to-configuration` (the builder prepends `#!/bin/sh` and
 * `self=$out`). Markers: `markers/<action>-<basename>` is touched and `<action> <basename>`
 * appended to `markers/runs.log` (one small `O_APPEND` write, so concurrent runs keep
 * whole lines), before the behaviour runs.
 */
const switchScript = (sandbox: NixSandbox, spec: ClosureSpec): string =>
  [
    "# nixfleet test fixture standing in for NixOS's switch-to-configuration",
    "# (packages/agent/test/nix/fixtures.ts); the paths below are one test sandbox's.",
    `link=${shellQuote(sandbox.currentSystem)}`,
    `markers=${shellQuote(markersDir(sandbox))}`,
    "store=${self%/*}",
    "base=${self##*/}",
    "action=$1",
    "flip() {",
    "  /bin/ln -s \"$1\" \"$link.tmp.$$\" && /bin/mv -T \"$link.tmp.$$\" \"$link\" || exit 70",
    "}",
    "mark() {",
    "  /bin/mkdir -p \"$markers\" && /bin/touch \"$markers/$1-$base\" && echo \"$1 $base\" >> \"$markers/runs.log\" || exit 71",
    "}",
    "case \"$action\" in",
    "  boot)",
    "    mark boot",
    `    exit ${exitCode(spec.bootExitCode ?? 0)}`,
    "    ;;",
    "  switch)",
    "    mark switch",
    ...behaviourLines(spec.switch).map((line) => `    ${line}`),
    "    ;;",
    "  *)",
    "    echo \"switch-to-configuration (nixfleet test fixture): unsupported action '$action'\" >&2",
    "    exit 1",
    "    ;;",
    "esac"
  ].join("\n")

const componentSpec = (kind: Component, label: string) => ({
  // The label is also an input of its own, so a label that is no valid store name still
  // gives a distinct path.
  name: STORE_NAME.test(label) ? `nixfleet-fixture-${kind}-${label}` : `nixfleet-fixture-${kind}`,
  label
})

/**
 * Builds a closure for this sandbox (its switch script has the sandbox's paths baked in)
 * and returns its store basename. Deterministic: the same spec for the same sandbox gives
 * the same path, and a rebuild is a no-op.
 */
export const buildClosure = (sandbox: NixSandbox, spec: ClosureSpec): Effect.Effect<string> =>
  Effect.gen(function*() {
    const json = yield* Effect.try({
      try: () =>
        JSON.stringify({
          name: spec.name,
          salt: spec.salt ?? "",
          switchScript: switchScript(sandbox, spec),
          components: {
            dbus: componentSpec("dbus", spec.components?.dbus ?? "1"),
            systemd: componentSpec("systemd", spec.components?.systemd ?? "1"),
            kernel: componentSpec("kernel", spec.components?.kernel ?? "1")
          }
        }),
      catch: (e) => new Error(`buildClosure ${spec.name}: ${message(e)}`)
    }).pipe(Effect.orDie)
    const stdout = yield* runOk(
      `buildClosure ${spec.name}`,
      "nix-build",
      ["--no-out-link", CLOSURE_NIX, "--argstr", "spec", json],
      sandbox.env
    )
    const out = stdout.trim().split("\n").at(-1) ?? ""
    const basename = out.slice(STORE_DIR.length + 1)
    if (!out.startsWith(`${STORE_DIR}/`) || !BASENAME.test(basename)) {
      return yield* Effect.dieMessage(
        `buildClosure ${spec.name}: unexpected nix-build output ${JSON.stringify(stdout)}`
      )
    }
    return basename
  })

// ---------------------------------------------------------------------------------------
// The sandbox's system state
// ---------------------------------------------------------------------------------------

/**
 * As if the host had booted `basename`: points the current-system link at it (atomically)
 * and sets the profile to it (`nix-env --set`, a new generation).
 */
export const boot = (sandbox: NixSandbox, basename: string): Effect.Effect<void> =>
  Effect.gen(function*() {
    yield* pointLink(sandbox.currentSystem, storePath(basename))
    yield* runOk(
      `boot ${basename}`,
      "nix-env",
      ["--profile", sandbox.profile, "--set", storePath(basename)],
      sandbox.env
    )
  })

/** The basename the current-system link points at, or undefined if there is no link. */
export const currentClosure = (sandbox: NixSandbox): Effect.Effect<string | undefined> =>
  Effect.map(readLinkIfAny(sandbox.currentSystem), (target) => target === undefined ? undefined : path.basename(target))

/** The basename the profile points at through its generation link, or undefined. */
export const profileClosure = (sandbox: NixSandbox): Effect.Effect<string | undefined> =>
  Effect.gen(function*() {
    const generation = yield* readLinkIfAny(sandbox.profile)
    if (generation === undefined) return undefined
    const target = yield* readLinkIfAny(path.resolve(path.dirname(sandbox.profile), generation))
    return target === undefined ? undefined : path.basename(target)
  })

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

const isValid = (basename: string): Effect.Effect<boolean> =>
  Effect.map(
    runProcess("nix-store", ["--check-validity", storePath(basename)], { env: baseEnv }),
    (result) => result.code === 0
  )

/**
 * Removes a closure from the local store (`nix-store --delete`). Dies, listing its GC
 * roots, if it is still alive (rooted, e.g. by a profile generation, or referenced), and
 * dies if it is not in the store to begin with.
 */
export const deleteFromStore = (basename: string): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (!(yield* isValid(basename))) {
      return yield* Effect.dieMessage(`deleteFromStore: ${storePath(basename)} is not in the local store`)
    }
    const result = yield* runProcess("nix-store", ["--delete", storePath(basename)], { env: baseEnv })
    if (result.code !== 0 || (yield* isValid(basename))) {
      const roots = yield* runProcess("nix-store", ["--query", "--roots", storePath(basename)], { env: baseEnv })
      const referrers = yield* runProcess("nix-store", ["--query", "--referrers", storePath(basename)], {
        env: baseEnv
      })
      return yield* Effect.dieMessage(
        `deleteFromStore: cannot delete ${storePath(basename)}, it is still referenced or rooted\n` +
          `nix-store --delete: ${result.stderr.trim()}\n` +
          `roots:\n${roots.stdout.trim() || "(none)"}\n` +
          `referrers (incl. itself):\n${referrers.stdout.trim()}`
      )
    }
  })

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
    const key = (name: string) =>
      Effect.gen(function*() {
        const secret = path.join(dir, `${name}.sk`)
        const publicKey = path.join(dir, `${name}.pk`)
        yield* runOk("generate a binary cache key", "nix-store", [
          "--generate-binary-cache-key",
          `nixfleet-fixture-${name}-1`,
          secret,
          publicKey
        ])
        const pk = yield* io(`read ${publicKey}`, () => fsp.readFile(publicKey, "utf8"))
        return { secret, pk: pk.trim() }
      })
    const trusted = yield* key("trusted")
    const other = yield* key("other")
    const url = `file://${path.join(dir, "cache")}`
    yield* runOk(
      `copy ${basename} to ${url}`,
      "nix",
      ["copy", "--to", `${url}?secret-key=${trusted.secret}`, storePath(basename)],
      sandbox.env
    )
    yield* deleteFromStore(basename)
    const env = (pk: string) =>
      nixConfig([
        `substituters = ${url}`,
        `trusted-public-keys = ${pk}`,
        "require-sigs = true",
        "experimental-features = nix-command"
      ])
    return { url, trustedEnv: env(trusted.pk), untrustedEnv: env(other.pk) }
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
