/**
 * Tiny stand-ins for NixOS system closures, built with the host's real Nix and no
 * nixpkgs, for `dev` mode and the real-Nix tests: each is a store path shaped like a
 * system closure whose `bin/switch-to-configuration` is a shell script with a chosen
 * behaviour. The script has one sandbox's paths baked in, so it flips that sandbox's
 * current-system link and records markers under it instead of touching the host.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { CLOSURE_EXPRESSION } from "./ClosureExpression.js"
import { nixCommand, NixCommandFailed, STORE_DIR } from "./NixCommand.js"
import type { SandboxLayout } from "./Sandbox.js"

/**
 * What `bin/switch-to-configuration switch` does (after recording its marker).
 *
 * - `Flip`: after `delayMs`, points the current-system link at its own closure
 *   (atomically: a temporary symlink, then `mv -T`), exits 0.
 * - `Exit`: exits `code`, link untouched.
 * - `FlipTo`: points the link at another closure (a store basename), exits 0.
 * - `FlipThenExit`: flips to itself, then exits `code`.
 * - `Hang`: `exec /bin/sleep 3600`, link untouched (the script's pid is the sleep's). It
 *   records its pid as `markers/hang-<basename>.<pid>.pid`, so that whoever gives up on
 *   the switch can stop it.
 * - `FlipThenRun`: flips to itself, then runs each argv in order, as a real switch restarts
 *   units once its activation script has moved the link (`systemctl daemon-reload`, …);
 *   exits with the first failing command's status, else 0.
 *
 * @since 0.1.0
 */
export type SwitchBehaviour =
  | { readonly _tag: "Flip"; readonly delayMs?: number }
  | { readonly _tag: "Exit"; readonly code: number }
  | { readonly _tag: "FlipTo"; readonly closure: string }
  | { readonly _tag: "FlipThenExit"; readonly code: number }
  | { readonly _tag: "Hang" }
  | { readonly _tag: "FlipThenRun"; readonly commands: ReadonlyArray<ReadonlyArray<string>> }

/**
 * The components whose canonical paths the pipeline compares to choose `boot` over `switch`.
 *
 * @since 0.1.0
 */
export type Component = "dbus" | "systemd" | "kernel"

/**
 * A closure to build.
 *
 * @since 0.1.0
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

/**
 * The paths a closure's switch script has baked in, and where its expression is written.
 *
 * @since 0.1.0
 */
export type ClosureSandbox = Pick<SandboxLayout, "currentSystem" | "markersDir" | "nixDir">

/**
 * A {@link ClosureSpec} that cannot be built (an exit code outside 0..255, a negative
 * delay, a `FlipTo` that names no store basename).
 *
 * @since 0.1.0
 */
export class InvalidClosureSpec extends Data.TaggedError("InvalidClosureSpec")<{
  readonly name: string
  readonly reason: string
}> {
  override get message(): string {
    return `closure ${this.name}: ${this.reason}`
  }
}

/**
 * A store path or a link could not be read or written.
 *
 * @since 0.1.0
 */
