/**
 * The Nix packaging: every Nix file parses; `nix/agent-args.nix` renders the `run` command
 * line with one argument per value, optional flags only when set and no flag twice; the
 * reference unit `packaging/nixfleet-agent.service` is what the NixOS module, evaluated by
 * nixpkgs' module system, renders for `packaging/sample-settings.nix` (not a copy written by
 * hand), passes `systemd-analyze verify` without a warning, and passes only flags the real
 * `run` parser accepts. The module itself is checked option by option in ModuleEval.test.ts
 * and run under systemd in SystemdUnit.test.ts. And the npm package: what `npm pack` puts in
 * it holds no dev tools (the demo, the Nix fixtures, the dev control plane), and none of
 * them is a runtime dependency.
 */
import { describe, expect, it } from "@effect/vitest"
import { isCi, nixSuiteMode, runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect, Option } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describeNix } from "./nix/describeNix.js"
import { describeNeeding, moduleEvalMissing, NIXPKGS_LIB } from "./support/moduleEval.js"
import { accepted, parseArgv, parseRun, systemdWords } from "./support/runParser.js"

const REPO = Path.resolve(__dirname, "../../..")
const UNIT_FILE = Path.join(REPO, "packaging/nixfleet-agent.service")
const TIMEOUT = 60_000

// ---------------------------------------------------------------------------------------
// Nix evaluation
// ---------------------------------------------------------------------------------------

/** Settings as agent-args.nix takes them; passed as JSON through the environment (no Nix quoting). */
type Settings = Readonly<Record<string, unknown>>

const evalNix = (expression: string, settings: Settings = {}) =>
  runProcess("nix-instantiate", ["--eval", "--strict", "--json", "-E", expression], {
    cwd: REPO,
    env: { NIXFLEET_SETTINGS: JSON.stringify(settings) }
  })

const SETTINGS = `builtins.fromJSON (builtins.getEnv "NIXFLEET_SETTINGS")`

/** The JSON value of `expression`; dies with Nix's message when it does not evaluate. */
const evalJson = (expression: string, settings: Settings = {}) =>
  Effect.flatMap(
    evalNix(expression, settings),
    (done) =>
      done.code === 0
        ? Effect.succeed<unknown>(JSON.parse(done.stdout))
        : Effect.dieMessage(`nix-instantiate ${expression}: ${done.stderr.trim()}`)
  )

/** What `args` renders for `settings`. */
const renderArgs = (settings: Settings) =>
  Effect.map(
    evalJson(`(import ./nix/agent-args.nix).args (${SETTINGS})`, settings),
    (args) => args as ReadonlyArray<string>
  )

/** The flags (`--name`) of an argv. */
const flagsOf = (argv: ReadonlyArray<string>) => argv.filter((word) => word.startsWith("--"))

const REQUIRED = { controlPlaneUrl: "https://cp.example.org:8443", machineId: "web-01" }
const REQUIRED_ARGV = ["run", "--control-plane-url", "https://cp.example.org:8443", "--machine-id", "web-01"]

/** Every setting, with values a shell or systemd would split, quote or expand. */
const EVERYTHING: Settings = {
  ...REQUIRED,
  machineId: `web 01 "quoted" it's`,
  trustFile: "/etc/nixfleet/agent/trust file.json",
  manifestFreshnessWindowSecs: 7200,
  renewalThresholdFraction: 0.25,
  tls: { caCert: "/etc/ca $HOME.pem", clientCert: "/var/lib/nixfleet/cert 100%.pem", clientKey: "/etc/ssh/key\\x" },
  bootstrapTokenFile: "/run/secrets/token;",
  stateDir: "/var/lib/nixfleet-agent",
  sshHostKeyFile: "/etc/ssh/ssh_host_ed25519_key",
  healthChecksFile: "/etc/nixfleet/agent/health-checks.json",
  sustainedFailureSecs: 60,
  verifyTimeoutSecs: 200,
  realiseTimeoutSecs: 1800,
  switchMethod: "direct",
  logFormat: "pretty",
  extraArgs: ["--current-system-path", "/run/current-system"]
}

