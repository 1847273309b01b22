/**
 * The dev tools' command runner, against `/bin/sh`: the output and a non-zero exit are a
 * result, stdin is empty, a command past its timeout is stopped with what it started, and
 * one that cannot start fails saying which.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { nixCommand, runCommand } from "../src/NixCommand.js"

const TIMEOUT = 30_000

/** Whether `pid` is a process that still runs (a zombie has ended). */
const running = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(Fs.readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return false
  }
}

const tempDirectory = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-dev-command-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("runCommand", () => {
  it.live("stdout, stderr and a non-zero exit are a result", () =>
    Effect.gen(function*() {
      const done = yield* runCommand(["/bin/sh", "-c", "printf out; printf err >&2; exit 3"], "10 seconds")
      expect(done).toStrictEqual({ exitCode: 3, stdout: "out", stderr: "err" })
    }).pipe(Effect.provide(NodeContext.layer)), TIMEOUT)

  it.live("stdin is empty: a command that reads it gets end-of-file", () =>
    Effect.gen(function*() {
      const done = yield* runCommand(["/bin/sh", "-c", "cat; echo read"], "10 seconds")
      expect(done).toStrictEqual({ exitCode: 0, stdout: "read\n", stderr: "" })
    }).pipe(Effect.provide(NodeContext.layer)), TIMEOUT)

  it.scopedLive(
    "a command past its timeout fails, and it and what it started are stopped",
    () =>
      Effect.gen(function*() {
        const pids = Path.join(yield* tempDirectory, "pids")
        const script = `echo $$ > ${pids}; /bin/sleep 60 & echo $! >> ${pids}; wait`
        const started = Date.now()
        const error = yield* Effect.flip(runCommand(["/bin/sh", "-c", script], "2 seconds"))
        expect(error._tag).toBe("CommandUnfinished")
        expect(error.message).toBe(`/bin/sh -c ${script}: timed out after 2s`)
        expect(Date.now() - started).toBeLessThan(10_000)
        const [shell, sleep] = Fs.readFileSync(pids, "utf8").trim().split("\n").map(Number)
        expect(shell).toBeGreaterThan(1)
        expect(sleep).toBeGreaterThan(1)
        // The sleep, orphaned by the shell, is reaped by whoever adopts it: give that a moment.
        const deadline = Date.now() + 5_000
        while ((running(shell ?? 0) || running(sleep ?? 0)) && Date.now() < deadline) yield* Effect.sleep("50 millis")
        expect([running(shell ?? 0), running(sleep ?? 0)]).toStrictEqual([false, false])
      }).pipe(Effect.provide(NodeContext.layer)),
    TIMEOUT
  )

  it.live("a command that cannot start fails, naming it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(runCommand(["/nonexistent/nix-store", "--version"], "10 seconds"))
      expect(error._tag).toBe("CommandUnfinished")
      expect(error.message).toMatch(/^\/nonexistent\/nix-store --version: .*ENOENT/)
    }).pipe(Effect.provide(NodeContext.layer)), TIMEOUT)
})

describe("nixCommand", () => {
  it.live("returns stdout; a non-zero exit fails with its status and stderr", () =>
    Effect.gen(function*() {
      expect(yield* nixCommand("say hello", ["/bin/sh", "-c", "echo hello"])).toBe("hello\n")
      const failed = yield* Effect.flip(nixCommand("fail", ["/bin/sh", "-c", "echo no >&2; exit 4"]))
      expect(failed).toMatchObject({ _tag: "NixCommandFailed", exitCode: 4, detail: "no" })
      expect(failed.message).toBe("fail failed (exit 4): /bin/sh -c echo no >&2; exit 4\nno")
      const unstartable = yield* Effect.flip(nixCommand("run nothing", ["/nonexistent/nix-build"]))
      expect(unstartable).toMatchObject({ _tag: "NixCommandFailed", exitCode: null })
      expect(unstartable.message).toMatch(/^run nothing failed \(could not run\): \/nonexistent\/nix-build\n/)
    }).pipe(Effect.provide(NodeContext.layer)), TIMEOUT)
})
