/**
 * The NixOS and nix-darwin modules evaluated by nixpkgs' real module system
 * (`nix/module-eval.nix` with the vendored `lib`), through `nix-instantiate --eval --strict
 * --json`. Settings reach Nix as JSON through the environment, so no Nix quoting is
 * involved. Used by the tests and the benchmarks.
 */
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"

export const REPO = Path.resolve(import.meta.dirname, "../..")

/** nixpkgs' `lib`, vendored beside the repository (`shared/` is a sibling of the checkout). */
export const NIXPKGS_LIB = Path.resolve(REPO, "../shared/vendor/nixpkgs-lib/lib")

export type Platform = "nixos" | "darwin"

export type Settings = Readonly<Record<string, unknown>>

export interface EvalOptions {
  /** networking.hostName; null leaves it unset. Default web-01. */
  readonly hostName?: string | null
  /** outPath of stand-in packages by name (`nixfleet-agent-0.1.0`, `nix`, `systemd`, …). */
  readonly paths?: Readonly<Record<string, string>>
  /** NixOS's systemd.globalEnvironment; default: its locale archive and zoneinfo. */
  readonly globalEnvironment?: Readonly<Record<string, string>>
  /** More modules of the host: each is `import file args` (an absolute path, JSON arguments). */
  readonly modules?: ReadonlyArray<{ readonly file: string; readonly args: unknown }>
}

export interface NixosResult {
  readonly service: {
    readonly description: string
    readonly wantedBy: ReadonlyArray<string>
    readonly after: ReadonlyArray<string>
    readonly wants: ReadonlyArray<string>
    readonly restartIfChanged: boolean
    readonly stopIfChanged: boolean
    readonly restartTriggers: ReadonlyArray<string>
    readonly startLimitIntervalSec: number | null
    readonly environment: Readonly<Record<string, string>>
    readonly serviceConfig: Readonly<Record<string, unknown>>
    readonly path: ReadonlyArray<string>
  } | null
  readonly unit: string | null
  readonly tmpfiles: ReadonlyArray<string>
  readonly etc: Readonly<Record<string, string | null>>
  readonly systemPackages: ReadonlyArray<string>
  /** `nixfleet.persistence.directories`; null where the host does not declare it. */
  readonly persistence: ReadonlyArray<unknown> | null
}

export interface DarwinResult {
  readonly daemon: Readonly<Record<string, unknown>> | null
  readonly preActivation: string | null
  readonly etc: Readonly<Record<string, string | null>>
  readonly systemPackages: ReadonlyArray<string>
  readonly persistence: ReadonlyArray<unknown> | null
}

export type Evaluated =
  | { readonly _tag: "Evaluated"; readonly value: unknown }
  | { readonly _tag: "Refused"; readonly message: string }

const expression = (platform: Platform) =>
  `let input = builtins.fromJSON (builtins.getEnv "NIXFLEET_MODULE_EVAL"); in ` +
  `import ./nix/module-eval.nix ({ lib = import ${JSON.stringify(NIXPKGS_LIB)}; platform = "${platform}"; ` +
  `settings = input.settings; extraModules = map (m: import (/. + m.file) m.args) (input.modules or [ ]); } ` +
  `// builtins.removeAttrs input [ "settings" "modules" ])`

/** The evaluation of `settings` on `platform`, or the module system's message refusing it. */
export const evalModule = (platform: Platform, settings: Settings, options: EvalOptions = {}) =>
  Effect.map(
    runProcess("nix-instantiate", ["--eval", "--strict", "--json", "-E", expression(platform)], {
      cwd: REPO,
      env: { NIXFLEET_MODULE_EVAL: JSON.stringify({ settings, ...options }) }
    }),
    (done): Evaluated =>
      done.code === 0
        ? { _tag: "Evaluated", value: JSON.parse(done.stdout) }
        : { _tag: "Refused", message: done.stderr.trim() }
  )

const evaluated = <A>(platform: Platform, settings: Settings, options?: EvalOptions) =>
  Effect.flatMap(
    evalModule(platform, settings, options),
    (result) =>
      result._tag === "Evaluated"
        ? Effect.succeed(result.value as A)
        : Effect.dieMessage(`the ${platform} module refused ${JSON.stringify(settings)}:\n${result.message}`)
  )

/** The NixOS module's output for `settings`; dies with the module system's message if refused. */
export const evalNixos = (settings: Settings, options?: EvalOptions) =>
  evaluated<NixosResult>("nixos", settings, options)

/** The nix-darwin module's output for `settings`; dies with the module system's message if refused. */
export const evalDarwin = (settings: Settings, options?: EvalOptions) =>
  evaluated<DarwinResult>("darwin", settings, options)

/** The module system's message refusing `settings`; dies if it evaluates. */
export const refusal = (platform: Platform, settings: Settings, options?: EvalOptions) =>
  Effect.flatMap(
    evalModule(platform, settings, options),
    (result) =>
      result._tag === "Refused"
        ? Effect.succeed(result.message)
        : Effect.dieMessage(`the ${platform} module accepted ${JSON.stringify(settings)}`)
  )

const isExecutable = (file: string) => {
  try {
    Fs.accessSync(file, Fs.constants.X_OK)
    return Fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** `tool` on PATH. */
export const onPath = (tool: string) =>
  (process.env["PATH"] ?? "").split(Path.delimiter).some((dir) => dir !== "" && isExecutable(Path.join(dir, tool)))

/** What is missing to evaluate the modules, or undefined. */
export const moduleEvalMissing = (): string | undefined =>
  !onPath("nix-instantiate")
    ? "nix-instantiate not found on PATH"
    : !Fs.existsSync(Path.join(NIXPKGS_LIB, "default.nix"))
    ? `nixpkgs lib not found at ${NIXPKGS_LIB} (shared/vendor/nixpkgs-lib beside the checkout)`
    : undefined
