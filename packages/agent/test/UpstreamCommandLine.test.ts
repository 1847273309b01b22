/**
 * The reference agent's command line starts this agent unchanged: run's flags without a
 * subcommand are `run` (so are no arguments at all when the settings are in the
 * environment), and the reference binary's `--poll-interval` and `--compliance-gate-mode`
 * (or their environment variables) are accepted with one warning each. `--help` still lists
 * the subcommands, and an unknown flag still exits 64.
 */
import { describe, expect, it } from "@effect/vitest"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { ConfigProvider, Effect, Option } from "effect"
import * as Path from "node:path"
import { withDefaultCommand } from "../src/cli/Cli.js"
import { accepted, parseArgv } from "./support/runParser.js"

const REPO = Path.resolve(__dirname, "../../..")
/** The command as installed (the bundle, which the test run builds first). */
const BIN = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")
const TIMEOUT = 120_000

/**
 * What the reference NixOS module (`modules/scopes/nixfleet/_agent-args.nix`) passes for a
 * host with its defaults and TLS set: no subcommand, `--poll-interval` and
 * `--compliance-gate-mode` included.
 */
const REFERENCE_ARGV = [
  "--control-plane-url",
  "https://cp.example.org:8443",
  "--machine-id",
  "web-01",
  "--poll-interval",
  "60",
  "--trust-file",
  "/etc/nixfleet/agent/trust.json",
  "--ca-cert",
  "/etc/nixfleet/fleet-ca.pem",
  "--client-cert",
  "/var/lib/nixfleet/agent-cert.pem",
  "--client-key",
  "/etc/ssh/ssh_host_ed25519_key",
  "--bootstrap-token-file",
  "/run/secrets/bootstrap-token",
  "--state-dir",
  "/var/lib/nixfleet-agent",
  "--compliance-gate-mode",
  "auto",
  "--ssh-host-key-file",
  "/etc/ssh/ssh_host_ed25519_key"
]

/** The reference binary's environment variables (clap's `env =`), as a unit's Environment= sets them. */
const REFERENCE_ENV = {
  NIXFLEET_AGENT_CP_URL: "http://127.0.0.1:9",
  NIXFLEET_AGENT_MACHINE_ID: "web-01",
  NIXFLEET_AGENT_TRUST_FILE: "/nonexistent/trust.json",
  NIXFLEET_AGENT_STATE_DIR: "/nonexistent/state",
  NIXFLEET_AGENT_POLL_INTERVAL: "30",
  NIXFLEET_AGENT_COMPLIANCE_GATE_MODE: "permissive"
}

const withEnv = (env: Readonly<Record<string, string>>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

/** The binary as a separate process, with no `NIXFLEET_AGENT_*` variable but `env`'s. */
const cli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) => {
  const clean = Object.fromEntries(
    Object.keys(process.env).filter((key) => key.startsWith("NIXFLEET_AGENT_")).map((key) => [key, ""])
  )
  return runProcess(process.execPath, [BIN, ...args], {
    cwd: REPO,
    env: { ...clean, ...env }
  })
}

/** The JSON log lines of stderr that are warnings about `flag`. */
const warningsAbout = (stderr: string, flag: string) =>
  stderr.split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return []
    const entry = JSON.parse(line) as { logLevel?: string; message?: string; annotations?: { flag?: string } }
    return entry.logLevel === "WARN" && entry.annotations?.flag === flag ? [entry] : []
  })

// eslint-disable-next-line no-control-regex
const plain = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "")

