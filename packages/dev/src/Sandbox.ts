/**
 * A sandbox: one directory standing in for a host's mutable system state, so that the
 * activation pipeline runs against it exactly as against a real host. `dev` mode and the
 * real-Nix test fixtures (`NixFixtures.ts`) share this layout.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

/**
 * Where everything lives under the sandbox's root.
 *
 * @since 0.1.0
 */
export interface SandboxLayout {
  readonly root: string
  /** `run/current-system`: the running closure's link (`--current-system-path`). */
  readonly currentSystem: string
  /** `profiles/system`: the system profile `nix-env --set` writes (`--system-profile`). */
  readonly profile: string
  /** `run/switch-to-configuration.lock` (`--switch-lock-path`); not created. */
  readonly lockPath: string
  /** `state`: the agent's state directory (outbox, caches, GC roots, switch log). */
  readonly stateDir: string
  /** `markers`: what the stand-in closures' switch scripts ran. */
  readonly markersDir: string
  /** `nix`: the expression the closures are built from, the binary cache and its keys. */
  readonly nixDir: string
  /** `home`: HOME (and the XDG directories) of the Nix commands, which write caches there. */
  readonly home: string
  /** `control-plane`: the dev control plane's generated trust file. */
  readonly controlPlaneDir: string
  /** `health-checks.json`: the agent's probe declarations (`--health-checks-file`). */
  readonly healthChecksFile: string
}

/**
 * The sandbox could not be set up.
 *
 * @since 0.1.0
 */
export class SandboxError extends Data.TaggedError("SandboxError")<{
  readonly path: string
  readonly detail: string
}> {
  override get message(): string {
    return `sandbox ${this.path}: ${this.detail}`
  }
}

/**
 * The directory given for the sandbox holds files (a previous run's state would confuse
 * the fresh control plane).
 *
 * @since 0.1.0
 */
export class SandboxNotEmpty extends Data.TaggedError("SandboxNotEmpty")<{ readonly path: string }> {
  override get message(): string {
    return `--sandbox ${this.path} must be empty or absent`
  }
}

/**
 * The layout under `root` (nothing is created).
 *
 * @since 0.1.0
 */
export const layout = (root: string): SandboxLayout => {
  const at = (...segments: ReadonlyArray<string>) => [root, ...segments].join("/")
  return {
    root,
    currentSystem: at("run", "current-system"),
    profile: at("profiles", "system"),
    lockPath: at("run", "switch-to-configuration.lock"),
    stateDir: at("state"),
    markersDir: at("markers"),
    nixDir: at("nix"),
    home: at("home"),
    controlPlaneDir: at("control-plane"),
    healthChecksFile: at("health-checks.json")
  }
}

/**
 * Creates the sandbox's directories under `root` (which must exist) and returns its layout
 * with `root` resolved (`/tmp` may be a link, and the switch scripts compare paths).
 *
 * @since 0.1.0
 */
export const prepare = Effect.fn("Sandbox.prepare")(function*(root: string) {
  const fs = yield* FileSystem.FileSystem
  const failed = (detail: string) => new SandboxError({ path: root, detail })
  const resolved = yield* fs.realPath(root).pipe(Effect.mapError((error) => failed(error.message)))
  const sandbox = layout(resolved)
  const directories = [`${resolved}/run`, `${resolved}/profiles`, sandbox.stateDir, sandbox.markersDir, sandbox.nixDir]
  for (const dir of [...directories, sandbox.home]) {
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(
      Effect.mapError((error) => failed(error.message))
    )
  }
  return sandbox
})

/**
 * A sandbox for `dev`: `dir` when given (created if absent; it must be empty), otherwise a
 * new temporary directory. It is kept afterwards, for inspection.
 *
 * @since 0.1.0
 */
export const create = Effect.fn("Sandbox.create")(function*(dir: string | null) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  if (dir === null) {
    const root = yield* fs.makeTempDirectory({ prefix: "nixfleet-dev-" }).pipe(
      Effect.mapError((error) => new SandboxError({ path: "(temporary directory)", detail: error.message }))
    )
    return yield* prepare(root)
  }
  const root = path.resolve(dir)
  const failed = (detail: string) => new SandboxError({ path: root, detail })
  yield* fs.makeDirectory(root, { recursive: true }).pipe(Effect.mapError((error) => failed(error.message)))
  const entries = yield* fs.readDirectory(root).pipe(Effect.mapError((error) => failed(error.message)))
  if (entries.length > 0) return yield* new SandboxNotEmpty({ path: root })
  return yield* prepare(root)
})