const EVERYTHING_ARGV = [
  "run",
  "--control-plane-url",
  "https://cp.example.org:8443",
  "--machine-id",
  `web 01 "quoted" it's`,
  "--trust-file",
  "/etc/nixfleet/agent/trust file.json",
  "--manifest-freshness-window-secs",
  "7200",
  "--renewal-threshold-fraction",
  "0.25",
  "--ca-cert",
  "/etc/ca $HOME.pem",
  "--client-cert",
  "/var/lib/nixfleet/cert 100%.pem",
  "--client-key",
  "/etc/ssh/key\\x",
  "--bootstrap-token-file",
  "/run/secrets/token;",
  "--state-dir",
  "/var/lib/nixfleet-agent",
  "--ssh-host-key-file",
  "/etc/ssh/ssh_host_ed25519_key",
  "--health-checks-file",
  "/etc/nixfleet/agent/health-checks.json",
  "--sustained-failure-secs",
  "60",
  "--verify-timeout-secs",
  "200",
  "--realise-timeout-secs",
  "1800",
  "--switch-method",
  "direct",
  "--log-format",
  "pretty",
  "--current-system-path",
  "/run/current-system"
]

// ---------------------------------------------------------------------------------------
// The reference unit
// ---------------------------------------------------------------------------------------

interface UnitLine {
  readonly section: string
  readonly key: string
  readonly value: string
}

const readUnit = (): ReadonlyArray<UnitLine> => {
  let section = ""
  const lines: Array<UnitLine> = []
  for (const line of Fs.readFileSync(UNIT_FILE, "utf8").split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const header = /^\[(.+)\]$/.exec(line)
    if (header !== null) {
      section = header[1] ?? ""
      continue
    }
    const eq = line.indexOf("=")
    lines.push({ section, key: line.slice(0, eq), value: line.slice(eq + 1) })
  }
  return lines
}

const unitValues = (section: string, key: string) =>
  readUnit().filter((line) => line.section === section && line.key === key).map((line) => line.value)

const unitValue = (section: string, key: string) => {
  const values = unitValues(section, key)
  expect(values, `${section}.${key}`).toHaveLength(1)
  return values[0] ?? ""
}

const execStartArgv = () => systemdWords(unitValue("Service", "ExecStart"))

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

const onPath = (tool: string) =>
  (process.env["PATH"] ?? "").split(Path.delimiter).some((dir) => {
    try {
      Fs.accessSync(Path.join(dir, tool), Fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })

/** As describeNix: skipped without the tool, failing instead when CI is set. */
const describeWith = (tool: string, name: string, body: () => void): void => {
  switch (nixSuiteMode(onPath(tool), isCi())) {
    case "run":
      describe(name, body)
      return
    case "skip":
      describe.skip(`${name} [skipped: ${tool} not found on PATH; with CI set this fails instead]`, body)
      return
    case "fail":
      describe(`${name} [${tool} not found on PATH, and CI is set]`, () => {
        it(`needs ${tool}`, () => {
          throw new Error(`${name}: ${tool} not found on PATH (CI is set): install it on the runner.`)
        })
      })
      return
  }
}

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-packaging-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** `systemd-analyze verify` of `text` as `<name>.service`: its exit status and every line it printed. */
const verifyUnit = (text: string, name = "nixfleet-agent") =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const file = Path.join(dir, `${name}.service`)
    Fs.writeFileSync(file, text)
    const done = yield* runProcess("systemd-analyze", ["verify", file], { cwd: dir })
    const lines = `${done.stdout}\n${done.stderr}`.split("\n").filter((line) => line.trim() !== "")
    return { code: done.code, lines, about: lines.filter((line) => line.includes(name)) }
  })

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