describe("run's flags without a subcommand", () => {
  it.effect("are run's; a subcommand, a root flag or a word that is neither keeps its meaning", () =>
    Effect.gen(function*() {
      const argv = (...args: ReadonlyArray<string>) => ["node", "nixfleet-agent", ...args]
      expect(yield* withDefaultCommand(argv("--machine-id", "a"))).toStrictEqual(argv("run", "--machine-id", "a"))
      expect(yield* withDefaultCommand(argv("--bogus"))).toStrictEqual(argv("run", "--bogus"))
      for (
        const kept of [
          ["run", "--machine-id", "a"],
          ["status", "--json"],
          ["--help"],
          ["-h"],
          ["--version"],
          ["--log-level=debug", "status"],
          ["frobnicate"],
          []
        ]
      ) {
        expect(yield* withDefaultCommand(argv(...kept)), kept.join(" ")).toStrictEqual(argv(...kept))
      }
    }).pipe(withEnv({})))

  it.effect("no arguments at all are run's when the settings are in the environment", () =>
    Effect.gen(function*() {
      const argv = ["node", "nixfleet-agent"]
      expect(yield* withDefaultCommand(argv).pipe(withEnv({ NIXFLEET_AGENT_CP_URL: "https://cp" }))).toStrictEqual([
        ...argv,
        "run"
      ])
      expect(yield* withDefaultCommand(argv).pipe(withEnv({ NIXFLEET_AGENT_MACHINE_ID: "a" }))).toStrictEqual([
        ...argv,
        "run"
      ])
      expect(yield* withDefaultCommand(argv).pipe(withEnv({ NIXFLEET_AGENT_CP_URL: "" }))).toStrictEqual(argv)
    }))

  it.effect("the reference module's command line parses as run, every flag with its value", () =>
    Effect.gen(function*() {
      const options = accepted(yield* parseArgv(REFERENCE_ARGV), "the reference command line")
      expect(options).toMatchObject({
        controlPlaneUrl: "https://cp.example.org:8443",
        machineId: "web-01",
        trustFile: "/etc/nixfleet/agent/trust.json",
        stateDir: "/var/lib/nixfleet-agent",
        sshHostKeyFile: "/etc/ssh/ssh_host_ed25519_key",
        caCert: { _tag: "Some", value: "/etc/nixfleet/fleet-ca.pem" },
        bootstrapTokenFile: { _tag: "Some", value: "/run/secrets/bootstrap-token" },
        pollInterval: { _tag: "Some", value: 60 },
        complianceGateMode: { _tag: "Some", value: "auto" }
      })
      for (const mode of ["disabled", "permissive", "enforce", "auto"]) {
        const parsed = accepted(
          yield* parseArgv(["--control-plane-url", "https://cp", "--machine-id", "a", "--compliance-gate-mode", mode]),
          mode
        )
        expect(parsed["complianceGateMode"]).toStrictEqual(Option.some(mode))
      }
    }))

  it.effect("bad values and unknown flags are refused", () =>
    Effect.gen(function*() {
      const base = ["--control-plane-url", "https://cp", "--machine-id", "a"]
      for (
        const bad of [
          ["--poll-interval", "soon"],
          ["--poll-interval", "-5"],
          ["--compliance-gate-mode", "strict"],
          ["--dry-run"],
          ["--metrics-port", "9100"]
        ]
      ) {
        expect((yield* parseArgv([...base, ...bad]))._tag, bad.join(" ")).toBe("Refused")
      }
    }))
})

describe("the binary, as the reference agent's units run it", () => {
  it.live(
    "the reference command line is run: one warning per flag without effect, then run's own checks",
    () =>
      Effect.gen(function*() {
        const done = yield* cli([
          ...REFERENCE_ARGV.map((word) => word === "https://cp.example.org:8443" ? "http://127.0.0.1:9" : word)
            .map((word) => word === "/etc/nixfleet/agent/trust.json" ? "/nonexistent/trust.json" : word)
        ])
        // run got as far as reading the trust file: 78, its one-line reason.
        expect(done.code, done.stderr).toBe(78)
        expect(done.stderr).toContain("nixfleet-agent: cannot read the trust file /nonexistent/trust.json")
        const poll = warningsAbout(done.stderr, "--poll-interval")
        expect(poll).toHaveLength(1)
        expect(poll[0]?.message).toMatch(/^--poll-interval .* has no effect/)
        const gate = warningsAbout(done.stderr, "--compliance-gate-mode")
        expect(gate).toHaveLength(1)
        expect(gate[0]?.message).toMatch(/^--compliance-gate-mode .* has no effect/)
      }),
    TIMEOUT
  )

  it.live(
    "no arguments, the settings in the reference binary's environment variables: run, with the warnings",
    () =>
      Effect.gen(function*() {
        const done = yield* cli([], REFERENCE_ENV)
        expect(done.code, done.stderr).toBe(78)
        expect(done.stderr).toContain("cannot read the trust file /nonexistent/trust.json")
        expect(warningsAbout(done.stderr, "--poll-interval")).toHaveLength(1)
        expect(warningsAbout(done.stderr, "--compliance-gate-mode")).toHaveLength(1)
      }),
    TIMEOUT
  )

  it.live("without them, no warning", () =>
    Effect.gen(function*() {
      const done = yield* cli(["--control-plane-url", "http://127.0.0.1:9", "--machine-id", "a", "--trust-file", "/x"])
      expect(done.code).toBe(78)
      expect(warningsAbout(done.stderr, "--poll-interval")).toStrictEqual([])
      expect(warningsAbout(done.stderr, "--compliance-gate-mode")).toStrictEqual([])
    }), TIMEOUT)

  it.live(
    "--help without a subcommand, and no arguments without settings, list the subcommands",
    () =>
      Effect.gen(function*() {
        for (const args of [["--help"], []]) {
          const done = yield* cli(args)
          expect(done.code, args.join(" ")).toBe(0)
          const help = plain(done.stdout)
          for (const command of ["run", "activate", "rollback", "status", "dev"]) {
            expect(help, `${args.join(" ")}: ${command}`).toContain(`  - ${command} `)
          }
        }
      }),
    TIMEOUT
  )

  it.live("an unknown flag, alone or after run's, exits 64 with one line", () =>
    Effect.gen(function*() {
      for (
        const args of [
          ["--bogus"],
          ["--control-plane-url", "http://127.0.0.1:9", "--machine-id", "a", "--bogus"],
          ["--control-plane-url", "http://127.0.0.1:9", "--machine-id", "a", "--poll-interval", "x"]
        ]
      ) {
        const done = yield* cli(args)
        expect(done.code, args.join(" ")).toBe(64)
        expect(done.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1)
        expect(done.stdout).toBe("")
      }
    }), TIMEOUT)
})
