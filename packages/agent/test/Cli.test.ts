/**
 * The command line as a whole, as a separate process: `--version`, `--help` on every
 * subcommand listing its flags, and exit 64 with one line for input it cannot use.
 */
import { describe, expect, it } from "@effect/vitest"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as Path from "node:path"
import { VERSION } from "../src/support/version.js"

const REPO = Path.resolve(__dirname, "../../..")
/** The command as installed (the bundle, which the test run builds first). */
const BIN = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")
const TIMEOUT = 120_000

const cli = (args: ReadonlyArray<string>) => runProcess(process.execPath, [BIN, ...args], { cwd: REPO })

// eslint-disable-next-line no-control-regex
const plain = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "")

const FLAGS: Readonly<Record<string, ReadonlyArray<string>>> = {
  run: [
    "--control-plane-url",
    "--machine-id",
    "--trust-file",
    "--ca-cert",
    "--client-cert",
    "--client-key",
    "--manifest-freshness-window-secs",
    "--bootstrap-token-file",
    "--state-dir",
    "--ssh-host-key-file",
    "--renewal-threshold-fraction",
    "--current-system-path",
    "--system-profile",
    "--switch-method",
    "--switch-lock-path",
    "--health-checks-file",
    "--sustained-failure-secs",
    "--verify-timeout-secs",
    "--log-format"
  ],
  activate: ["--current-system-path", "--system-profile", "--switch-method", "--state-dir", "--log-format"],
  rollback: ["--to", "--current-system-path", "--system-profile", "--switch-method", "--state-dir"],
  status: ["--state-dir", "--current-system-path", "--json"],
  dev: []
}

describe("nixfleet-agent", () => {
  it.live("--version prints the version and exits 0", () =>
    Effect.gen(function*() {
      const done = yield* cli(["--version"])
      expect(done.code).toBe(0)
      expect(done.stdout.trim()).toBe(VERSION)
    }), TIMEOUT)

  it.live("--help on each subcommand exits 0 and lists its flags", () =>
    Effect.gen(function*() {
      for (const [command, flags] of Object.entries(FLAGS)) {
        const done = yield* cli([command, "--help"])
        expect(done.code, command).toBe(0)
        const help = plain(done.stdout)
        expect(help, command).toContain(`$ ${command}`)
        for (const flag of flags) expect(help, `${command} ${flag}`).toContain(flag)
      }
    }), TIMEOUT)

  it.live("input it cannot use exits 64 with one line on stderr and nothing on stdout", () =>
    Effect.gen(function*() {
      for (
        const args of [
          ["frobnicate"],
          ["status", "--bogus"],
          ["status", "extra"],
          ["activate"],
          ["rollback", "--to"],
          ["activate", "--switch-method", "telepathy", "x-nixos-system"]
        ]
      ) {
        const done = yield* cli(args)
        expect(done.code, args.join(" ")).toBe(64)
        expect(done.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1)
        expect(done.stderr, args.join(" ")).toMatch(/^nixfleet-agent: \S/)
        expect(done.stdout, args.join(" ")).toBe("")
      }
    }), TIMEOUT)
})