describeNix("nix/agent-args.nix and the Nix files", () => {
  it.live("flake.nix and every file under nix/ and packaging/ parse", () =>
    Effect.gen(function*() {
      const files = [
        "flake.nix",
        ...["nix", "packaging"].flatMap((dir) =>
          Fs.readdirSync(Path.join(REPO, dir)).filter((name) => name.endsWith(".nix")).map((name) => `${dir}/${name}`)
        )
      ]
      expect(files).toEqual(expect.arrayContaining([
        "nix/agent-args.nix",
        "nix/package.nix",
        "nix/nixos-module.nix",
        "nix/darwin-module.nix",
        "nix/module-options.nix",
        "nix/module-eval.nix",
        "nix/reference-unit.nix"
      ]))
      for (const file of files) {
        const done = yield* runProcess("nix-instantiate", ["--parse", file], { cwd: REPO })
        expect(done.stderr, file).toBe("")
        expect(done.code, file).toBe(0)
      }
    }), TIMEOUT)

  it.live("required settings only: `run` and two flags", () =>
    Effect.gen(function*() {
      expect(yield* renderArgs(REQUIRED)).toStrictEqual(REQUIRED_ARGV)
    }), TIMEOUT)

  it.live(
    "every setting: in order, one argument per value whatever it contains, then extraArgs",
    () =>
      Effect.gen(function*() {
        expect(yield* renderArgs(EVERYTHING)).toStrictEqual(EVERYTHING_ARGV)
      }),
    TIMEOUT
  )

  it.live("a null or absent optional setting passes no flag", () =>
    Effect.gen(function*() {
      const argv = yield* renderArgs({
        ...REQUIRED,
        trustFile: null,
        renewalThresholdFraction: null,
        tls: { caCert: null, clientCert: "/var/lib/nixfleet/agent-cert.pem", clientKey: null },
        bootstrapTokenFile: null
      })
      expect(argv).toStrictEqual([...REQUIRED_ARGV, "--client-cert", "/var/lib/nixfleet/agent-cert.pem"])
    }), TIMEOUT)

  it.live("a required setting missing is an evaluation error naming it", () =>
    Effect.gen(function*() {
      const done = yield* evalNix(`(import ./nix/agent-args.nix).args (${SETTINGS})`, { machineId: "web-01" })
      expect(done.code).not.toBe(0)
      expect(done.stderr).toMatch(/controlPlaneUrl must be set/)
    }), TIMEOUT)

  it.live(
    "no flag twice: rendered flags are distinct, and extraArgs repeating one is refused",
    () =>
      Effect.gen(function*() {
        const flags = flagsOf(yield* renderArgs(EVERYTHING))
        expect(new Set(flags).size).toBe(flags.length)
        for (const extraArgs of [["--state-dir", "/elsewhere"], ["--machine-id=web-02"], ["--log-format", "json"]]) {
          const done = yield* evalNix(`(import ./nix/agent-args.nix).args (${SETTINGS})`, { ...EVERYTHING, extraArgs })
          expect(done.code, extraArgs.join(" ")).not.toBe(0)
          expect(done.stderr, extraArgs.join(" ")).toMatch(/flag given twice/)
        }
        // A value that looks like a flag is still a value.
        expect(yield* renderArgs({ ...REQUIRED, machineId: "--trust-file", trustFile: "/x" })).toStrictEqual([
          ...REQUIRED_ARGV.slice(0, 4),
          "--trust-file",
          "--trust-file",
          "/x"
        ])
      }),
    TIMEOUT
  )

  it.live("execStart: every value reads back from its systemd word", () =>
    Effect.gen(function*() {
      const line = (yield* evalJson(
        `(import ./nix/agent-args.nix).execStart "/nix/store/x-nixfleet-agent/bin/nixfleet-agent" (${SETTINGS})`,
        EVERYTHING
      )) as string
      expect(systemdWords(line)).toStrictEqual(["/nix/store/x-nixfleet-agent/bin/nixfleet-agent", ...EVERYTHING_ARGV])
      expect(line).toContain(`"/etc/ca $$HOME.pem"`)
      expect(line).toContain(`"/var/lib/nixfleet/cert 100%%.pem"`)
    }), TIMEOUT)

  it.live("the module's defaults are the agent's own defaults", () =>
    Effect.gen(function*() {
      const defaults = (yield* evalJson("(import ./nix/agent-args.nix).defaults")) as Record<string, unknown>
      const options = accepted(yield* parseArgv(REQUIRED_ARGV), "the required flags")
      for (
        const key of [
          "trustFile",
          "healthChecksFile",
          "manifestFreshnessWindowSecs",
          "stateDir",
          "sshHostKeyFile",
          "sustainedFailureSecs",
          "verifyTimeoutSecs",
          "realiseTimeoutSecs",
          "logFormat"
        ]
      ) {
        expect(options[key], key).toStrictEqual(defaults[key])
      }
      expect(defaults["renewalThresholdFraction"]).toBeNull()
      expect(options["renewalThresholdFraction"]).toStrictEqual(Option.none())
    }), TIMEOUT)

  it.live(
    "the real run parser accepts everything agent-args.nix renders, each value as one argument",
    () =>
      Effect.gen(function*() {
        const options = accepted(yield* parseArgv(yield* renderArgs(EVERYTHING)), "every setting")
        expect(options).toMatchObject({
          machineId: `web 01 "quoted" it's`,
          trustFile: "/etc/nixfleet/agent/trust file.json",
          renewalThresholdFraction: Option.some(0.25),
          caCert: Option.some("/etc/ca $HOME.pem"),
          clientKey: Option.some("/etc/ssh/key\\x"),
          bootstrapTokenFile: Option.some("/run/secrets/token;"),
          switchMethod: "direct",
          logFormat: "pretty",
          currentSystemPath: "/run/current-system"
        })
      }),
    TIMEOUT
  )
})

