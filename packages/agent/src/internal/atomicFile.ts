import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"

/**
 * Writes a file so that readers see the old content or the new, never a mix: a temporary
 * file in the same directory, fsync, rename over the target, fsync the directory (so the
 * rename survives a power loss).
 *
 * @internal
 */
export const writeFileAtomic = async (file: string, data: string | Uint8Array, mode = 0o600): Promise<void> => {
  const dir = Path.dirname(file)
  await Fs.mkdir(dir, { recursive: true, mode: 0o700 })
  // Unique per call: two writers of the same file must not share a temporary file.
  const temp = Path.join(dir, `.${Path.basename(file)}.${process.pid}.${Crypto.randomBytes(6).toString("hex")}.tmp`)
  const handle = await Fs.open(temp, "w", mode)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await Fs.rename(temp, file)
  } catch (error) {
    await Fs.rm(temp, { force: true })
    throw error
  }
  const directory = await Fs.open(dir, "r")
  try {
    await directory.sync()
  } finally {
    await directory.close()
  }
}
