/**
 * Checks that a directory the agent writes in cannot be steered by another local user:
 * the directory and every parent up to `/` belong to the agent's uid or root and are not
 * group- or world-writable. Whoever can write a directory on that path can replace what
 * lies below it (a symlink to `/etc/shadow` where root writes a log, a fake status file).
 *
 * A parent that is writable by others but has the sticky bit (`/tmp`, mode 1777) is
 * accepted: there a user can neither rename nor remove an entry they do not own, and the
 * entry below it is itself checked (owner and mode), so the path stays pinned. The
 * directory itself must never be sticky-and-shared.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { describeError } from "./describeError.js"

/**
 * Why a directory is unsafe: the path at fault (the directory or one of its parents), its
 * owner and mode, and the command that fixes it.
 *
 * @internal
 */
export interface UnsafePath {
  /** The directory that was checked. */
  readonly directory: string
  /** The path at fault: the directory itself or one of its parents. */
  readonly path: string
  readonly uid: number | null
  readonly mode: number | null
  readonly problem: string
  readonly fix: string
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, "0")

/**
 * One line: what is wrong, where, and how to fix it.
 *
 * @internal
 */
export const describeUnsafe = (unsafe: UnsafePath): string => {
  const where = unsafe.path === unsafe.directory ? unsafe.path : `${unsafe.directory}: its parent ${unsafe.path}`
  const owner = unsafe.uid === null || unsafe.mode === null
    ? ""
    : ` (owner uid ${unsafe.uid}, mode ${octal(unsafe.mode)})`
  return `${where}${owner} ${unsafe.problem}; fix: ${unsafe.fix}`
}

/** Every directory from `path` up to `/`, `path` first. */
const chain = (path: string): Array<string> => {
  const out: Array<string> = []
  let current = Path.resolve(path)
  for (;;) {
    out.push(current)
    const parent = Path.dirname(current)
    if (parent === current) return out
    current = parent
  }
}

/** The agent's uid (the effective one: that is whose files it writes). */
const agentUid = (): number => process.geteuid?.() ?? 0

const checkOne = async (
  directory: string,
  path: string,
  self: boolean,
  uid: number
): Promise<UnsafePath | null> => {
  const stat = await Fs.lstat(path)
  // A symlink's own mode means nothing; its parent (checked next) decides who may replace
  // it, and the directory it leads to is checked through the resolved path.
  if (stat.isSymbolicLink()) return null
  const base = { directory, path, uid: stat.uid, mode: stat.mode }
  if (!stat.isDirectory()) {
    return { ...base, problem: "is not a directory", fix: `remove ${path} or choose another directory` }
  }
  if (stat.uid !== uid && stat.uid !== 0) {
    return {
      ...base,
      problem: `belongs to another user (the agent runs as uid ${uid}): they could replace the agent's files`,
      fix: `chown ${uid === 0 ? "root" : uid} ${path} && chmod go-w ${path}`
    }
  }
  const shared = (stat.mode & 0o022) !== 0
  const sticky = (stat.mode & 0o1000) !== 0
  if (shared && (self || !sticky)) {
    return {
      ...base,
      problem: "is writable by group or others: they could replace the agent's files",
      fix: `chmod go-w ${path}`
    }
  }
  return null
}

/**
 * The first unsafe directory on `directory`'s path (checked as given, then as resolved
 * through symlinks), or `null` when it is safe. A directory that does not exist fails
 * with the system's error.
 *
 * @internal
 */
export const findUnsafe = (directory: string): Effect.Effect<UnsafePath | null, string> =>
  Effect.tryPromise({
    try: async () => {
      const given = Path.resolve(directory)
      const resolved = await Fs.realpath(given)
      const uid = agentUid()
      const seen = new Set<string>()
      for (const [top, paths] of [[given, chain(given)], [resolved, chain(resolved)]] as const) {
        for (const path of paths) {
          if (seen.has(path)) continue
          seen.add(path)
          const found = await checkOne(directory, path, path === top, uid)
          if (found !== null) return found
        }
      }
      return null
    },
    catch: (error) => `cannot check ${directory}: ${describeError(error)}`
  })

/**
 * Creates the state directory 0700 when it is missing (its missing parents 0755, root's
 * usual), then checks it: the agent refuses a state directory another user could steer.
 *
 * @internal
 */
export const prepareStateDir = (directory: string): Effect.Effect<void, string> =>
  Effect.gen(function*() {
    yield* Effect.tryPromise({
      try: async () => {
        const missing = await Fs.lstat(directory).then(() => false, () => true)
        if (!missing) return
        await Fs.mkdir(Path.dirname(Path.resolve(directory)), { recursive: true, mode: 0o755 })
        // Another agent starting at the same moment may have just made it: the checks below
        // judge whatever is there, and the state directory's lock decides which agent runs.
        const made = await Fs.mkdir(directory, { mode: 0o700 }).then(
          () => true,
          (error: NodeJS.ErrnoException) => {
            if (error.code === "EEXIST") return false
            throw error
          }
        )
        // The umask may have narrowed 0700 further, never widened it; set it exactly.
        if (made) await Fs.chmod(directory, 0o700)
      },
      catch: (error) => `cannot create the state directory ${directory}: ${describeError(error)}`
    })
    const unsafe = yield* findUnsafe(directory)
    if (unsafe !== null) return yield* Effect.fail(`unsafe state directory ${describeUnsafe(unsafe)}`)
  })
