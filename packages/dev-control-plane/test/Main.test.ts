import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { closure, request } from "./support.js"

const ROOT = Path.resolve(import.meta.dirname, "../../..")
/** main.ts bundled (scripts/bundle.ts; the test run builds it first): it starts in a fraction of the time tsx takes. */
const MAIN = Path.join(ROOT, "packages/dev-control-plane/build/bundle/main.mjs")

interface Started {
  readonly child: ChildProcess.ChildProcess
  readonly line: { readonly url: string; readonly trustFile: string; readonly caFile: string | null }
}

/** Runs main.ts (bundled) and reads its first stdout line; the process is killed with the scope. */
const spawn = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.async<Started, Error>((resume) => {
      const child = ChildProcess.spawn(process.execPath, [MAIN, ...args], {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"]
      })
      const lines = Readline.createInterface({ input: child.stdout })
      let stderr = ""
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString("utf8")
      })
      lines.once("line", (line) => resume(Effect.succeed({ child, line: JSON.parse(line) })))
      child.once("exit", (code) => resume(Effect.fail(new Error(`exited ${code}: ${stderr}`))))
    }),
    ({ child }) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGKILL")
      })
  )

const exitOf = (child: ChildProcess.ChildProcess) =>
  Effect.async<number | null>((resume) => {
    if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
    child.once("exit", (code) => resume(Effect.succeed(code)))
  })

describe("main.ts as a separate process", () => {
  it.scopedLive(
    "prints one JSON line, serves the operator API and the agent API, and exits 0 on SIGTERM",
    () =>
      Effect.gen(function*() {
        const { child, line } = yield* spawn(["--port", "0"])
        expect(Object.keys(line).sort()).toEqual(["caFile", "trustFile", "url"])
        expect(line.caFile).toBeNull()
        expect(Fs.existsSync(line.trustFile)).toBe(true)
        expect((yield* request(`${line.url}/healthz`)).status).toBe(200)
        expect((yield* request(`${line.url}/v1/fleet.resolved`)).status).toBe(503)
        const published = yield* request(`${line.url}/v1/operator/rollouts`, {
          method: "POST",
          body: JSON.stringify({ channel: "stable", hosts: [{ hostname: "web-01", targetClosure: closure("web-01") }] })
        })
        expect(published.status).toBe(200)
        const dispatch = yield* request(`${line.url}/v1/agent/dispatch?wait=0`, {
          headers: { "x-nixfleet-machine-id": "web-01" }
        })
        expect(JSON.parse(dispatch.text).rollout_id).toBe(JSON.parse(published.text).rolloutId)
        child.kill("SIGTERM")
        expect(yield* exitOf(child)).toBe(0)
        // The temporary directory went with the scope.
        expect(Fs.existsSync(line.trustFile)).toBe(false)
      }),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "--tls --dir writes the CA and trust file there and serves HTTPS; SIGINT stops it",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "dev-cp-main-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
        const { child, line } = yield* spawn(["--tls", "--dir", dir])
        expect(line.url).toMatch(/^https:/)
        expect(line.caFile).toBe(Path.join(dir, "ca.pem"))
        expect(line.trustFile).toBe(Path.join(dir, "trust.json"))
        const ca = Fs.readFileSync(line.caFile ?? "", "utf8")
        expect((yield* request(`${line.url}/healthz`, { ca })).status).toBe(200)
        expect((yield* request(`${line.url}/v1/operator/hosts`, { ca })).text).toBe("{}")
        child.kill("SIGINT")
        expect(yield* exitOf(child)).toBe(0)
        expect(Fs.existsSync(line.caFile ?? "")).toBe(true)
      }),
    { timeout: 30_000 }
  )

  it.scopedLive("exits 64 on a bad argument", () =>
    Effect.gen(function*() {
      const outcome = yield* Effect.either(spawn(["--port", "http"]))
      expect(outcome._tag).toBe("Left")
      if (outcome._tag === "Left") expect(outcome.left.message).toMatch(/^exited 64: dev-control-plane: invalid port/)
    }), { timeout: 30_000 })
})