export class ClosureFileError extends Data.TaggedError("ClosureFileError")<{
  readonly path: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.path}: ${this.detail}`
  }
}

const STORE_NAME = /^[A-Za-z0-9+\-._?=]+$/
const BASENAME = /^[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+$/

/**
 * `${STORE_DIR}/<basename>`.
 *
 * @since 0.1.0
 */
export const storePath = (basename: string) => `${STORE_DIR}/${basename}`

/** Single-quoted for `/bin/sh`. */
const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

const validCode = (code: number) => Number.isInteger(code) && code >= 0 && code <= 255
const badCode = (what: string, code: number) => Either.left(`${what} must be an integer in 0..255, got ${code}`)

/** The behaviour's shell lines, or why it cannot be built. */
const behaviourLines = (behaviour: SwitchBehaviour): Either.Either<ReadonlyArray<string>, string> => {
  switch (behaviour._tag) {
    case "Flip": {
      const delayMs = behaviour.delayMs ?? 0
      if (!Number.isFinite(delayMs) || delayMs < 0) {
        return Either.left(`delayMs must be a non-negative number, got ${delayMs}`)
      }
      const sleep = delayMs > 0 ? [`/bin/sleep ${(delayMs / 1000).toFixed(3)}`] : []
      return Either.right([...sleep, "flip \"$self\"", "exit 0"])
    }
    case "Exit":
      return validCode(behaviour.code) ? Either.right([`exit ${behaviour.code}`]) : badCode("exit code", behaviour.code)
    case "FlipTo":
      return BASENAME.test(behaviour.closure)
        ? Either.right([`flip "$store"/${shellQuote(behaviour.closure)}`, "exit 0"])
        : Either.left(`FlipTo needs a store basename, got ${JSON.stringify(behaviour.closure)}`)
    case "FlipThenExit":
      return validCode(behaviour.code)
        ? Either.right(["flip \"$self\"", `exit ${behaviour.code}`])
        : badCode("exit code", behaviour.code)
    case "Hang":
      // The pid survives the `exec`: it is the sleep's.
      return Either.right(["echo $$ > \"$markers/hang-$base.$$.pid\"", "exec /bin/sleep 3600"])
    case "FlipThenRun":
      return behaviour.commands.some((argv) => argv.length === 0)
        ? Either.left("FlipThenRun needs a non-empty argv for every command")
        : Either.right([
          "flip \"$self\"",
          ...behaviour.commands.map((argv) => `${argv.map(shellQuote).join(" ")} || exit $?`),
          "exit 0"
        ])
  }
}

/**
 * The body of `bin/switch-to-configuration` (the builder prepends `#!/bin/sh` and
 * `self=$out`), or why it cannot be built. Markers: `markers/<action>-<basename>` is
 * touched and `<action> <basename>` appended to `markers/runs.log` (one small `O_APPEND`
 * write, so concurrent runs keep whole lines), before the behaviour runs.
 */
const switchScript = (sandbox: ClosureSandbox, spec: ClosureSpec): Either.Either<string, InvalidClosureSpec> => {
  const bootCode = spec.bootExitCode ?? 0
  const checked = validCode(bootCode) ? behaviourLines(spec.switch) : badCode("bootExitCode", bootCode)
  return Either.mapBoth(checked, {
    onLeft: (reason) => new InvalidClosureSpec({ name: spec.name, reason }),
    onRight: (lines) => scriptText(sandbox, bootCode, lines)
  })
}

