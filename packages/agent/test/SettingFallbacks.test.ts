/**
 * A value of an optional setting that cannot be used never stops the agent (a unit that
 * exits on it restarts for ever): the setting takes its default, the agent logs one ERROR
 * line for it and `status` shows it. Read through `Config` for every setting, and as
 * systemd runs the agent: a separate process, bad values given as flags or in the
 * environment, its status asked with `nixfleet-agent status`.
 */
import { describe, expect, it } from "@effect/vitest"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { ConfigProvider, Effect, Either, Schema } from "effect"
import { config as agentConfig } from "../src/config/AgentConfig.js"
import { pipelineConfig } from "../src/config/PipelineConfig.js"
import { StatusReportJson } from "../src/status/StatusReport.js"
import { stateDirectory } from "./support/agentHarness.js"
import { AGENT, eventually, REPO, spawnScript, tail } from "./support/processes.js"
import { makeSigner, writeTrustFile } from "./support/signing.js"

const TIMEOUT = 120_000

const read = (entries: Readonly<Record<string, string>>) => {
  const provider = ConfigProvider.fromMap(
    new Map(Object.entries({ NIXFLEET_AGENT_MACHINE_ID: "web-01", NIXFLEET_AGENT_CP_URL: "https://cp", ...entries }))
  )
  const run = <A, E>(effect: Effect.Effect<A, E>) =>
    Either.getOrThrow(Effect.runSync(Effect.either(Effect.withConfigProvider(effect, provider))))
  return { agent: run(agentConfig), pipeline: run(pipelineConfig) }
}

/** Each setting, a value it cannot use, the default it runs with and what the warning says it does. */
const UNUSABLE: ReadonlyArray<{
  readonly key: string
  readonly value: string
  readonly field: string
  readonly fallback: unknown
  readonly instead: string
}> = [
  {
    key: "NIXFLEET_AGENT_MANIFEST_FRESHNESS_WINDOW_SECS",
    value: "0",
    field: "manifestFreshnessWindowSecs",
    fallback: 3600,
    instead: "the default 3600 is used"
  },
  {
    key: "NIXFLEET_AGENT_SUSTAINED_FAILURE_SECS",
    value: "soon",
    field: "sustainedFailureSecs",
    fallback: 120,
    instead: "the default 120 is used"
  },
  {
    key: "NIXFLEET_AGENT_OUTBOX_NONDURABLE_CAP",
    value: "-1",
    field: "outboxNonDurableCap",
    fallback: 10_000,
    instead: "the default 10000 is used"
  },
  {
    key: "NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION",
    value: "1.5",
    field: "renewalThresholdFraction",
    fallback: null,
    instead: "certificate renewal is disabled"
  },
  {
    key: "NIXFLEET_AGENT_STATE_DIR",
    value: " ",
    field: "stateDir",
    fallback: "/var/lib/nixfleet-agent",
    instead: "the default /var/lib/nixfleet-agent is used"
  },
  {
    key: "NIXFLEET_AGENT_CURRENT_SYSTEM_PATH",
    value: "  ",
    field: "currentSystemPath",
    fallback: "/run/current-system",
    instead: "the default /run/current-system is used"
  },
  {
    key: "NIXFLEET_AGENT_HEALTH_CHECKS_FILE",
    value: "  ",
    field: "healthChecksFile",
    fallback: "/etc/nixfleet/agent/health-checks.json",
    instead: "the default /etc/nixfleet/agent/health-checks.json is used"
  },
  {
    key: "NIXFLEET_AGENT_SSH_HOST_KEY_FILE",
    value: "  ",
    field: "sshHostKeyFile",
    fallback: "/etc/ssh/ssh_host_ed25519_key",
    instead: "the default /etc/ssh/ssh_host_ed25519_key is used"
  },
  {
    key: "NIXFLEET_AGENT_SYSTEM_PROFILE",
    value: "  ",
    field: "systemProfile",
    fallback: "/nix/var/nix/profiles/system",
    instead: "the default /nix/var/nix/profiles/system is used"
  },
  {
    key: "NIXFLEET_AGENT_SWITCH_LOCK_PATH",
    value: "  ",
    field: "switchLockPath",
    fallback: "/run/nixos/switch-to-configuration.lock",
    instead: "the default /run/nixos/switch-to-configuration.lock is used"
  },
  {
    key: "NIXFLEET_AGENT_STORE_DIR",
    value: "  ",
    field: "storeDir",
    fallback: "/nix/store",
    instead: "the default /nix/store is used"
  },
  {
    key: "NIXFLEET_AGENT_SWITCH_METHOD",
    value: "teleport",
    field: "switchMethod",
    fallback: process.platform === "darwin" ? "darwin" : "systemd-run",
    instead: `the default ${process.platform === "darwin" ? "darwin" : "systemd-run"} is used`
  },
  {
    key: "NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS",
    value: "400",
    field: "verifyTimeoutSecs",
    fallback: 300,
    instead: "the default 300 is used"
  },
  {
    key: "NIXFLEET_AGENT_REALISE_TIMEOUT_SECS",
    value: "1.5",
    field: "realiseTimeoutSecs",
    fallback: 3600,
    instead: "the default 3600 is used"
  },
  { key: "NIXFLEET_AGENT_LOG_FORMAT", value: "xml", field: "", fallback: null, instead: "the default json is used" },
  {
    key: "NIXFLEET_AGENT_METRICS_LISTEN",
    value: "127.0.0.1:99999",
    field: "",
    fallback: null,
    instead: "the metrics endpoint is off"
  }
]

