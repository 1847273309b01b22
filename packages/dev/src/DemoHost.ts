/**
 * The host `dev` runs the agent on: the sandbox's system state, with three tiny closures
 * (the one it boots, the good rollout's, the bad rollout's). With a usable Nix they are
 * real store paths, the two rollout targets served from a signed binary cache in the
 * sandbox, and activations switch the sandbox for real; otherwise the agent runs in
 * activation test mode on made-up closure names.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Crypto from "node:crypto"
import { makeBinaryCache } from "./BinaryCache.js"
import { boot, buildClosure, pointLink, storePath } from "./NixClosures.js"
import { nixVersion } from "./NixCommand.js"
import { type Environment, homeIn, nixConfig, OFFLINE, substituteFrom, withEnvironment } from "./NixEnvironment.js"
import { Progress } from "./Progress.js"
import type { SandboxLayout } from "./Sandbox.js"

/**
 * The closures of the demo, as store basenames.
 *
 * @since 0.1.0
 */
export interface DemoClosures {
  /** What the sandbox runs at start (and what the profile's first generation holds). */
  readonly base: string
  /** The good rollout's target. */
  readonly good: string
  /** The bad rollout's target. */
  readonly bad: string
}

/**
 * @since 0.1.0
 */
export type DemoHost =
  | {
    readonly _tag: "Nix"
    /** `nix-store --version`. */
    readonly version: string
    readonly closures: DemoClosures
    /** What the agent's subprocesses (Nix, probes) run with: the cache's key, HOME in the sandbox. */
    readonly environment: Environment
  }
  | {
    readonly _tag: "TestMode"
    /** Why: `--test-mode`, or no usable Nix. */
    readonly reason: "requested" | "no-nix"
    readonly closures: DemoClosures
    readonly environment: Environment
  }

/**
 * The host's name in the demo fleet.
 *
 * @since 0.1.0
 */
export const HOSTNAME = "web-01"

const names = {
  base: `nixos-system-${HOSTNAME}-base`,
  good: `nixos-system-${HOSTNAME}-good`,
  bad: `nixos-system-${HOSTNAME}-bad`
} as const

/** Nix's base-32 alphabet: a made-up hash must still be a valid store basename. */
const NIX_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"

/** A valid, made-up store basename for `name` (deterministic, so runs are comparable). */
const madeUp = (name: string): string => {
  const digest = Crypto.createHash("sha256").update(`nixfleet-dev:${name}`).digest()
  const hash = Array.from(digest.subarray(0, 32), (byte) => NIX_BASE32[byte % 32]).join("")
  return `${hash}-${name}`
}

/**
 * Test mode: the current-system link points at a made-up base closure (nothing is built,
 * nothing is switched; the link never moves).
 */
const testModeHost = Effect.fn("DemoHost.testMode")(function*(
  sandbox: SandboxLayout,
  reason: "requested" | "no-nix"
) {
  const progress = yield* Progress
  yield* progress.line(
    `activation test mode (${reason === "requested" ? "--test-mode" : "no usable Nix on PATH"}): nothing is built ` +
      "or switched, every activation and rollback reports success, closures are made-up names"
  )
  yield* progress.line("nothing is written outside the sandbox")
  const closures: DemoClosures = { base: madeUp(names.base), good: madeUp(names.good), bad: madeUp(names.bad) }
  yield* pointLink(sandbox.currentSystem, storePath(closures.base))
  return { _tag: "TestMode", reason, closures, environment: homeIn(sandbox.home) } satisfies DemoHost
})

/**
 * Real Nix: builds the three closures, boots the base one (link and profile), and moves
 * the two rollout targets into a signed binary cache in the sandbox, so that the agent
 * substitutes them, checking the signature, as a host does.
 */
const nixHost = Effect.fn("DemoHost.nix")(function*(sandbox: SandboxLayout, version: string) {
  const progress = yield* Progress
  yield* progress.line(`real Nix (${version}): real closures, a signed binary cache, real switches in the sandbox`)
  yield* progress.line(
    "outside the sandbox only Nix's store is written: build outputs in /nix/store, and the GC-root links Nix " +
      "keeps for the sandbox's profile and the agent's roots in /nix/var/nix/gcroots/auto"
  )
  yield* progress.timed("building three tiny system closures")
  const build = (name: string) =>
    Effect.tap(
      buildClosure(sandbox, { name, switch: { _tag: "Flip" } }),
      (basename) => progress.timed(`  built ${storePath(basename)}`)
    )
  const closures: DemoClosures = {
    base: yield* build(names.base),
    good: yield* build(names.good),
    bad: yield* build(names.bad)
  }
  yield* boot(sandbox, closures.base)
  yield* progress.timed(`booted the sandbox into ${closures.base} (run/current-system, profiles/system)`)
  const cache = yield* makeBinaryCache(`${sandbox.nixDir}/binary-cache`, [closures.good, closures.bad], "nixfleet-dev")
  yield* progress.timed(`signed binary cache ${cache.url} holds the two rollout targets (deleted from the local store)`)
  return {
    _tag: "Nix",
    version,
    closures,
    environment: { ...nixConfig(substituteFrom(cache)), ...homeIn(sandbox.home) }
  } satisfies DemoHost
})

/**
 * Sets the host up: with Nix unless `testMode` is asked for or Nix is not usable.
 *
 * @since 0.1.0
 */
export const prepareHost = (
  sandbox: SandboxLayout,
  testMode: boolean
) =>
  Effect.gen(function*() {
    if (testMode) return yield* testModeHost(sandbox, "requested")
    const version = yield* nixVersion
    if (Option.isNone(version)) return yield* testModeHost(sandbox, "no-nix")
    return yield* nixHost(sandbox, version.value)
  }).pipe(
    // Setting up runs Nix offline, with HOME in the sandbox.
    Effect.provide(withEnvironment({ ...nixConfig(OFFLINE), ...homeIn(sandbox.home) }))
  )