const scriptText = (sandbox: ClosureSandbox, bootCode: number, lines: ReadonlyArray<string>): string =>
  [
    "# nixfleet stand-in for NixOS's switch-to-configuration",
    "# (packages/dev/src/NixClosures.ts); the paths below are one sandbox's.",
    `link=${shellQuote(sandbox.currentSystem)}`,
    `markers=${shellQuote(sandbox.markersDir)}`,
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
    `    exit ${bootCode}`,
    "    ;;",
    "  switch)",
    "    mark switch",
    ...lines.map((line) => `    ${line}`),
    "    ;;",
    "  *)",
    "    echo \"switch-to-configuration (nixfleet stand-in): unsupported action '$action'\" >&2",
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

const fileError = (path: string) => (error: { readonly message: string }) =>
  new ClosureFileError({ path, detail: error.message })

/**
 * Builds a closure for this sandbox (its switch script has the sandbox's paths baked in)
 * and returns its store basename. Deterministic: the same spec for the same sandbox gives
 * the same path, and a rebuild is a no-op. The expression is written to
 * `<nixDir>/closure.nix` first.
 *
 * @since 0.1.0
 */
export const buildClosure = Effect.fn("NixClosures.buildClosure")(function*(
  sandbox: ClosureSandbox,
  spec: ClosureSpec
) {
  const fs = yield* FileSystem.FileSystem
  const script = yield* switchScript(sandbox, spec)
  const expression = `${sandbox.nixDir}/closure.nix`
  yield* fs.writeFileString(expression, CLOSURE_EXPRESSION).pipe(Effect.mapError(fileError(expression)))
  const json = JSON.stringify({
    name: spec.name,
    salt: spec.salt ?? "",
    switchScript: script,
    components: {
      dbus: componentSpec("dbus", spec.components?.dbus ?? "1"),
      systemd: componentSpec("systemd", spec.components?.systemd ?? "1"),
      kernel: componentSpec("kernel", spec.components?.kernel ?? "1")
    }
  })
  const argv = ["nix-build", "--no-out-link", expression, "--argstr", "spec", json] as const
  const stdout = yield* nixCommand(`build ${spec.name}`, argv)
  const out = stdout.trim().split("\n").at(-1) ?? ""
  const basename = out.slice(STORE_DIR.length + 1)
  if (!out.startsWith(`${STORE_DIR}/`) || !BASENAME.test(basename)) {
    return yield* new NixCommandFailed({
      what: `build ${spec.name}`,
      argv: "nix-build",
      exitCode: 0,
      detail: `unexpected output ${JSON.stringify(stdout)}`
    })
  }
  return basename
})

let linkCounter = 0

/**
 * Points `link` at `target` atomically (a temporary symlink renamed over it).
 *
 * @since 0.1.0
 */
export const pointLink = Effect.fn("NixClosures.pointLink")(function*(link: string, target: string) {
  const fs = yield* FileSystem.FileSystem
  const temporary = `${link}.tmp.${globalThis.process.pid}.${linkCounter++}`
  yield* fs.symlink(target, temporary).pipe(Effect.mapError(fileError(temporary)))
  yield* fs.rename(temporary, link).pipe(Effect.mapError(fileError(link)))
})

/**
 * As if the host had booted `basename`: points the current-system link at it (atomically)
 * and sets the profile to it (`nix-env --set`, a new generation).
 *
 * @since 0.1.0
 */
export const boot = Effect.fn("NixClosures.boot")(function*(
  sandbox: Pick<SandboxLayout, "currentSystem" | "profile">,
  basename: string
) {
  yield* pointLink(sandbox.currentSystem, storePath(basename))
  yield* nixCommand(
    `boot ${basename}`,
    ["nix-env", "--profile", sandbox.profile, "--set", storePath(basename)],
    "10 minutes"
  )
})

/** The last component of a link's target (`/nix/store/<basename>` gives `<basename>`). */
const targetBasename = (target: string) => target.replace(/\/+$/, "").split("/").pop() ?? ""

/**
 * The basename the current-system link points at (one level, as the agent reads it), or
 * null when there is no link.
 *
 * @since 0.1.0
 */
export const currentClosure = (
  sandbox: Pick<SandboxLayout, "currentSystem">
): Effect.Effect<string | null, never, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readLink(sandbox.currentSystem)).pipe(
    Effect.map(targetBasename),
    Effect.orElseSucceed(() => null)
  )

/**
 * The basename the profile points at through its generation link (profile →
 * `system-<N>-link`, relative to the profile's directory → `/nix/store/<basename>`), or
 * null when there is no generation. A generation entry that is no link is taken as it is.
 *
 * @since 0.1.0
 */
export const profileClosure = (
  sandbox: Pick<SandboxLayout, "profile">
): Effect.Effect<string | null, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const generation = yield* fs.readLink(sandbox.profile)
    const absolute = path.isAbsolute(generation) ? generation : path.join(path.dirname(sandbox.profile), generation)
    const target = yield* fs.readLink(absolute).pipe(Effect.orElseSucceed(() => absolute))
    return targetBasename(target)
  }).pipe(Effect.orElseSucceed(() => null))
