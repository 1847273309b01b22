/**
 * Logs an existing fleet's queries still match: `RUST_LOG` sets the level when
 * `--log-level` is absent, and every JSON line carries the reference agent's keys
 * (tracing-subscriber's `level`, `target`, `fields.message`) beside Effect's.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, FiberRef, HashSet, Logger, LogLevel } from "effect"
import * as Path from "node:path"
import { LogLevelWarning, rustLogLevel, withEnvironmentLogLevel } from "../src/node/Logging.js"
import { TARGET } from "./support/fixtures.js"
import {
  AGENT,
  eventually,
  HOST,
  publish,
  type Spawned,
  spawnScript,
  startControlPlane,
  tail,
  tempDirectory,
  TEST_MODES,
  testModeHost
} from "./support/processes.js"

const TIMEOUT = 120_000

describe("RUST_LOG", () => {
  it("gives the level of the nixfleet_agent directive, else the first plain level", () => {
    const cases: ReadonlyArray<readonly [string, LogLevel.LogLevel | undefined]> = [
      ["debug", LogLevel.Debug],
      ["WARN", LogLevel.Warning],
      ["info,hyper=debug", LogLevel.Info],
      ["hyper=debug, error , trace", LogLevel.Error],
      ["hyper=debug,nixfleet_agent=trace,info", LogLevel.Trace],
      ["nixfleet_agent::runtime::workers=debug", LogLevel.Debug],
      ["nixfleet_agent[activate{rollout=x}]=warn", LogLevel.Warning],
      ["nixfleet_agent", LogLevel.Trace],
      ["off", LogLevel.None],
      ["4", LogLevel.Debug],
      ["hyper=debug", undefined],
      ["nixfleet_agent_extra=debug", undefined],
      ["loud", undefined],
      ["", undefined]
    ]
    for (const [filter, level] of cases) expect(rustLogLevel(filter), filter).toStrictEqual(level)
  })

  /** The levels a program logs at, run as the CLI runs a command: `inner` is what `--log-level` sets. */
  const logged = (env: Record<string, string>, inner: (self: Effect.Effect<void>) => Effect.Effect<void>) =>
    Effect.gen(function*() {
      const levels: Array<string> = []
      const capture = Logger.make(({ logLevel }) => {
        levels.push(logLevel.label)
      })
      const warning = yield* inner(
        Effect.all([Effect.logTrace("t"), Effect.logDebug("d"), Effect.logInfo("i"), Effect.logWarning("w")], {
          discard: true
        }).pipe(Effect.locallyWith(FiberRef.currentLoggers, () => HashSet.make(capture)))
      ).pipe(
        Effect.zipRight(LogLevelWarning),
        withEnvironmentLogLevel,
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
      )
      return { levels, warning }
    })

  it.effect("is honoured when --log-level is absent; --log-level and NIXFLEET_AGENT_LOG_LEVEL win over it", () =>
    Effect.gen(function*() {
      const none = (self: Effect.Effect<void>) => self
      expect((yield* logged({}, none)).levels).toStrictEqual(["INFO", "WARN"])
      expect((yield* logged({ RUST_LOG: "debug" }, none)).levels).toStrictEqual(["DEBUG", "INFO", "WARN"])
      expect((yield* logged({ RUST_LOG: "warn" }, none)).levels).toStrictEqual(["WARN"])
      // @effect/cli's --log-level sets the level inside: it wins.
      const flag = (self: Effect.Effect<void>) => Logger.withMinimumLogLevel(self, LogLevel.Info)
      expect((yield* logged({ RUST_LOG: "warn" }, flag)).levels).toStrictEqual(["INFO", "WARN"])
      expect((yield* logged({ RUST_LOG: "debug", NIXFLEET_AGENT_LOG_LEVEL: "trace" }, none)).levels).toStrictEqual([
        "TRACE",
        "DEBUG",
        "INFO",
        "WARN"
      ])
      // A value that cannot be read: info, and a warning for the logger to write.
      const unreadable = yield* logged({ RUST_LOG: "loud" }, none)
      expect(unreadable.levels).toStrictEqual(["INFO", "WARN"])
      expect(unreadable.warning).toContain("RUST_LOG=\"loud\"")
      const ours = yield* logged({ NIXFLEET_AGENT_LOG_LEVEL: "chatty", RUST_LOG: "debug" }, none)
      expect(ours.levels).toStrictEqual(["INFO", "WARN"])
      expect(ours.warning).toContain("NIXFLEET_AGENT_LOG_LEVEL=\"chatty\"")
    }))
})