describe("settings read through Config", () => {
  it("an unusable value is its default and one warning; a usable one is kept, without warning", () => {
    for (const { fallback, field, instead, key, value } of UNUSABLE) {
      const { agent, pipeline } = read({ [key]: value })
      const values: Record<string, unknown> = { ...pipeline, ...agent }
      if (field !== "") expect(values[field], key).toStrictEqual(fallback)
      expect(agent.settingWarnings, key).toHaveLength(1)
      expect(agent.settingWarnings[0]?.setting, key).toContain(key)
      expect(agent.settingWarnings[0]?.value, key).toBe(value)
      expect(agent.settingWarnings[0]?.message, key).toMatch(new RegExp(`${JSON.stringify(value)} .*; ${instead}$`))
    }
    const good = read({
      NIXFLEET_AGENT_MANIFEST_FRESHNESS_WINDOW_SECS: "60",
      NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION: "0.25",
      NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS: "359",
      NIXFLEET_AGENT_SWITCH_METHOD: "direct",
      NIXFLEET_AGENT_STATE_DIR: "/srv/agent",
      NIXFLEET_AGENT_METRICS_LISTEN: "[::1]:9100",
      NIXFLEET_AGENT_LOG_FORMAT: "pretty"
    })
    expect(good.agent).toMatchObject({
      manifestFreshnessWindowSecs: 60,
      renewalThresholdFraction: 0.25,
      stateDir: "/srv/agent",
      settingWarnings: []
    })
    expect(good.pipeline).toMatchObject({ verifyTimeoutSecs: 359, switchMethod: "direct", stateDir: "/srv/agent" })
    // An empty value is no value (systemd's `Environment=X=`): the default, no warning.
    const empty = read({ NIXFLEET_AGENT_STATE_DIR: "", NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION: "" })
    expect(empty.agent).toMatchObject({ stateDir: "/var/lib/nixfleet-agent", renewalThresholdFraction: null })
    expect(empty.agent.settingWarnings).toStrictEqual([])
    // Required settings still refuse: without them the agent cannot work at all.
    const missing = Effect.runSync(
      Effect.either(Effect.withConfigProvider(agentConfig, ConfigProvider.fromMap(new Map())))
    )
    expect(Either.isLeft(missing)).toBe(true)
  })
})

/** The JSON log lines of a process's stderr. */
const jsonLines = (lines: ReadonlyArray<string>) =>
  lines.flatMap((line) => {
    if (!line.startsWith("{")) return []
    return [JSON.parse(line) as { readonly level?: string; readonly message?: string; readonly logLevel?: string }]
  })

const levelOf = (entry: { readonly level?: string; readonly logLevel?: string }) => entry.logLevel ?? entry.level

const status = (stateDir: string, json: boolean) =>
  runProcess(
    process.execPath,
    [
      AGENT,
      "status",
      ...(json ? ["--json"] : []),
      "--state-dir",
      stateDir
    ],
    { cwd: REPO }
  )

/**
 * `run` with `args` and `env`: it starts (boot recovery done: nothing listens on port 1,
 * so it gives up at once and the workers keep retrying), answers `status` with the
 * warnings, and stops with 0 on SIGTERM. Returns the setting ERROR lines, the live
 * report's warnings and the human status.
 */