describe("the reference unit and the agent's command line", () => {
  it.effect("the real run parser accepts every flag of ExecStart, with the unit's values", () =>
    Effect.gen(function*() {
      const [program, ...argv] = execStartArgv()
      expect(program).toMatch(/^\/nix\/store\/[0-9a-z]{32}-nixfleet-agent-[^/]+\/bin\/nixfleet-agent$/)
      expect(argv[0]).toBe("run")
      const options = accepted(yield* parseArgv(argv), "the reference unit's ExecStart")
      const value = (flag: string) => argv[argv.indexOf(flag) + 1]
      expect(options).toMatchObject({
        controlPlaneUrl: value("--control-plane-url"),
        machineId: value("--machine-id"),
        trustFile: value("--trust-file"),
        stateDir: value("--state-dir"),
        switchMethod: value("--switch-method"),
        logFormat: value("--log-format"),
        caCert: Option.some(value("--ca-cert")),
        bootstrapTokenFile: Option.some(value("--bootstrap-token-file")),
        renewalThresholdFraction: Option.some(Number(value("--renewal-threshold-fraction")))
      })
      const flags = flagsOf(argv)
      expect(new Set(flags).size, "a flag twice in ExecStart").toBe(flags.length)
    }))

  it.effect("the parser refuses an unknown flag and a repeated one (so the checks above can fail)", () =>
    Effect.gen(function*() {
      expect((yield* parseArgv([...REQUIRED_ARGV, "--poll-intervall", "5"]))._tag).toBe("Refused")
      expect((yield* parseArgv([...REQUIRED_ARGV, "--state-dir", "/a", "--state-dir", "/b"]))._tag).toBe("Refused")
      expect((yield* parseRun(["run", ...REQUIRED_ARGV.slice(1)]))._tag).toBe("Refused")
    }))
})

describeNeeding(moduleEvalMissing(), "packaging/nixfleet-agent.service is the evaluated module's unit", () => {
  it.live("it is what nix/reference-unit.nix renders for packaging/sample-settings.nix", () =>
    Effect.gen(function*() {
      const rendered = yield* evalJson(
        `import ./nix/reference-unit.nix { lib = import ${JSON.stringify(NIXPKGS_LIB)}; }`
      )
      expect(Fs.readFileSync(UNIT_FILE, "utf8")).toBe(rendered)
      // The same comparison as the flake's checks.<system>.reference-unit.
      expect(yield* evalJson(`import ./nix/reference-unit-check.nix { lib = import ${JSON.stringify(NIXPKGS_LIB)}; }`))
        .toBe(true)
    }), TIMEOUT)

  it.scopedLive("the check fails, naming the file, when the unit drifts from the module", () =>
    Effect.gen(function*() {
      // The check run on a copy of the tree whose unit lost a line.
      const dir = yield* tempDir
      Fs.cpSync(Path.join(REPO, "nix"), Path.join(dir, "nix"), { recursive: true })
      Fs.cpSync(Path.join(REPO, "packaging"), Path.join(dir, "packaging"), { recursive: true })
      const unit = Path.join(dir, "packaging/nixfleet-agent.service")
      Fs.writeFileSync(unit, Fs.readFileSync(unit, "utf8").replace("Type=notify\n", ""))
      const done = yield* runProcess("nix-instantiate", [
        "--eval",
        "-E",
        `import ./nix/reference-unit-check.nix { lib = import ${JSON.stringify(NIXPKGS_LIB)}; }`
      ], { cwd: dir })
      expect(done.code).not.toBe(0)
      expect(done.stderr).toContain("packaging/nixfleet-agent.service is not the unit nix/nixos-module.nix renders")
    }), TIMEOUT)
})

