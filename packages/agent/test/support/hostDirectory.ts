import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { PRIOR } from "./fixtures.js"

/**
 * A host for an embedded agent in a fresh directory (removed with the scope): a
 * `current-system` link to the prior closure, and no state directory yet.
 */
export const hostDirectory = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.realpathSync(Fs.mkdtempSync(Path.join(Os.tmpdir(), prefix)))
      Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
      return dir
    }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )
