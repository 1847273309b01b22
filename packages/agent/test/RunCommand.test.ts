/**
 * `nixfleet-agent run` refusing to start, as systemd would see it: a separate process, an
 * exit status (64 for flags, 78 for a configuration that cannot work) and one line on
 * stderr, before anything talks to a control plane.
 */
import { describe, expect, it } from "@effect/vitest"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { eventually, stateDirectory } from "./support/agentHarness.js"
import { makeSigner, writeTrustFile } from "./support/signing.js"

const REPO = Path.resolve(__dirname, "../../..")
/** The command as installed (the bundle, which the test run builds first). */
const BIN = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")
const TIMEOUT = 120_000

const run = (args: ReadonlyArray<string>) => runProcess(process.execPath, [BIN, "run", ...args], { cwd: REPO })

const oneLine = (stderr: string) => stderr.trim().split("\n")

describe("nixfleet-agent run refuses to start", () => {
  it.scopedLive("bad flags exit 64 with one line", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const base = ["--machine-id", "web-01", "--state-dir", dir]
      for (
        const args of [
          base,
          ["--control-plane-url", "not a url", ...base],
          ["--control-plane-url", "http://127.0.0.1:1", "--state-dir", dir],
          // An unusable optional value is no exit (SettingFallbacks.test.ts).
          // A v0.1 flag the reference binary refuses too (--poll-interval is accepted: UpstreamCommandLine.test.ts).
          ["--control-plane-url", "http://127.0.0.1:1", ...base, "--metrics-port", "9100"]
        ]
      ) {
        const done = yield* run(args)
        expect(done.code, args.join(" ")).toBe(64)
        expect(oneLine(done.stderr), args.join(" ")).toHaveLength(1)
        expect(done.stderr, args.join(" ")).toMatch(/^nixfleet-agent: /)
      }
    }), TIMEOUT)

  it.scopedLive(
    "a configuration that cannot work exits 78 with one line naming the problem",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        const trustFile = writeTrustFile(dir, makeSigner())
        const garbage = Path.join(dir, "garbage.json")
        Fs.writeFileSync(garbage, "{ not json")
        const base = ["--machine-id", "web-01", "--state-dir", dir]
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
          [
            ["--control-plane-url", "http://127.0.0.1:1", ...base, "--trust-file", Path.join(dir, "absent.json")],
            /trust/
          ],
          [["--control-plane-url", "http://127.0.0.1:1", ...base, "--trust-file", garbage], /garbage\.json/],
          [["--control-plane-url", "http://cp.example:8080", ...base, "--trust-file", trustFile], /loopback|http/],
          [
            [
              "--control-plane-url",
              "https://127.0.0.1:1",
              ...base,
              "--trust-file",
              trustFile,
              "--client-cert",
              Path.join(dir, "absent.pem"),
              "--client-key",
              Path.join(dir, "absent.key")
            ],
            /absent/
          ]
        ]
        for (const [args, problem] of cases) {
          const done = yield* run(args)
          expect(done.code, args.join(" ")).toBe(78)
          expect(oneLine(done.stderr), args.join(" ")).toHaveLength(1)
          expect(done.stderr, args.join(" ")).toMatch(problem)
        }
      }),
    TIMEOUT
  )
})

describe("nixfleet-agent run stops on request", () => {
  it.scopedLive(
    "a repeated SIGTERM does not cut the drain short: exit 0 after `stopped`",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        const trustFile = writeTrustFile(dir, makeSigner())
        // One process, so the signals reach the agent itself. Nothing listens on port 1:
        // boot recovery gives up at once and the workers keep retrying.
        const child = yield* Effect.acquireRelease(
          Effect.sync(() =>
            spawn(process.execPath, [
              BIN,
              "run",
              "--control-plane-url",
              "http://127.0.0.1:1",
              "--machine-id",
              "web-01",
              "--state-dir",
              dir,
              "--trust-file",
              trustFile,
              "--log-format",
              "json"
            ], { cwd: REPO, stdio: ["ignore", "ignore", "pipe"] })
          ),
          (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
        )
        let stderr = ""
        child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
          stderr += chunk
        })
        const exited = Effect.async<{ code: number | null; signal: NodeJS.Signals | null }>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) {
            resume(Effect.succeed({ code: child.exitCode, signal: child.signalCode }))
          } else child.once("exit", (code, signal) => resume(Effect.succeed({ code, signal })))
        })
        yield* eventually("boot recovery done", Effect.sync(() => stderr.includes("boot recovery done")), 60_000)
        child.kill("SIGTERM")
        yield* Effect.sleep("20 millis")
        child.kill("SIGTERM")
        child.kill("SIGINT")
        const exit = yield* exited.pipe(Effect.timeout("40 seconds"))
        expect(exit, stderr).toStrictEqual({ code: 0, signal: null })
        expect(stderr).toMatch(/"message":"stopped"/)
      }),
    TIMEOUT
  )
})