describeWith("systemd-analyze", "packaging/nixfleet-agent.service under systemd-analyze verify", () => {
  it.scopedLive("accepts the reference unit without a word about it", () =>
    Effect.gen(function*() {
      // verify checks that ExecStart's program exists: run it with this node in its place.
      const text = Fs.readFileSync(UNIT_FILE, "utf8").replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`)
      expect(text).toContain(`ExecStart=${process.execPath} run --control-plane-url`)
      const verified = yield* verifyUnit(text)
      expect(verified.about).toStrictEqual([])
      expect(verified.code).toBe(0)
    }), TIMEOUT)

  it.scopedLive("reads a quoted word back as the value agent-args.nix quoted", () =>
    Effect.gen(function*() {
      // systemd names the program it parsed when it refuses it: a word that is a program
      // shows how systemd unquoted it. ($ is expanded in arguments only: checked below.)
      for (const value of [`it's a "b" 100% x`, "tab\there é", "back\\slash;", "plain"]) {
        const program = `/nonexistent/${value}`
        const word = (yield* evalJson(`(import ./nix/agent-args.nix).systemdWord (${SETTINGS}).word`, {
          word: program
        })) as string
        const verified = yield* verifyUnit(`[Service]\nExecStart=${word}\n`, "word")
        const named = verified.lines.map((line) =>
          /Executable name contains special characters: (.*)$/.exec(line)?.[1] ??
            /Command (.*) is not executable/.exec(line)?.[1]
        ).filter((name) => name !== undefined)
        expect(named, word).toStrictEqual([program])
      }
      const line = (yield* evalJson(
        `(import ./nix/agent-args.nix).execStart "${process.execPath}" (${SETTINGS})`,
        EVERYTHING
      )) as string
      const verified = yield* verifyUnit(`[Service]\nExecStart=${line}\n`, "everything")
      expect(verified.lines).toStrictEqual([])
      expect(verified.code).toBe(0)
    }), TIMEOUT)
})

describe("the npm package", () => {
  const agentDir = Path.join(REPO, "packages/agent")
  /** The dev package's modules, by name (its entry point aside): none may be packed. */
  const devModules = Fs.readdirSync(Path.join(REPO, "packages/dev/src"))
    .map((file) => file.replace(/\.ts$/, ""))
    .filter((name) => name !== "index")
  const isDevTool = (file: string) =>
    /(^|\/)(dev|dev-control-plane)\//.test(file) ||
    devModules.includes(Path.basename(file).replace(/(\.d)?\.(ts|js|mjs)(\.map)?$/, ""))

  it.live("npm pack holds the command line and the library, and no dev tools", () =>
    Effect.gen(function*() {
      const packed = yield* runProcess("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: agentDir })
      expect(packed.code, packed.stderr).toBe(0)
      const [manifest] = JSON.parse(packed.stdout) as ReadonlyArray<{ readonly files: ReadonlyArray<{ path: string }> }>
      const files = (manifest?.files ?? []).map((file) => file.path)
      expect(files).toEqual(expect.arrayContaining([
        "package.json",
        "bin/nixfleet-agent.js",
        "dist/bundle/nixfleet-agent.mjs",
        "dist/index.js",
        "src/index.ts",
        "src/cli/DevCommand.ts"
      ]))
      expect(devModules).toEqual(expect.arrayContaining(["Demo", "NixFixtures"]))
      expect(files.filter(isDevTool)).toStrictEqual([])
    }), TIMEOUT)

  it("no dev tool is a runtime dependency", () => {
    const manifest = JSON.parse(Fs.readFileSync(Path.join(agentDir, "package.json"), "utf8")) as Readonly<
      Record<string, Readonly<Record<string, string>> | undefined>
    >
    const runtime = ["dependencies", "optionalDependencies", "peerDependencies"].flatMap((field) =>
      Object.keys(manifest[field] ?? {})
    )
    expect(runtime.filter((name) => name.startsWith("@nixfleet/dev"))).toStrictEqual([])
    expect(Object.keys(manifest["devDependencies"] ?? {})).toEqual(
      expect.arrayContaining(["@nixfleet/dev", "@nixfleet/dev-control-plane"])
    )
  })
})
