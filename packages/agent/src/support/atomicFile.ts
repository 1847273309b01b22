import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { describeError, errnoOf } from "./describeError.js"

/**
 * A file of the agent could not be written: the path, the system's error code (ENOSPC,
 * EROFS, EACCES, EIO, …) and what it says.
 *
 * @internal
 */
export class FileWriteError extends Data.TaggedError("FileWriteError")<{
  readonly path: string
  readonly code: string | null
  readonly detail: string
}> {
  override get message(): string {
    return `cannot write ${this.path}: ${this.detail}`
  }
}

const fileWriteError = (path: string, error: unknown): FileWriteError =>
  error instanceof FileWriteError
    ? error
    : new FileWriteError({ path, code: errnoOf(error), detail: describeError(error) })

/**
 * Flags that create a file only where nothing is, never through a symlink: `O_EXCL` fails
 * on any existing entry (a symlink included), `O_NOFOLLOW` says so explicitly.
 *
 * @internal
 */
export const CREATE_NEW = Fs.constants.O_WRONLY | Fs.constants.O_CREAT | Fs.constants.O_EXCL |
  Fs.constants.O_NOFOLLOW

/**
 * Flags that append to a file, creating it when missing, and refuse (ELOOP) a symlink
 * planted at its path rather than write where it points.
 *
 * @internal
 */
export const APPEND_NO_FOLLOW = Fs.constants.O_WRONLY | Fs.constants.O_APPEND | Fs.constants.O_CREAT |
  Fs.constants.O_NOFOLLOW

/**
 * The error for a symlink found where the agent writes a file of its own.
 *
 * @internal
 */
export const symlinkRefused = (path: string): FileWriteError =>
  new FileWriteError({
    path,
    code: "ELOOP",
    detail: "it is a symbolic link; the agent does not write through or over one (remove it)"
  })

/** Refuses a symlink at `path` (a missing path is fine: it will be created). */
const refuseSymlink = async (path: string): Promise<void> => {
  const stat = await Fs.lstat(path).catch(() => null)
  if (stat?.isSymbolicLink() === true) throw symlinkRefused(path)
}

/**
 * Writes a file so that readers see the old content or the new, never a mix: a temporary
 * file in the same directory, fsync, rename over the target, fsync the directory (so the
 * rename survives a power loss). The directory is created 0700 and the file gets `mode`
 * whatever the umask. When any step fails the temporary file is removed and the error
 * (a `FileWriteError`) names the target and the system's error code.
 *
 * A symlink at the target is refused, never followed nor replaced: it was not put there
 * by the agent. The temporary file is created exclusively, without following symlinks.
 *
 * @internal
 */
export const writeFileAtomic = async (file: string, data: string | Uint8Array, mode = 0o600): Promise<void> => {
  const dir = Path.dirname(file)
  // Unique per call: two writers of the same file must not share a temporary file.
  const temp = Path.join(dir, `.${Path.basename(file)}.${process.pid}.${Crypto.randomBytes(6).toString("hex")}.tmp`)
  let created = false
  try {
    await Fs.mkdir(dir, { recursive: true, mode: 0o700 })
    await refuseSymlink(file)
    const handle = await Fs.open(temp, CREATE_NEW, mode)
    created = true
    try {
      // The umask may have narrowed or (0o644 asked with umask 0) left the mode: set it.
      await handle.chmod(mode)
      await handle.writeFile(data)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await Fs.rename(temp, file)
  } catch (error) {
    // Only a file this call created is removed: whatever else sits at the name is not ours.
    if (created) await Fs.rm(temp, { force: true }).catch(() => undefined)
    throw fileWriteError(file, error)
  }
  try {
    const directory = await Fs.open(dir, Fs.constants.O_RDONLY | Fs.constants.O_DIRECTORY)
    try {
      await directory.sync()
    } finally {
      await directory.close()
    }
  } catch (error) {
    throw fileWriteError(dir, error)
  }
}

/**
 * `writeFileAtomic` as an effect, failing with a `FileWriteError`. Uninterruptible: an
 * abandoned promise would still rename its (older) file over a later one.
 *
 * @internal
 */
export const writeFileAtomicEffect = (
  file: string,
  data: string | Uint8Array,
  mode = 0o600
): Effect.Effect<void, FileWriteError> =>
  Effect.uninterruptible(Effect.tryPromise({
    try: () => writeFileAtomic(file, data, mode),
    catch: (error) => fileWriteError(file, error)
  }))