interface Line {
  readonly message: unknown
  readonly logLevel: string
  readonly timestamp: string
  readonly annotations: Readonly<Record<string, unknown>>
  readonly level: string
  readonly target: string
  readonly fields: Readonly<Record<string, unknown>>
}

const jsonLines = (agent: Spawned): ReadonlyArray<Line> =>
  agent.stderr().filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as Line)

const UPSTREAM_LEVELS: Readonly<Record<string, string>> = {
  FATAL: "ERROR",
  ERROR: "ERROR",
  WARN: "WARN",
  INFO: "INFO",
  DEBUG: "DEBUG",
  TRACE: "TRACE"
}

/**
 * An agent process with `env` (and @effect/cli's root flags `rootFlags` before `run`), until
 * its first warning and a rollout's acknowledgement (so that there are debug lines to see).
 */
const run = (env: Record<string, string>, rootFlags: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const dir = yield* tempDirectory
    const cp = yield* startControlPlane(Path.join(dir, "cp"))
    const host = testModeHost(dir)
    const agent = yield* spawnScript("agent", AGENT, [
      ...rootFlags,
      "run",
      "--control-plane-url",
      cp.url,
      "--machine-id",
      HOST,
      "--trust-file",
      cp.trustFile,
      "--state-dir",
      host.stateDir,
      "--current-system-path",
      host.currentSystemPath,
      "--health-checks-file",
      Path.join(dir, "no-health-checks.json"),
      "--ssh-host-key-file",
      Path.join(dir, "no-ssh-host-key")
    ], { ...TEST_MODES, ...env })
    // A warning every start logs (plain http on loopback), then a rollout's worth of lines.
    yield* eventually(
      "the agent's first warning",
      Effect.sync(() => jsonLines(agent).some((line) => line.logLevel === "WARN")),
      30_000,
      Effect.sync(() => tail(agent.stderr()))
    )
    yield* publish(cp, TARGET, 0.02)
    yield* eventually(
      "the rollout's acknowledgement to be delivered",
      Effect.map(
        Effect.orElseSucceed(
          Effect.tryPromise(() => fetch(`${cp.url}/v1/operator/events`).then((r) => r.json() as Promise<unknown>)),
          () => []
        ),
        (events) => Array.isArray(events) && events.length > 0
      ),
      // Past a first failed fetch the manifests are polled again 30 s later.
      60_000,
      Effect.sync(() => tail(agent.stderr()))
    )
    return jsonLines(agent)
  })

describe("run's JSON lines", () => {
  it.scopedLive(
    "RUST_LOG=debug: debug lines, each with Effect's keys and the reference agent's",
    () =>
      Effect.gen(function*() {
        const lines = yield* run({ RUST_LOG: "debug" })
        expect(lines.some((line) => line.logLevel === "DEBUG")).toBe(true)
        for (const line of lines) {
          expect(typeof line.message === "string" || Array.isArray(line.message)).toBe(true)
          expect(Object.keys(line)).toEqual(
            expect.arrayContaining(["message", "logLevel", "timestamp", "annotations", "level", "target", "fields"])
          )
          expect(line.level).toBe(UPSTREAM_LEVELS[line.logLevel])
          expect(line.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
          expect(line.fields).toStrictEqual({
            ...line.annotations,
            message: Array.isArray(line.message) ? line.message.join(" ") : line.message
          })
          expect(line.target).toBe(
            typeof line.annotations["target"] === "string" ? line.annotations["target"] : "nixfleet_agent"
          )
        }
      }),
    TIMEOUT
  )

  it.scopedLive(
    "RUST_LOG=warn: nothing below a warning; --log-level, when given, wins over it",
    () =>
      Effect.gen(function*() {
        const quiet = yield* run({ RUST_LOG: "warn" })
        expect(quiet.length).toBeGreaterThan(0)
        expect(quiet.filter((line) => line.level !== "WARN" && line.level !== "ERROR")).toStrictEqual([])

        // @effect/cli's --log-level is a flag of the command line itself: before the subcommand.
        const flagged = yield* run({ RUST_LOG: "warn" }, ["--log-level", "info"])
        expect(flagged.some((line) => line.level === "INFO")).toBe(true)
        expect(flagged.some((line) => line.level === "DEBUG")).toBe(false)
      }),
    TIMEOUT
  )
})
