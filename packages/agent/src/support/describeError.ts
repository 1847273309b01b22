/**
 * The one describer of storage failures: the messages of an error and its causes, with the
 * system error code (SQLite's translated), for every log line and exit message that reports
 * a failed write.
 *
 * @since 0.1.0
 */
/**
 * SQLite reports a failed system call by its own code; the errno it stands for, so that a
 * full disk reads ENOSPC and a read-only one EROFS whichever layer met it.
 */
const sqliteErrnos: ReadonlyArray<readonly [prefix: string, errno: string, meaning: string]> = [
  ["SQLITE_FULL", "ENOSPC", "no space left on device"],
  ["SQLITE_READONLY", "EROFS", "read-only: the file system or the file refuses writes"],
  ["SQLITE_IOERR", "EIO", "input/output error"],
  ["SQLITE_PERM", "EACCES", "permission denied"]
]

const codeOf = (value: unknown): string | null =>
  typeof value === "object" && value !== null && "code" in value && typeof value.code === "string" ? value.code : null

const sqliteErrno = (code: string) => sqliteErrnos.find(([prefix]) => code.startsWith(prefix))

/**
 * The system error code (ENOSPC, EROFS, EACCES, EIO, …) of an error or of one of its
 * causes, SQLite's codes translated; null when none says.
 *
 * @since 0.1.0
 */
export const errnoOf = (error: unknown): string | null => {
  let current: unknown = error
  for (let depth = 0; depth < 4 && typeof current === "object" && current !== null; depth++) {
    const code = codeOf(current)
    if (code !== null && /^E[A-Z0-9]+$/.test(code)) return code
    const mapped = code === null ? undefined : sqliteErrno(code)
    if (mapped !== undefined) return mapped[1]
    current = "cause" in current ? current.cause : undefined
  }
  return null
}

/**
 * The messages of an error and of its causes, outermost first, with their error codes:
 * `SqlError` says "Failed to execute statement" and keeps the useful part ("database or
 * disk is full", SQLITE_FULL) in `cause`; Effect's `UnknownException` only wraps its cause.
 *
 * @since 0.1.0
 */
export const describeError = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    if (typeof current === "object" && "message" in current && typeof current.message === "string") {
      const wrapper = "_tag" in current && current._tag === "UnknownException"
      const code = codeOf(current)
      const mapped = code === null ? undefined : sqliteErrno(code)
      const message = current.message.trim()
      const text = code === null || message.includes(code)
        ? message
        : mapped === undefined
        ? `${message} (${code})`
        : `${message} (${code}: ${mapped[1]}, ${mapped[2]})`
      if (!wrapper && text !== "" && !parts.some((part) => part.includes(message))) parts.push(text)
      current = "cause" in current ? current.cause : undefined
    } else {
      parts.push(String(current))
      current = undefined
    }
  }
  return parts.length === 0 ? "unknown error" : parts.join(": ")
}
