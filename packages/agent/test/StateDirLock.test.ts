/**
 * One agent per state directory (support/stateDirLock.ts): a second holder is refused at
 * once, in this process and from another one; the lock goes with its scope, and with its
 * process when that process is killed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { lockStateDir } from "../src/support/stateDirLock.js"

const tempDir = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-lock-"))

/** A process holding the lock (through better-sqlite3, as the agent does) until killed. */
const holder = (dir: string) =>
  Effect.acquireRelease(
    Effect.async<ChildProcess.ChildProcess>((resume) => {
      const child = ChildProcess.spawn(process.execPath, [
        "--input-type=module",
        "-e",
        "import Database from 'better-sqlite3'; const db = new Database(process.argv[1], { timeout: 0 });" +
        " db.pragma('locking_mode = EXCLUSIVE'); db.exec('BEGIN EXCLUSIVE'); console.log('held'); setInterval(() => {}, 1000)",
        Path.join(dir, "agent.lock")
      ], { cwd: import.meta.dirname, stdio: ["ignore", "pipe", "inherit"] })
      child.stdout.once("data", () => resume(Effect.succeed(child)))
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

describe("state directory lock", () => {
  it.scoped("a second holder in the same process is refused at once, and the lock goes with its scope", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const first = yield* Scope.make()
      yield* Scope.extend(lockStateDir(dir), first)
      const second = yield* Effect.either(lockStateDir(dir))
      expect(second).toMatchObject({
        _tag: "Left",
        left: expect.stringContaining(`another agent is running on this state directory (${dir}`)
      })
      yield* Scope.close(first, Exit.void)
      expect(yield* Effect.either(lockStateDir(dir))).toMatchObject({ _tag: "Right" })
    }))

  it.scoped(
    "another process's lock is refused, and released when that process is killed",
    () =>
      Effect.gen(function*() {
        const dir = tempDir()
        const scope = yield* Scope.make()
        const child = yield* Scope.extend(holder(dir), scope)
        expect(yield* Effect.either(lockStateDir(dir))).toMatchObject({ _tag: "Left" })
        const exited = Effect.async<void>((resume) => {
          child.once("exit", () => resume(Effect.void))
        })
        yield* Scope.close(scope, Exit.void)
        yield* exited
        expect(yield* Effect.either(lockStateDir(dir))).toMatchObject({ _tag: "Right" })
      }),
    20_000
  )
})
