/**
 * The system profile: setting it (a new generation), finding what a generation points at,
 * rolling it back. Which closure runs is read from the current-system link
 * (`support/closureLinks`).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { closureBasename, LinkUnreadable } from "../../support/closureLinks.js"
import { display, run } from "../../support/subprocess.js"

/** A `nix-env` call failed; `exitCode` is null when it could not run at all. */
export class NixEnvFailed extends Data.TaggedError("NixEnvFailed")<{
  readonly argv: string
  readonly exitCode: number | null
  readonly detail: string
}> {}

/**
 * The closure a profile points at: profile → `system-<N>-link` (relative to the profile's
 * directory) → `/nix/store/<basename>`. If the generation entry is not a link, its own path
 * is taken.
 */
export const profileTarget = (profile: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const generation = yield* fs.readLink(profile).pipe(
      Effect.mapError((error) => new LinkUnreadable({ path: profile, detail: error.message }))
    )
    const absolute = path.isAbsolute(generation) ? generation : path.join(path.dirname(profile), generation)
    const target = yield* fs.readLink(absolute).pipe(Effect.orElseSucceed(() => absolute))
    return { generation: absolute, storePath: target, closure: closureBasename(target) }
  })

const nixEnv = (argv: readonly [string, ...Array<string>]) =>
  run(argv, { timeout: "10 minutes", children: "nix" }).pipe(
    Effect.mapError((error) =>
      new NixEnvFailed({
        argv: display(argv),
        exitCode: null,
        detail: error._tag === "SpawnFailed" ? error.detail : "timed out"
      })
    ),
    Effect.flatMap((done) =>
      done.exitCode === 0
        ? Effect.void
        : Effect.fail(new NixEnvFailed({ argv: display(argv), exitCode: done.exitCode, detail: done.stderr.trim() }))
    )
  )

/**
 * `nix-env --profile <profile> --set <storePath>`: a new generation pointing at the closure.
 * It comes before any `switch-to-configuration`, which reads the profile to number the
 * boot entries it writes.
 */
export const setProfile = Effect.fn("ActivationPipeline.setProfile")(
  (profile: string, storePath: string) => nixEnv(["nix-env", "--profile", profile, "--set", storePath]),
  Effect.annotateLogs("phase", "nix-env-set")
)

/**
 * `nix-env --profile <profile> --rollback`: the previous generation.
 */
export const rollbackGeneration = Effect.fn("ActivationPipeline.rollbackGeneration")(
  (profile: string) => nixEnv(["nix-env", "--profile", profile, "--rollback"]),
  Effect.annotateLogs("phase", "nix-env-rollback")
)

/**
 * After a successful switch the activation script may have re-pointed the profile; if it
 * no longer holds the closure, set it again so the boot entry does not drift. Never fails:
 * a problem is a warning.
 */
export const selfCorrectProfile = Effect.fn("ActivationPipeline.selfCorrectProfile")(
  function*(profile: string, storePath: string) {
    const current = yield* Effect.either(profileTarget(profile))
    if (current._tag === "Right" && current.right.storePath === storePath) return
    yield* Effect.logWarning("profile mismatch after the switch; setting it again")
    yield* setProfile(profile, storePath)
    const after = yield* profileTarget(profile)
    if (after.storePath !== storePath) {
      yield* Effect.logWarning("profile still mismatched after nix-env --set self-correction")
    }
  },
  Effect.catchAll((error) => Effect.logWarning(`profile self-correction failed: ${error._tag}`)),
  Effect.annotateLogs("phase", "self-correct")
)

/** The profile's generation links (`<name>-<N>-link` beside it), with their numbers. */
const generationLinks = (profile: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const name = path.basename(profile)
    const match = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-(\\d+)-link$`)
    const entries = yield* fs.readDirectory(path.dirname(profile)).pipe(Effect.orElseSucceed(() => []))
    const links = entries
      .map((entry) => ({
        entry: path.join(path.dirname(profile), entry),
        n: Number(match.exec(entry)?.[1] ?? Number.NaN)
      }))
      .filter(({ n }) => Number.isFinite(n))
    return {
      links,
      number: (generation: string) => Number(match.exec(path.basename(generation))?.[1] ?? Number.NaN)
    }
  })

/**
 * The closure of the generation before the profile's current one (what `nix-env
 * --rollback` would select), or null when there is none.
 */
export const previousGeneration = (profile: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const current = yield* profileTarget(profile)
    const { links, number } = yield* generationLinks(profile)
    const currentNumber = number(current.generation)
    const earlier = links.filter(({ n }) => n < currentNumber).sort((a, b) => b.n - a.n)[0]
    if (earlier === undefined) return null
    const target = yield* fs.readLink(earlier.entry).pipe(
      Effect.mapError((error) => new LinkUnreadable({ path: earlier.entry, detail: error.message }))
    )
    return closureBasename(target)
  })

/**
 * The closures of every generation of the profile (an unreadable link is skipped): the
 * systems this host has been switched to, which a rollback may go back to.
 */
export const profileGenerations = (profile: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const { links } = yield* generationLinks(profile)
    const closures = yield* Effect.forEach(links, ({ entry }) =>
      fs.readLink(entry).pipe(Effect.map(closureBasename), Effect.orElseSucceed(() => null)))
    return closures.filter((closure): closure is string =>
      closure !== null
    )
  })
