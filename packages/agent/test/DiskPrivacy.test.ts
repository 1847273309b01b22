/**
 * Files on disk: private whatever the umask (0600 files, 0700 directories), failed atomic
 * writes leave no temporary file, and every write error names its path and the system's
 * error code. The full and read-only file systems themselves are in StorageFaults.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { FileWriteError, writeFileAtomicEffect } from "../src/support/atomicFile.js"
import { describeError, errnoOf } from "../src/support/describeError.js"
import { entry, openOutbox, ROLLOUT_A, tempStateDir } from "./fixtures/outbox/support.js"

const modeOf = (file: string) => (Fs.statSync(file).mode & 0o777).toString(8)

/** Runs `self` under `mask`, restoring the process's umask after. */
const withUmask = <A, E, R>(mask: number, self: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => process.umask(mask)),
    () => self,
    (previous) => Effect.sync(() => process.umask(previous))
  )

describe("files on disk", () => {
  it.scoped("the outbox database and its -wal and -shm are 0600 under umask 022", () =>
    withUmask(
      0o022,
      Effect.gen(function*() {
        const dir = yield* tempStateDir
        const { outbox } = yield* openOutbox(dir)
        expect(yield* outbox.enqueue(entry(ROLLOUT_A, 1))).toBe(true)
        const files = Fs.readdirSync(dir).filter((name) => name.startsWith("outbox.sqlite"))
        expect(files.sort()).toStrictEqual(["outbox.sqlite", "outbox.sqlite-shm", "outbox.sqlite-wal"])
        for (const name of files) expect(`${name} ${modeOf(Path.join(dir, name))}`).toBe(`${name} 600`)
      })
    ))

  it.scoped("an existing 0644 outbox is made 0600 when it is opened", () =>
    Effect.gen(function*() {
      const dir = yield* tempStateDir
      yield* Effect.scoped(Effect.flatMap(openOutbox(dir), ({ outbox }) => outbox.enqueue(entry(ROLLOUT_A, 1))))
      Fs.chmodSync(Path.join(dir, "outbox.sqlite"), 0o644)
      yield* openOutbox(dir)
      expect(modeOf(Path.join(dir, "outbox.sqlite"))).toBe("600")
    }))

  it.scoped("an atomic write makes its file 0600 and its directories 0700 under umask 0", () =>
    withUmask(
      0o000,
      Effect.gen(function*() {
        const dir = yield* tempStateDir
        const file = Path.join(dir, "nested", "status.json")
        yield* writeFileAtomicEffect(file, "{}\n")
        expect(modeOf(file)).toBe("600")
        expect(modeOf(Path.dirname(file))).toBe("700")
      })
    ))

  it.scoped("a failed atomic write names the path and the errno and leaves no temporary file", () =>
    Effect.gen(function*() {
      const dir = yield* tempStateDir
      // A directory where the file should go: the rename over it fails.
      const target = Path.join(dir, "status.json")
      Fs.mkdirSync(target)
      Fs.writeFileSync(Path.join(target, "keep"), "")
      const error = yield* Effect.flip(writeFileAtomicEffect(target, "{}\n"))
      expect(error).toBeInstanceOf(FileWriteError)
      expect(error.path).toBe(target)
      expect(["EISDIR", "ENOTEMPTY", "EEXIST"]).toContain(error.code)
      expect(error.message).toContain(target)
      expect(error.message).toContain(error.code!)
      expect(Fs.readdirSync(dir)).toStrictEqual(["status.json"])

      // A file where its directory should be: nothing can even be opened.
      const blocked = Path.join(dir, "plain")
      Fs.writeFileSync(blocked, "")
      const notDir = yield* Effect.flip(writeFileAtomicEffect(Path.join(blocked, "x.json"), "{}"))
      expect(notDir.code).toMatch(/^E/)
      expect(notDir.message).toContain(Path.join(blocked, "x.json"))
      expect(Fs.readdirSync(dir).sort()).toStrictEqual(["plain", "status.json"])
    }))

  it("SQLite's codes read as the errno they stand for; Effect's UnknownException is seen through", () => {
    const full = {
      message: "Failed to execute statement",
      cause: { code: "SQLITE_FULL", message: "database or disk is full" }
    }
    expect(describeError(full)).toBe(
      "Failed to execute statement: database or disk is full (SQLITE_FULL: ENOSPC, no space left on device)"
    )
    expect(errnoOf(full)).toBe("ENOSPC")
    const readOnly = { code: "SQLITE_READONLY_DBMOVED", message: "attempt to write a readonly database" }
    expect(errnoOf(readOnly)).toBe("EROFS")
    expect(describeError(readOnly)).toContain("read-only")
    const wrapped = {
      _tag: "UnknownException",
      message: "An unknown error occurred in Effect.tryPromise",
      cause: Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" })
    }
    expect(describeError(wrapped)).toBe("EIO: i/o error, write")
    expect(errnoOf(wrapped)).toBe("EIO")
  })
})
