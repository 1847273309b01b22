/**
 * Realising the target closure: `nix-store --realise`, which substitutes it from the
 * configured binary caches (verifying their signatures) when it is not in the store yet.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { display, run } from "../../support/subprocess.js"
import { RealiseFailed, SignatureMismatch } from "../ActivationPipeline.js"

/**
 * How Nix says it refused a substitute's signature, across versions. Nix has no distinct
 * exit code for a trust failure, so stderr (lower-cased) is searched for these.
 */
export const SIGNATURE_NEEDLES = [
  "lacks a valid signature",
  "no signature is trusted",
  "is not signed by any of the keys",
  "no signatures matched",
  "signature mismatch",
  "untrusted signature"
] as const

export const looksLikeSignatureError = (stderr: string): boolean => {
  const lower = stderr.toLowerCase()
  return SIGNATURE_NEEDLES.some((needle) => lower.includes(needle))
}

/** Bytes of stderr kept in a signature failure (as upstream). */
const SIGNATURE_TAIL_BYTES = 500

/**
 * Realises `storePath` with an indirect GC root at `gcRoot`, so that nothing can collect
 * it before the profile holds it, then checks that the root points at exactly the
 * requested path. A signature refusal is `SignatureMismatch` (class -2); anything else,
 * including a timeout, is `RealiseFailed` (class -1), with Nix's stderr in the reason.
 */
export const realise = Effect.fn("ActivationPipeline.realise")(
  function*(args: {
    readonly storePath: string
    readonly closure: string
    readonly gcRoot: string
    readonly timeout: Duration.Duration
  }) {
    const fs = yield* FileSystem.FileSystem
    const argv = ["nix-store", "--realise", args.storePath, "--add-root", args.gcRoot, "--indirect"] as const
    const done = yield* run(argv, { timeout: args.timeout, children: "nix" }).pipe(
      Effect.catchTags({
        SpawnFailed: (error) =>
          Effect.fail(new RealiseFailed({ phase: "realise", reason: `spawn ${display(argv)}: ${error.detail}` })),
        TimedOut: () =>
          Effect.fail(
            new RealiseFailed({
              phase: "realise",
              reason: `nix-store --realise ${args.storePath} timed out after ${Duration.format(args.timeout)}`
            })
          )
      })
    )
    if (done.exitCode !== 0) {
      if (looksLikeSignatureError(done.stderr)) {
        const tail = done.stderrBytes.slice(Math.max(0, done.stderrBytes.length - SIGNATURE_TAIL_BYTES))
        return yield* new SignatureMismatch({
          closure: args.closure,
          stderrTail: new TextDecoder("utf-8", { fatal: false }).decode(tail).trim()
        })
      }
      return yield* new RealiseFailed({
        phase: "realise",
        reason: `nix-store --realise ${args.storePath} exited Some(${done.exitCode}): ${done.stderr.trim()}`
      })
    }
    const firstLine = done.stdout.split("\n")[0]?.trim() ?? ""
    if (firstLine === "") {
      return yield* new RealiseFailed({ phase: "realise", reason: "nix-store --realise produced no output" })
    }
    // With --add-root Nix prints the root; the root must lead to exactly the requested path
    // (catches symlink and redirect surprises).
    const realised = firstLine === args.gcRoot
      ? yield* fs.readLink(args.gcRoot).pipe(Effect.orElseSucceed(() => firstLine))
      : firstLine
    if (realised !== args.storePath) {
      return yield* new RealiseFailed({
        phase: "realise",
        reason: `realised path ${realised} does not match requested ${args.storePath}`
      })
    }
  },
  Effect.annotateLogs("phase", "realise")
)
