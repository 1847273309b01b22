/**
 * A signed `file://` binary cache holding closures that are then deleted from the local
 * store, so that realising them has to substitute them, checking their signature, as a
 * host does from its fleet's cache.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { ClosureFileError, storePath } from "./NixClosures.js"
import { nixCommand, runCommand } from "./NixCommand.js"

/**
 * A key pair of `nix-store --generate-binary-cache-key`.
 *
 * @since 0.1.0
 */
export interface SigningKey {
  readonly secretKeyFile: string
  /** `<name>:<base64>`, as `trusted-public-keys` takes it. */
  readonly publicKey: string
}

/**
 * @since 0.1.0
 */
export interface BinaryCache {
  /** `file://<dir>/cache`. */
  readonly url: string
  /** The key every path in the cache is signed with. */
  readonly publicKey: string
}

/**
 * A closure could not be removed from the local store.
 *
 * @since 0.1.0
 */
export class StoreDeleteFailed extends Data.TaggedError("StoreDeleteFailed")<{
  readonly storePath: string
  readonly reason: string
}> {
  override get message(): string {
    return `cannot delete ${this.storePath}: ${this.reason}`
  }
}

/**
 * Generates `<dir>/<name>.sk` and `<dir>/<name>.pk` for the key `<name>-1`.
 *
 * @since 0.1.0
 */
export const generateSigningKey = Effect.fn("BinaryCache.generateSigningKey")(function*(dir: string, name: string) {
  const fs = yield* FileSystem.FileSystem
  const secretKeyFile = `${dir}/${name}.sk`
  const publicKeyFile = `${dir}/${name}.pk`
  yield* nixCommand("generate a binary cache key", [
    "nix-store",
    "--generate-binary-cache-key",
    `${name}-1`,
    secretKeyFile,
    publicKeyFile
  ])
  const publicKey = yield* fs.readFileString(publicKeyFile).pipe(
    Effect.mapError((error) => new ClosureFileError({ path: publicKeyFile, detail: error.message }))
  )
  return { secretKeyFile, publicKey: publicKey.trim() } satisfies SigningKey
})

const isValid = (basename: string) =>
  Effect.map(
    Effect.either(
      runCommand(["nix-store", "--check-validity", storePath(basename)], "1 minute")
    ),
    (result) => result._tag === "Right" && result.right.exitCode === 0
  )

const query = (flag: "--roots" | "--referrers", basename: string) =>
  Effect.map(
    Effect.either(runCommand(["nix-store", "--query", flag, storePath(basename)], "1 minute")),
    (result) => result._tag === "Right" ? result.right.stdout.trim() : ""
  )

/**
 * Removes a closure from the local store (`nix-store --delete`). Fails, listing its GC
 * roots and referrers, when it is still alive (rooted, e.g. by a profile generation, or
 * referenced), and when it is not in the store to begin with.
 *
 * @since 0.1.0
 */
export const deleteFromStore = Effect.fn("BinaryCache.deleteFromStore")(function*(basename: string) {
  const path = storePath(basename)
  if (!(yield* isValid(basename))) {
    return yield* new StoreDeleteFailed({ storePath: path, reason: `${path} is not in the local store` })
  }
  const deleted = yield* Effect.either(runCommand(["nix-store", "--delete", path], "5 minutes"))
  if (deleted._tag === "Right" && deleted.right.exitCode === 0 && !(yield* isValid(basename))) return
  const stderr = deleted._tag === "Right" ? deleted.right.stderr.trim() : deleted.left.message
  return yield* new StoreDeleteFailed({
    storePath: path,
    reason: "it is still referenced or rooted\n" +
      `nix-store --delete: ${stderr}\n` +
      `roots:\n${(yield* query("--roots", basename)) || "(none)"}\n` +
      `referrers (incl. itself):\n${yield* query("--referrers", basename)}`
  })
})

/**
 * Creates `dir` with a signing key `<keyName>-1` and a cache `file://<dir>/cache` holding
 * `closures` (and what they reference), signed with it, then deletes the closures from the
 * local store.
 *
 * @since 0.1.0
 */
export const makeBinaryCache = Effect.fn("BinaryCache.make")(function*(
  dir: string,
  closures: ReadonlyArray<string>,
  keyName: string
) {
  const fs = yield* FileSystem.FileSystem
  yield* fs.makeDirectory(dir, { recursive: true }).pipe(
    Effect.mapError((error) => new ClosureFileError({ path: dir, detail: error.message }))
  )
  const key = yield* generateSigningKey(dir, keyName)
  const url = `file://${dir}/cache`
  if (closures.length > 0) {
    yield* nixCommand(`copy ${closures.join(", ")} to ${url}`, [
      "nix",
      "copy",
      "--to",
      `${url}?secret-key=${key.secretKeyFile}`,
      ...closures.map(storePath)
    ])
  }
  yield* Effect.forEach(closures, deleteFromStore, { discard: true })
  return { url, publicKey: key.publicKey } satisfies BinaryCache
})