const runWith = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>) =>
  Effect.gen(function*() {
    const dir = yield* stateDirectory
    const trustFile = writeTrustFile(dir, makeSigner())
    const agent = yield* spawnScript("agent", AGENT, [
      "run",
      "--control-plane-url",
      "http://127.0.0.1:1",
      "--machine-id",
      "web-01",
      "--state-dir",
      dir,
      "--trust-file",
      trustFile,
      ...args
    ], env)
    yield* eventually(
      "boot recovery done",
      Effect.sync(() => agent.stderr().some((line) => line.includes("boot recovery done"))),
      60_000,
      Effect.sync(() => tail(agent.stderr()))
    )
    const asJson = yield* status(dir, true)
    expect(asJson.code, asJson.stderr).toBe(0)
    const report = yield* Effect.orDie(Schema.decode(StatusReportJson)(asJson.stdout.trim()))
    const human = yield* status(dir, false)
    agent.signal("SIGTERM")
    const exit = yield* agent.awaitExit(40_000)
    expect(exit, tail(agent.stderr())).toStrictEqual({ code: 0, signal: null })
    // Stopped, `status` reads the last report: the warnings are still there.
    const stopped = yield* status(dir, false)
    const errors = jsonLines(agent.stderr()).filter((entry) =>
      levelOf(entry) === "ERROR" && (entry.message ?? "").startsWith("setting ignored")
    )
    return { errors, report, human: human.stdout, stopped: stopped.stdout, stderr: agent.stderr() }
  })

describe("nixfleet-agent run with unusable optional values", () => {
  it.scopedLive(
    "an out-of-range --renewal-threshold-fraction: it runs, renewal off, one ERROR line, a warning in status",
    () =>
      Effect.gen(function*() {
        const { errors, human, report, stopped } = yield* runWith(["--renewal-threshold-fraction", "1.5"], {})
        expect(errors.map((entry) => entry.message)).toStrictEqual([
          "setting ignored: --renewal-threshold-fraction \"1.5\" must be a number strictly between 0 and 1; certificate renewal is disabled"
        ])
        expect(report.source).toBe("live")
        expect(report.settingWarnings?.map((warning) => warning.setting)).toStrictEqual([
          "--renewal-threshold-fraction (NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION)"
        ])
        expect(human).toContain("setting ignored: --renewal-threshold-fraction \"1.5\"")
        expect(stopped).toContain("not running")
        expect(stopped).toContain("setting ignored: --renewal-threshold-fraction \"1.5\"")
      }),
    TIMEOUT
  )

  it.scopedLive(
    "every optional flag given a value it cannot use: it runs on the defaults, one ERROR line and one status warning each",
    () =>
      Effect.gen(function*() {
        const flags = [
          ["--manifest-freshness-window-secs", "0"],
          ["--sustained-failure-secs", "soon"],
          ["--verify-timeout-secs", "400"],
          ["--realise-timeout-secs", "0"],
          ["--switch-method", "teleport"],
          ["--log-format", "xml"],
          ["--metrics-listen", "127.0.0.1:99999"],
          ["--ssh-host-key-file", " "],
          ["--current-system-path", " "],
          ["--system-profile", " "],
          ["--switch-lock-path", " "],
          ["--health-checks-file", " "]
        ] as const
        // Not a setting's value but an output that cannot be had: an ERROR line, no exit either.
        const textfile = ["--metrics-textfile", "/nonexistent/metrics.prom"]
        const { errors, report, stderr } = yield* runWith([...flags.flat(), ...textfile], {})
        expect(
          jsonLines(stderr).filter((entry) =>
            levelOf(entry) === "ERROR" &&
            (entry.message ?? "").includes("/nonexistent is not writable; the agent runs without it")
          )
        ).toHaveLength(1)
        // --log-format xml fell back to json: every line parsed above is the proof.
        expect(jsonLines(stderr).length).toBeGreaterThan(0)
        const named = (flag: string) => errors.filter((entry) => (entry.message ?? "").includes(`${flag} `))
        for (const [flag] of flags) expect(named(flag), flag).toHaveLength(1)
        expect(errors).toHaveLength(flags.length)
        expect(report.settingWarnings?.map((warning) => warning.setting.split(" ")[0]).sort()).toStrictEqual(
          flags.map(([flag]) => flag).sort()
        )
      }),
    TIMEOUT
  )

  it.scopedLive(
    "the same in the environment (and the settings only the environment sets): it runs, one ERROR line each",
    () =>
      Effect.gen(function*() {
        const env = {
          NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION: "2",
          NIXFLEET_AGENT_SWITCH_METHOD: "bogus",
          NIXFLEET_AGENT_LOG_FORMAT: "yaml",
          NIXFLEET_AGENT_METRICS_LISTEN: "nowhere",
          NIXFLEET_AGENT_OUTBOX_NONDURABLE_CAP: "0",
          NIXFLEET_AGENT_STORE_DIR: " "
        }
        const { errors, report } = yield* runWith([], env)
        expect(errors).toHaveLength(Object.keys(env).length)
        expect(report.settingWarnings?.map((warning) => warning.value).sort()).toStrictEqual(
          Object.values(env).sort()
        )
      }),
    TIMEOUT
  )
})
