/**
 * `nixfleet-agent activate` and `rollback` as an operator runs them: a separate process,
 * real Nix, a sandbox; the last stdout line is the JSON result and the exit status follows
 * it.
 */
import { expect, it } from "@effect/vitest"
import {
  boot,
  buildClosure,
  currentClosure,
  makeBinaryCache,
  makeSandbox,
  type NixSandbox,
  runProcess
} from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describeNix } from "./nix/describeNix.js"

const REPO = Path.resolve(__dirname, "../../..")
/** The command as installed (the bundle, which the test run builds first). */
const BIN = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")

const flags = (sandbox: NixSandbox, logFormat: "json" | "pretty" = "pretty") => [
  "--current-system-path",
  sandbox.currentSystem,
  "--system-profile",
  sandbox.profile,
  "--switch-lock-path",
  sandbox.lockPath,
  "--state-dir",
  sandbox.stateDir,
  "--switch-method",
  "direct",
  "--verify-timeout-secs",
  "30",
  "--log-format",
  logFormat
]

const cli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>) =>
  Effect.map(runProcess(process.execPath, [BIN, ...args], { env, cwd: REPO }), (done) => {
    const lines = done.stdout.trim().split("\n")
    return { ...done, result: JSON.parse(lines[lines.length - 1] ?? "null") }
  })

const TIMEOUT = 120_000

describeNix("nixfleet-agent activate / rollback against real Nix", () => {
  it.scopedLive(
    "activate prints the result as its last line and exits 0; rollback brings the previous closure back",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const prior = yield* buildClosure(sandbox, { name: "nixos-system-prior", switch: { _tag: "Flip" } })
        yield* boot(sandbox, prior)
        const target = yield* buildClosure(sandbox, { name: "nixos-system-next", switch: { _tag: "Flip" } })
        const activated = yield* cli(["activate", target, ...flags(sandbox)], sandbox.env)
        expect(activated.code).toBe(0)
        expect(activated.result).toStrictEqual({
          outcome: "FiredAndPolled",
          exitCode: 0,
          phase: null,
          closure: target,
          detail: `switched to ${target}`
        })
        expect(yield* currentClosure(sandbox)).toBe(target)
        // The logs reach stderr while the command runs (not only when it fails).
        expect(activated.stderr).toMatch(/activating/)
        // Without --to: the profile's previous generation.
        const rolledBack = yield* cli(["rollback", ...flags(sandbox)], sandbox.env)
        expect(rolledBack.code).toBe(0)
        expect(rolledBack.result).toMatchObject({ outcome: "FiredAndPolled", exitCode: 0, closure: prior })
        expect(yield* currentClosure(sandbox)).toBe(prior)
        const again = yield* cli(["rollback", "--to", prior, ...flags(sandbox, "json")], sandbox.env)
        expect(again.code).toBe(0)
        const logLines = again.stderr.trim().split("\n")
        expect(logLines.length).toBeGreaterThan(0)
        for (const line of logLines) expect(JSON.parse(line)).toHaveProperty("message")
        expect(again.result).toMatchObject({ outcome: "FiredAndPolled", closure: prior })
      }),
    TIMEOUT
  )

  it.scopedLive(
    "exit statuses: 10 deferred, 2 signature refused, 3 third closure, 1 switch failure",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const prior = yield* buildClosure(sandbox, { name: "nixos-system-prior", switch: { _tag: "Flip" } })
        yield* boot(sandbox, prior)
        const kernel = yield* buildClosure(sandbox, {
          name: "nixos-system-kernel",
          switch: { _tag: "Flip" },
          components: { dbus: "1", systemd: "1", kernel: "2" }
        })
        const deferred = yield* cli(["activate", kernel, ...flags(sandbox)], sandbox.env)
        expect([deferred.code, deferred.result.outcome, deferred.result.phase]).toStrictEqual([
          10,
          "DeferredPendingReboot",
          "defer-bootloader-update"
        ])

        const cached = yield* buildClosure(sandbox, {
          name: "nixos-system-cached",
          switch: { _tag: "Flip" },
          salt: "cli"
        })
        const cache = yield* makeBinaryCache(sandbox, cached)
        const refused = yield* cli(["activate", cached, ...flags(sandbox)], cache.untrustedEnv)
        expect([refused.code, refused.result.outcome, refused.result.exitCode]).toStrictEqual([
          2,
          "SignatureMismatch",
          -2
        ])

        const third = yield* buildClosure(sandbox, { name: "nixos-system-third", switch: { _tag: "Flip" } })
        const rogue = yield* buildClosure(sandbox, {
          name: "nixos-system-rogue",
          switch: { _tag: "FlipTo", closure: third }
        })
        const mismatch = yield* cli(["activate", rogue, ...flags(sandbox)], sandbox.env)
        expect([mismatch.code, mismatch.result.outcome, mismatch.result.exitCode]).toStrictEqual([
          3,
          "VerifyMismatch",
          -3
        ])

        const failing = yield* buildClosure(sandbox, { name: "nixos-system-exit9", switch: { _tag: "Exit", code: 9 } })
        const failed = yield* cli(["activate", failing, ...flags(sandbox)], sandbox.env)
        expect([failed.code, failed.result.outcome, failed.result.exitCode, failed.result.phase]).toStrictEqual([
          1,
          "SwitchFailed",
          9,
          "switch-exited"
        ])
      }),
    TIMEOUT
  )

  it.scopedLive(
    "hostile closure names exit 64 with one line on stderr, before anything runs",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        // No Nix on PATH and no state directory: refusing first is the only way to exit 64.
        Fs.rmSync(sandbox.stateDir, { recursive: true })
        const bin = Path.join(sandbox.root, "node-only")
        Fs.mkdirSync(bin)
        Fs.symlinkSync(process.execPath, Path.join(bin, "node"))
        const env = { PATH: bin }
        for (
          const hostile of [
            "../../etc/passwd",
            "$(touch /tmp/pwned)",
            "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-x; rm -rf /",
            "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-x\nroot",
            "--option=substituters",
            "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x",
            ""
          ]
        ) {
          const done = yield* runProcess(process.execPath, [
            BIN,
            "activate",
            hostile,
            ...flags(sandbox)
          ], {
            env,
            cwd: REPO
          })
          expect(done.code, hostile).toBe(64)
          expect(done.stdout, hostile).toBe("")
          expect(done.stderr.trim().split("\n"), hostile).toHaveLength(1)
          expect(done.stderr, hostile).toMatch(/^nixfleet-agent: /)
        }
        const rollback = yield* runProcess(process.execPath, [
          BIN,
          "rollback",
          "--to",
          "../x",
          ...flags(sandbox)
        ], {
          env,
          cwd: REPO
        })
        expect(rollback.code).toBe(64)
        expect(Fs.existsSync(sandbox.stateDir)).toBe(false)
        expect(Fs.existsSync("/tmp/pwned")).toBe(false)
      }),
    TIMEOUT
  )

  it.scopedLive("bad flags exit 64 with one line", () =>
    Effect.gen(function*() {
      const sandbox = yield* makeSandbox
      for (
        const args of [
          ["activate", "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-x", "--switch-method", "chroot"],
          ["activate", "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-x", "--verify-timeout-secs", "360"],
          ["activate", "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-x", "--no-such-flag"],
          ["activate"],
          ["no-such-command"]
        ]
      ) {
        const done = yield* runProcess(process.execPath, [BIN, ...args], {
          env: sandbox.env,
          cwd: REPO
        })
        expect(done.code, args.join(" ")).toBe(64)
        expect(done.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1)
      }
    }), TIMEOUT)
})
