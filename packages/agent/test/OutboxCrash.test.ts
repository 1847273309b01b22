/**
 * Crash safety: a child process enqueues in a loop and is killed with SIGKILL at random
 * moments (during start-up, migrations, or between commits), round after round on the same
 * state directory. Every `(rolloutId, seq)` it reported as enqueued must be stored exactly
 * once, in the order it was reported, and the database must pass `integrity_check`.
 */
import { NodeContext } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { checkFile } from "../src/outbox/sqlite.js"
import { openOutbox, tempStateDir } from "./fixtures/outbox/support.js"

const ROOT = fileURLToPath(new URL("../../..", import.meta.url))
const TSX = `${ROOT}node_modules/.bin/tsx`
const CHILD = fileURLToPath(new URL("fixtures/outbox/enqueueForever.ts", import.meta.url))
const ROUNDS = 4

interface Child {
  readonly proc: ChildProcessWithoutNullStreams
  stdout: string
  stderr: string
  exited: boolean
  readonly closed: Promise<NodeJS.Signals | null>
}

/**
 * SIGKILL for the child's process group: the `tsx` launcher runs the script in a node
 * process of its own, which a signal to the launcher alone would leave running.
 */
const kill = (child: Child) => {
  if (child.exited || child.proc.pid === undefined) return
  try {
    process.kill(-child.proc.pid, "SIGKILL")
  } catch {
    // The group is already gone.
  }
}

/** Starts a child (it loads, prints `ready` and waits for a line on stdin); killed at scope end. */
const spawnChild = (stateDir: string, firstSeq: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const proc = spawn(TSX, ["--conditions=@nixfleet/source", CHILD, stateDir, String(firstSeq)], {
        cwd: ROOT,
        detached: true
      })
      const child: Child = {
        proc,
        stdout: "",
        stderr: "",
        exited: false,
        closed: new Promise((resolve) =>
          proc.on("close", (_code, signal) => {
            child.exited = true
            resolve(signal)
          })
        )
      }
      proc.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        child.stdout += chunk
      })
      proc.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        child.stderr += chunk
      })
      return child
    }),
    (child) => Effect.promise(() => (kill(child), child.closed))
  )

/** Waits until the child's stdout satisfies `done`; fails if the child exits first. */
const untilStdout = (child: Child, done: (stdout: string) => boolean) =>
  Effect.async<void, Error>((resume) => {
    const check = () => {
      if (done(child.stdout)) {
        cleanup()
        resume(Effect.void)
      }
    }
    const onClose = () => {
      cleanup()
      resume(Effect.fail(new Error(`the child exited early:\n${child.stderr}`)))
    }
    const cleanup = () => {
      child.proc.stdout.off("data", check)
      child.proc.off("close", onClose)
    }
    child.proc.stdout.on("data", check)
    child.proc.on("close", onClose)
    if (child.exited) onClose()
    else check()
    return Effect.sync(cleanup)
  }).pipe(Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(`no progress:\n${child.stderr}`) }))

/** The complete lines a child printed after `ready` (a line cut by the kill is not a report). */
const reported = (stdout: string) => stdout.split("\n").slice(1, -1)

describe("Outbox crash safety", () => {
  it.scopedLive("keeps every reported enqueue across SIGKILLs", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempStateDir
      // All children load at once (loading is most of their start-up); each one touches the
      // database only after its go, once the previous one is dead.
      const children = yield* Effect.forEach(
        Array.from({ length: ROUNDS }, (_, round) => round),
        (round) => spawnChild(stateDir, round * 1_000_000 + 1)
      )
      const printed: Array<string> = []
      for (const [round, child] of children.entries()) {
        yield* untilStdout(child, (stdout) => stdout.startsWith("ready\n"))
        child.proc.stdin.write("go\n")
        // Odd rounds may die while opening (corruption check, migrations, legacy import);
        // even rounds die in the middle of the enqueue loop.
        if (round % 2 === 0) yield* untilStdout(child, (stdout) => reported(stdout).length > 0)
        yield* Effect.sleep(Math.floor(Math.random() * 250))
        kill(child)
        const signal = yield* Effect.promise(() => child.closed)
        expect(signal, child.stderr).toBe("SIGKILL")
        printed.push(...reported(child.stdout))
      }
      expect(printed.length).toBeGreaterThan(0)

      expect(yield* checkFile(`${stateDir}/outbox.sqlite`, "integrity_check")).toStrictEqual({ _tag: "Healthy" })
      const { sql } = yield* openOutbox(stateDir)
      const rows = yield* sql<{ readonly key: string; readonly copies: number }>`
        SELECT rollout_id || ' ' || seq AS key, count(*) OVER (PARTITION BY rollout_id, seq) AS copies
        FROM outbox ORDER BY id`
      const stored = rows.map((row) => row.key)
      expect(rows.filter((row) => row.copies !== 1)).toStrictEqual([])
      // In the order reported; at most one committed but unreported row per kill.
      const reportedKeys = new Set(printed)
      expect(stored.filter((key) => reportedKeys.has(key))).toStrictEqual(printed)
      expect(stored.length - printed.length).toBeLessThanOrEqual(ROUNDS)
      expect(yield* sql`PRAGMA integrity_check`).toStrictEqual([{ integrity_check: "ok" }])
      const names = yield* Effect.provide(
        Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readDirectory(stateDir)),
        NodeContext.layer
      )
      expect(names.filter((name) => name.includes("corrupt"))).toStrictEqual([])
    }), { timeout: 60_000 })
})
