/**
 * The unit the NixOS module renders, run by a real systemd (this machine's 252, as PID 1 of
 * a box: `shared/tools/systemd-box`, one box for the file). The unit comes from the module's
 * evaluation by nixpkgs' module system, its ExecStart pointed at the built CLI; the dev
 * control plane runs on this side of the box (the box shares the network). Shown here:
 * `systemctl start` returns on READY=1 and StatusText follows the phases; the watchdog is
 * pinged, and a wedged reducer gets the agent killed and restarted; `systemctl stop` exits
 * 0, also mid-rollout and mid-switch; a SIGKILLed agent is restarted and resumes its
 * rollout with no event lost or duplicated, and so is an agent whose sender dies
 * mid-rollout (the `NIXFLEET_AGENT_TEST_FAIL_WORKER` gate: exit 70); the production switch method, `systemd-run`,
 * detects every outcome of a real switch as `direct` does and leaves no transient unit (and
 * a fire waits out an ended switch unit that its client still holds), and
 * the agent survives a switch that restarts it, and an activation that changes the agent's
 * unit (a new package, flag and environment, as NixOS's switch handles a changed unit) has
 * the new agent running within a minute, the switch ended and the rollout converged once;
 * the reference agent's command line reaches READY; the journal gets one JSON object per
 * line. The module's default unit is the sandboxed one (ProtectSystem=strict, no
 * capabilities, Nix through nix-daemon, started here in the box): rollouts converge under
 * it, the switch and rollback running with full rights in their transient units. The
 * agent runs as users run it: `bin/nixfleet-agent.js` on the bundle, built from the sources.
 *
 * The evaluated unit gets a drop-in, never a change to the module: RestartSec=1 (the
 * module's 30 s would only slow the restart tests down), an ExecStopPost that records how
 * each run of the agent ended (systemd's own log goes to the box's console, not to its
 * journal), and, for the reference command line, its ExecStart (for the dying sender, its
 * test gate's Environment=).
 *
 * A rollout is published while the agent is stopped, then the agent starts: it learns a new
 * rollout's policy from its manifest poll, which runs at start and then every 30 s, and a
 * dispatch the dev control plane hands to a long-poll that a stop then abandons is not
 * handed out again (the reference control plane re-queues it on the boot heartbeat).
 */
import { expect, layer } from "@effect/vitest"
import { boot, buildClosure, makeSandbox, type NixSandbox, switchRuns } from "@nixfleet/dev/NixFixtures"
import { Context, Effect, Layer, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import {
  agentPackage,
  agentUnit,
  type Box,
  boxMissing,
  cliArgv,
  eventually,
  installCli,
  startBox,
  tempDirectory,
  UNIT
} from "../../../scripts/systemd/box.js"
import { changeUnitCommands } from "../../../scripts/systemd/nixosSwitch.js"
import { parseSystemdRunOutput } from "../src/pipeline/phases/Fire.js"
import { PRIOR, TARGET } from "./support/fixtures.js"
import { describeNeeding } from "./support/moduleEval.js"
import { unusedPort } from "./support/ports.js"
import {
  type Accepted,
  type ControlPlane,
  events,
  HOST,
  hostRecord,
  publish,
  startControlPlane,
  TEST_MODES
} from "./support/processes.js"

const TIMEOUT = 120_000

/**
 * The test drop-in: a short RestartSec, one line per end of the agent's process in `exits`
 * (`$SERVICE_RESULT $EXIT_CODE $EXIT_STATUS`, e.g. `success exited 0`), and the test's
 * directories (under /tmp, which the hardened unit's PrivateTmp replaces) bound into the
 * unit's namespace: the state directories, the sandbox's profile, lock and current-system.
 */
const dropIn = (host: AgentHost, { dir, sandbox }: Pick<Env, "dir" | "sandbox">) =>
  "[Service]\nRestartSec=1\n" +
  `ExecStopPost=/bin/sh -c 'echo "$$SERVICE_RESULT $$EXIT_CODE $$EXIT_STATUS" >> ${host.exits}'\n` +
  `BindPaths=${dir} ${sandbox.root}\n`

/** How each run of the agent ended, oldest first. */
const exits = (host: AgentHost): ReadonlyArray<string> =>
  Fs.existsSync(host.exits) ? Fs.readFileSync(host.exits, "utf8").split("\n").filter((line) => line !== "") : []

// ---------------------------------------------------------------------------------------
// The box, the closures and the stand-in agent package, shared by the file
// ---------------------------------------------------------------------------------------

interface Closures {
  /** What the host runs before each rollout. */
  readonly booted: string
  readonly flips: string
  readonly exits3: string
  readonly hangs: string
  readonly flipsSlowly: string
  /** Flips after 6 s: long enough to stop the agent in the middle. */
  readonly landsLate: string
  readonly restartsAgent: string
  readonly reloadsDaemon: string
}

/**
 * A host whose next system changes the agent's unit, built before the box starts (the box
 * may not see store paths added later): another agent package, a metrics listener and a
 * tag, in the unit the module renders for them, which the closure's switch installs and
 * handles as NixOS's switch does.
 */
interface Upgrade {
  readonly host: AgentHost
  readonly closure: string
  /** The new agent package. */
  readonly pkg: string
  readonly metricsPort: number
  /** Written by the switch once it got past the agent's restart. */
  readonly switched: string
}

interface Env {
  readonly box: Box
  /** Shared with the box: state directories, the control planes, the agent package. */
  readonly dir: string
  /** The installed command line (`bin/nixfleet-agent.js` on the bundle) the packages run. */
  readonly cli: string
  readonly pkg: string
  readonly sandbox: NixSandbox
  readonly closures: Closures
  readonly upgrade: Upgrade
}

class SystemdEnv extends Context.Tag("test/SystemdEnv")<SystemdEnv, Env>() {}

const envLayer = Layer.scoped(
  SystemdEnv,
  Effect.gen(function*() {
    const dir = yield* tempDirectory("nixfleet-systemd-")
    const cli = yield* installCli(dir)
    const sandbox = yield* makeSandbox
    const build = (name: string, behaviour: Parameters<typeof buildClosure>[1]["switch"]) =>
      buildClosure(sandbox, { name: `nixos-system-web-01-${name}`, switch: behaviour })
    const closures: Closures = {
      booted: yield* build("booted", { _tag: "Flip" }),
      flips: yield* build("flips", { _tag: "Flip" }),
      exits3: yield* build("exits3", { _tag: "Exit", code: 3 }),
      hangs: yield* build("hangs", { _tag: "Hang" }),
      flipsSlowly: yield* build("slow", { _tag: "Flip", delayMs: 2_500 }),
      landsLate: yield* build("late", { _tag: "Flip", delayMs: 6_000 }),
      restartsAgent: yield* build("restarts", {
        _tag: "FlipThenRun",
        commands: [["/usr/bin/systemctl", "daemon-reload"], ["/usr/bin/systemctl", "restart", `${UNIT}.service`]]
      }),
      reloadsDaemon: yield* build("reloads", {
        _tag: "FlipThenRun",
        commands: [["/usr/bin/systemctl", "daemon-reload"]]
      })
    }
    const upgradeHost = yield* makeHost(dir)
    const metricsPort = yield* unusedPort
    const upgradedPkg = agentPackage(dir, cli, "nixfleet-agent-upgraded")
    const newUnit = yield* agentUnit(
      nixSettingsFor(sandbox, upgradeHost, { metrics: { listen: `127.0.0.1:${metricsPort}` }, tags: ["upgraded"] }),
      upgradedPkg
    )
    const switched = Path.join(dir, "upgrade-switched")
    const upgrade: Upgrade = {
      host: upgradeHost,
      closure: yield* build("upgrade", {
        _tag: "FlipThenRun",
        commands: changeUnitCommands(`${UNIT}.service`, newUnit, switched)
      }),
      pkg: upgradedPkg,
      metricsPort,
      switched
    }
    yield* boot(sandbox, closures.booted)
    // A hung switch's pid is the box's, not ours: the sandbox must not signal it on cleanup
    // (the box's stop ends it).
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const name of Fs.readdirSync(sandbox.markersDir)) {
          if (name.startsWith("hang-")) Fs.rmSync(Path.join(sandbox.markersDir, name), { force: true })
        }
      })
    )
    const pkg = agentPackage(dir, cli)
    const box = yield* startBox([dir, sandbox.root], dir)
    // The hardened unit reaches the store through nix-daemon (NIX_REMOTE=daemon), as on NixOS.
    yield* box.run(["systemctl", "start", "nix-daemon.socket"])
    return { box, dir, cli, pkg, sandbox, closures, upgrade }
  })
)

// ---------------------------------------------------------------------------------------
// One agent unit per test
// ---------------------------------------------------------------------------------------

let hosts = 0

interface AgentHost {
  readonly cp: ControlPlane
  readonly stateDir: string
  readonly currentSystem: string
  readonly exits: string
}

/** A control plane (this side of the box) and a state directory outside /var/lib, under `dir`. */
const makeHost = (dir: string) =>
  Effect.gen(function*() {
    const root = Path.join(dir, `host-${hosts++}`)
    Fs.mkdirSync(root)
    const cp = yield* startControlPlane(Path.join(root, "cp")).pipe(Effect.orDie)
    const stateDir = Path.join(root, "state")
    Fs.mkdirSync(stateDir)
    const currentSystem = Path.join(root, "current-system")
    Fs.symlinkSync(`/nix/store/${PRIOR}`, currentSystem)
    return { cp, stateDir, currentSystem, exits: Path.join(root, "exits") } satisfies AgentHost
  })

const newHost = Effect.flatMap(SystemdEnv, ({ dir }) => makeHost(dir))

/** The module's settings for `host`: plain HTTP to the dev control plane, no host key. */
const settingsFor = (host: AgentHost, extra: Readonly<Record<string, unknown>> = {}) => ({
  controlPlaneUrl: host.cp.url,
  machineId: HOST,
  trustFile: host.cp.trustFile,
  tls: { clientCert: null, clientKey: null },
  stateDir: host.stateDir,
  sshHostKeyFile: Path.join(host.stateDir, "..", "no-ssh-host-key"),
  ...extra
})

/** The module's settings for a real-Nix rollout through systemd-run, on the sandbox. */
const nixSettingsFor = (sandbox: NixSandbox, host: AgentHost, extra: Readonly<Record<string, unknown>> = {}) =>
  settingsFor(host, {
    stateDir: host.stateDir,
    switchMethod: "systemd-run",
    verifyTimeoutSecs: 20,
    environment: { NIXFLEET_AGENT_PROBE_TEST_MODE: "1", NIX_CONFIG: "substituters =", HOME: sandbox.home },
    extraArgs: [
      "--current-system-path",
      sandbox.currentSystem,
      "--system-profile",
      sandbox.profile,
      "--switch-lock-path",
      sandbox.lockPath
    ],
    ...extra
  })

/** Installs the evaluated unit and the test drop-in; stopped and reset when the test ends. */
const installAgent = (host: AgentHost, settings: Readonly<Record<string, unknown>>, extraDropIn = "") =>
  Effect.gen(function*() {
    const env = yield* SystemdEnv
    const { box } = env
    const unit = yield* agentUnit(settings, env.pkg)
    yield* box.install(`${UNIT}.service`, unit, dropIn(host, env) + extraDropIn)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* box.exec([
          "systemctl",
          "stop",
          `${UNIT}.service`,
          "nixfleet-switch.service",
          "nixfleet-rollback.service"
        ])
        yield* box.exec(["systemctl", "reset-failed"])
      })
    )
    return unit
  })

const show = (properties: ReadonlyArray<string>) =>
  Effect.flatMap(SystemdEnv, ({ box }) => box.show(`${UNIT}.service`, properties))

/** The agent's own journal lines, and systemd's about the unit. */
const diagnostics = Effect.gen(function*() {
  const { box } = yield* SystemdEnv
  const status = yield* box.exec(["systemctl", "status", "--no-pager", "-n", "0", `${UNIT}.service`])
  const journal = yield* box.exec(["journalctl", "-u", `${UNIT}.service`, "--no-pager", "-n", "40", "-o", "cat"])
  return `${status.stdout}\njournal (tail):\n${journal.stdout}`
})

const awaitState = (host: AgentHost, rolloutId: string, state: string, timeoutMs = 60_000) =>
  eventually(
    `${rolloutId} to be ${state}`,
    Effect.map(Effect.orDie(hostRecord(host.cp, rolloutId)), (record) => record?.state === state),
    timeoutMs,
    Effect.zipWith(
      Effect.map(Effect.orDie(hostRecord(host.cp, rolloutId)), (record) => `record: ${JSON.stringify(record)}`),
      diagnostics,
      (a, b) => `${a}\n${b}`
    )
  )

/**
 * Every event reached the control plane once under its (rolloutId, seq): the first
 * delivery of each seq is 1..n in order, and a resend is only ever flagged a duplicate of
 * an identical body.
 */
const expectEachEventOnce = (accepted: Accepted, rolloutId: string) => {
  const bodies = new Map<number, string>()
  for (const { duplicate, envelope } of accepted) {
    expect(envelope.rolloutId).toBe(rolloutId)
    const body = JSON.stringify(envelope.event)
    const seen = bodies.get(envelope.event.seq)
    if (duplicate) expect(seen, `seq ${envelope.event.seq} resent under another body`).toBe(body)
    else {
      expect(seen, `seq ${envelope.event.seq} delivered twice`).toBeUndefined()
      bodies.set(envelope.event.seq, body)
    }
  }
  const fresh = accepted.filter((entry) => !entry.duplicate).map((entry) => entry.envelope.event)
  expect(fresh.map((event) => event.seq)).toStrictEqual(fresh.map((_, i) => i + 1))
  return fresh
}

interface LogLine {
  readonly message: string
  readonly logLevel: string
  readonly annotations: Readonly<Record<string, unknown>>
}

const LogLine = Schema.parseJson(Schema.Struct({
  message: Schema.String,
  logLevel: Schema.String,
  timestamp: Schema.String,
  annotations: Schema.Record({ key: Schema.String, value: Schema.Unknown })
}))

/** The agent's journal: every line one JSON object, decoded (a line that is not fails the test). */
const agentLog = Effect.gen(function*() {
  const { box } = yield* SystemdEnv
  const lines = yield* box.journal(UNIT)
  return lines.map((line): LogLine => {
    const decoded = Schema.decodeUnknownEither(LogLine)(line)
    if (decoded._tag === "Left") throw new Error(`a journal line of the agent is not one JSON log object: ${line}`)
    return decoded.right
  })
})

/** Units named nixfleet-switch / nixfleet-rollback that systemd still has loaded. */
const transientUnits = Effect.gen(function*() {
  const { box } = yield* SystemdEnv
  const listed = yield* box.run([
    "systemctl",
    "list-units",
    "--all",
    "--plain",
    "--no-legend",
    "nixfleet-switch.service",
    "nixfleet-rollback.service"
  ])
  return listed.split("\n").filter((line) => line.trim() !== "")
})

/** The journal is the box's: the cursor keeps one test's lines from another's. */
const rotateJournal = Effect.flatMap(
  SystemdEnv,
  ({ box }) => Effect.asVoid(box.exec(["journalctl", "--rotate", "--vacuum-files=1"]))
)

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

describeNeeding(boxMissing(), "the module's unit under a real systemd", () => {
  layer(envLayer, { excludeTestServices: true, timeout: "240 seconds" })((it) => {
    it.scoped(
      "start returns on READY=1; StatusText follows the phases; the watchdog is pinged; the journal gets JSON lines",
      () =>
        Effect.gen(function*() {
          const { box } = yield* SystemdEnv
          yield* rotateJournal
          const host = yield* newHost
          yield* installAgent(
            host,
            settingsFor(host, {
              watchdogSec: "4s",
              environment: TEST_MODES,
              extraArgs: ["--current-system-path", host.currentSystem]
            })
          )
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          // start returned: READY=1 came, with the first STATUS= (Type=notify would time out otherwise).
          const started = yield* show(["ActiveState", "SubState", "StatusText", "WatchdogUSec", "Type"])
          expect(started).toStrictEqual({
            ActiveState: "active",
            SubState: "running",
            StatusText: "idle: no rollout yet",
            WatchdogUSec: "4s",
            Type: "notify"
          })
          const log = yield* agentLog
          expect(log.some((line) => line.message === "boot recovery done")).toBe(true)

          const watchdog = Number((yield* show(["WatchdogTimestampMonotonic"]))["WatchdogTimestampMonotonic"])
          yield* eventually(
            "WatchdogTimestamp to advance",
            Effect.map(show(["WatchdogTimestampMonotonic"]), (p) => Number(p["WatchdogTimestampMonotonic"]) > watchdog),
            6_000,
            diagnostics
          )

          yield* box.run(["systemctl", "stop", `${UNIT}.service`])
          const { rolloutId } = yield* publish(host.cp, TARGET, 0.1).pipe(Effect.orDie)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          const statuses: Array<string> = []
          yield* eventually(
            `StatusText to say ${rolloutId} converged`,
            Effect.map(show(["StatusText"]), ({ StatusText }) => {
              const status = StatusText ?? ""
              if (statuses.at(-1) !== status) statuses.push(status)
              return status === `idle: ${rolloutId} Converged`
            }),
            45_000,
            Effect.map(diagnostics, (d) => `statuses seen: ${JSON.stringify(statuses)}\n${d}`)
          )
          const soaking = statuses.findIndex((status) => status.startsWith(`soaking ${rolloutId} until `))
          expect(soaking, JSON.stringify(statuses)).toBeGreaterThanOrEqual(0)
          expect(statuses.indexOf(`idle: ${rolloutId} Converged`)).toBeGreaterThan(soaking)

          const lines = yield* agentLog
          expect(lines.filter((line) => line.annotations["rolloutId"] === rolloutId).length).toBeGreaterThan(0)
          expect(
            lines.some((line) => line.message.startsWith("rollout ") && line.annotations["rolloutId"] === rolloutId)
          )
            .toBe(true)
        }),
      TIMEOUT
    )

    it.scoped(
      "a wedged reducer stops the watchdog pings: systemd kills the agent and starts it again",
      () =>
        Effect.gen(function*() {
          const { box } = yield* SystemdEnv
          yield* rotateJournal
          const host = yield* newHost
          yield* installAgent(
            host,
            settingsFor(host, {
              watchdogSec: "2s",
              environment: { ...TEST_MODES, NIXFLEET_AGENT_TEST_WEDGE_REDUCER_AFTER_SECS: "3" },
              extraArgs: ["--current-system-path", host.currentSystem]
            })
          )
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          const first = (yield* show(["MainPID"]))["MainPID"]
          yield* eventually(
            "a restart after the watchdog fired",
            Effect.map(show(["NRestarts", "MainPID", "ActiveState"]), (p) =>
              Number(p["NRestarts"]) >= 1 && p["MainPID"] !== first && p["MainPID"] !== "0" &&
              p["ActiveState"] === "active"),
            30_000,
            diagnostics
          )
          // systemd's watchdog ended it: SIGABRT (WatchdogSignal), result `watchdog`.
          expect(exits(host)[0]).toBe("watchdog killed ABRT")
          const log = yield* agentLog
          expect(
            log.some((line) =>
              line.logLevel === "WARN" && line.message.includes("NIXFLEET_AGENT_TEST_WEDGE_REDUCER_AFTER_SECS is on")
            )
          ).toBe(true)
        }),
      TIMEOUT
    )

    it.scoped(
      "stop mid-soak exits 0 within TimeoutStopSec; SIGKILL of the main process: restarted, the rollout resumed, every event once",
      () =>
        Effect.gen(function*() {
          const { box } = yield* SystemdEnv
          yield* rotateJournal
          const host = yield* newHost
          yield* installAgent(
            host,
            settingsFor(host, {
              environment: TEST_MODES,
              extraArgs: ["--current-system-path", host.currentSystem]
            })
          )
          const { rolloutId } = yield* publish(host.cp, TARGET, 0.3).pipe(Effect.orDie)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          yield* awaitState(host, rolloutId, "Soaking")

          // A stop in the middle of the rollout: the drain, then exit 0 (not systemd's SIGKILL at TimeoutStopSec).
          yield* box.run(["systemctl", "stop", `${UNIT}.service`])
          expect((yield* show(["ActiveState"]))["ActiveState"]).toBe("inactive")
          expect(exits(host)).toStrictEqual(["success exited 0"])

          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          const before = (yield* show(["MainPID"]))["MainPID"]
          yield* box.run(["systemctl", "kill", "--kill-who=main", "--signal=SIGKILL", `${UNIT}.service`])
          yield* eventually(
            "Restart=always to start the agent again",
            Effect.map(show(["MainPID", "ActiveState", "NRestarts"]), (p) =>
              p["MainPID"] !== before && p["MainPID"] !== "0" && p["ActiveState"] === "active" &&
              p["NRestarts"] === "1"),
            20_000,
            diagnostics
          )
          expect(exits(host)).toStrictEqual(["success exited 0", "signal killed KILL"])
          expect((yield* hostRecord(host.cp, rolloutId).pipe(Effect.orDie))?.state).toBe("Soaking")
          yield* awaitState(host, rolloutId, "Converged")
          const fresh = expectEachEventOnce(yield* events(host.cp).pipe(Effect.orDie), rolloutId)
          expect(fresh.map((event) =>
            event.kind
          )).toStrictEqual([
            "DispatchAck",
            "ActivationStarted",
            "ActivationCompleted",
            "Converged"
          ])
          const log = yield* agentLog
          expect(log.filter((line) => line.message === "rollout rehydrated from the control plane").length)
            .toBeGreaterThanOrEqual(2)
        }),
      TIMEOUT
    )

    it.scoped(
      "a worker that dies mid-rollout: exit 70, systemd starts the agent again, the rollout resumes, every event once",
      () =>
        Effect.gen(function*() {
          const { box } = yield* SystemdEnv
          yield* rotateJournal
          const host = yield* newHost
          // The sender dies 6 s into every run of the process: long enough for each run to
          // make progress, short enough to cut the 18 s soak.
          yield* installAgent(
            host,
            settingsFor(host, {
              environment: TEST_MODES,
              extraArgs: ["--current-system-path", host.currentSystem]
            }),
            "Environment=NIXFLEET_AGENT_TEST_FAIL_WORKER=OutboundSender:6\n"
          )
          const { rolloutId } = yield* publish(host.cp, TARGET, 0.3).pipe(Effect.orDie)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          yield* eventually("the first run to end", Effect.sync(() => exits(host).length >= 1), 30_000, diagnostics)
          expect(exits(host)[0]).toBe("exit-code exited 70")
          expect((yield* hostRecord(host.cp, rolloutId).pipe(Effect.orDie))?.state).not.toBe("Converged")
          yield* eventually(
            "Restart=always to start the agent again",
            Effect.map(show(["NRestarts"]), (p) => Number(p["NRestarts"]) >= 1),
            20_000,
            diagnostics
          )
          yield* awaitState(host, rolloutId, "Converged")
          const fresh = expectEachEventOnce(yield* events(host.cp).pipe(Effect.orDie), rolloutId)
          expect(fresh.map((event) => event.kind)).toStrictEqual([
            "DispatchAck",
            "ActivationStarted",
            "ActivationCompleted",
            "Converged"
          ])
          const log = yield* agentLog
          const errors = log.filter((line) => line.logLevel === "ERROR")
          expect(errors.length).toBeGreaterThanOrEqual(1)
          for (const line of errors) expect(line.message).toBe("worker OutboundSender failed; the agent stops")
          expect(log.some((line) =>
            line.logLevel === "WARN" && line.message.startsWith("TEST GATE ON: NIXFLEET_AGENT_TEST_FAIL_WORKER=")
          ))
            .toBe(true)
        }),
      TIMEOUT
    )

    it.scoped(
      "the reference agent's command line (no subcommand, --poll-interval, --compliance-gate-mode) reaches READY",
      () =>
        Effect.gen(function*() {
          const env = yield* SystemdEnv
          const { box, pkg } = env
          yield* rotateJournal
          const host = yield* newHost
          const unit = yield* installAgent(host, settingsFor(host, { environment: TEST_MODES }))
          // As the reference module renders it (modules/scopes/nixfleet/_agent-args.nix).
          const reference = [
            `${pkg}/bin/nixfleet-agent`,
            "--control-plane-url",
            host.cp.url,
            "--machine-id",
            HOST,
            "--poll-interval",
            "60",
            "--trust-file",
            host.cp.trustFile,
            "--state-dir",
            host.stateDir,
            "--compliance-gate-mode",
            "permissive",
            "--ssh-host-key-file",
            Path.join(host.stateDir, "..", "no-ssh-host-key")
          ].join(" ")
          expect(unit).toMatch(/^ExecStart=\S+ run /m)
          yield* box.install(`${UNIT}.service`, unit, `${dropIn(host, env)}ExecStart=\nExecStart=${reference}\n`)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          expect(yield* show(["ActiveState", "StatusText", "ExecStart"])).toMatchObject({
            ActiveState: "active",
            StatusText: "idle: no rollout yet",
            ExecStart: expect.stringContaining("--poll-interval 60")
          })
          const warnings = (yield* agentLog).filter((line) => line.logLevel === "WARN" && "flag" in line.annotations)
          expect(warnings.map((line) => line.annotations["flag"])).toStrictEqual([
            "--poll-interval",
            "--compliance-gate-mode"
          ])
        }),
      TIMEOUT
    )

    // -------------------------------------------------------------------------------------
    // Real switches: the sandbox's closures, systemd-run and direct
    // -------------------------------------------------------------------------------------

    /** `nixfleet-agent activate` inside the box: the pipeline's outcome, as JSON, and how long it took. */
    const activate = (closure: string, method: "systemd-run" | "direct", verifySecs = 30) =>
      Effect.gen(function*() {
        const { box, cli, sandbox } = yield* SystemdEnv
        Fs.rmSync(sandbox.currentSystem, { force: true })
        Fs.symlinkSync(`/nix/store/${(yield* SystemdEnv).closures.booted}`, sandbox.currentSystem)
        const started = Date.now()
        const done = yield* box.exec([
          "env",
          "NIX_CONFIG=substituters =",
          `HOME=${sandbox.home}`,
          ...cliArgv(cli),
          "activate",
          closure,
          "--switch-method",
          method,
          "--current-system-path",
          sandbox.currentSystem,
          "--system-profile",
          sandbox.profile,
          "--switch-lock-path",
          sandbox.lockPath,
          "--state-dir",
          sandbox.stateDir,
          "--verify-timeout-secs",
          String(verifySecs)
        ])
        const ms = Date.now() - started
        const last = done.stdout.trim().split("\n").at(-1) ?? ""
        const result = JSON.parse(last) as { outcome: string; exitCode: number; phase: string | null }
        return { ...result, status: done.code, ms, stderr: done.stderr }
      })

    /**
     * A `systemd-run --wait` client of `nixfleet-switch` (a 0.5 s sleep) stopped once its
     * unit runs, so the ended unit stays loaded; the client is continued 3 s later.
     */
    const HOLD_ENDED_SWITCH_UNIT = [
      "systemd-run --unit=nixfleet-switch --collect --wait /usr/bin/sleep 0.5 >/dev/null 2>&1 & client=$!",
      "until systemctl -q is-active nixfleet-switch.service; do sleep 0.05; done",
      "kill -STOP $client",
      "until [ \"$(systemctl show -P ActiveState nixfleet-switch.service)\" = inactive ]; do sleep 0.05; done",
      "(sleep 3; kill -CONT $client) >/dev/null 2>&1 &"
    ].join("\n")

    it.scoped(
      "systemd-run reports every outcome of a real switch as direct does, and leaves no unit behind",
      () =>
        Effect.gen(function*() {
          const { box, closures } = yield* SystemdEnv
          const cases = [
            { closure: closures.flips, outcome: "FiredAndPolled", exitCode: 0 },
            { closure: closures.flipsSlowly, outcome: "FiredAndPolled", exitCode: 0 },
            { closure: closures.exits3, outcome: "SwitchFailed", exitCode: 3, phase: "switch-exited" }
          ]
          for (const expected of cases) {
            for (const method of ["systemd-run", "direct"] as const) {
              const result = yield* activate(expected.closure, method)
              expect(result, `${method} ${expected.closure}: ${result.stderr}`).toMatchObject({
                outcome: expected.outcome,
                exitCode: expected.exitCode,
                ...(expected.phase === undefined ? {} : { phase: expected.phase })
              })
              // `activate` returns on the flip: the unit ends and is collected just after.
              yield* eventually(
                `no switch unit left after ${method} ${expected.closure}`,
                Effect.map(transientUnits, (units) => units.length === 0),
                10_000,
                Effect.map(transientUnits, (units) => units.join("\n"))
              )
            }
          }
          // An ended switch unit that its `--wait` client, stopped, still holds: loaded, so
          // systemd-run refuses the name. The fire waits for it to go (the client resumes
          // after 3 s, reports and exits) instead of failing at systemd-run-fire.
          yield* box.run(["sh", "-c", HOLD_ENDED_SWITCH_UNIT])
          expect(yield* transientUnits).toStrictEqual([
            "nixfleet-switch.service loaded inactive dead /usr/bin/sleep 0.5"
          ])
          const held = yield* activate(closures.flips, "systemd-run")
          expect(held, held.stderr).toMatchObject({ outcome: "FiredAndPolled", exitCode: 0 })
          yield* eventually(
            "no switch unit left after the held one",
            Effect.map(transientUnits, (units) => units.length === 0),
            10_000,
            Effect.map(transientUnits, (units) => units.join("\n"))
          )
          // A hang: the verify budget runs out, and the switch is still running as its own unit,
          // outside the activate process that fired it (its exit status is unknown, not a made-up 0).
          const hung = yield* activate(closures.hangs, "systemd-run", 2)
          expect(hung).toMatchObject({ outcome: "SwitchFailed", phase: "switch-poll-timeout", exitCode: -1 })
          expect((yield* box.show("nixfleet-switch.service", ["ActiveState"]))["ActiveState"]).toBe("active")
          yield* box.run(["systemctl", "stop", "nixfleet-switch.service"])
          // Stopped, the unit stays loaded until its `--wait` client has seen it end.
          yield* eventually(
            "no switch unit left after the hung one was stopped",
            Effect.map(transientUnits, (units) => units.length === 0),
            10_000,
            Effect.map(transientUnits, (units) => units.join("\n"))
          )
        }),
      TIMEOUT
    )

    const nixSettings = (host: AgentHost, extra: Readonly<Record<string, unknown>> = {}) =>
      Effect.map(SystemdEnv, ({ sandbox }) => nixSettingsFor(sandbox, host, extra))

    const resetCurrentSystem = Effect.flatMap(SystemdEnv, ({ closures, sandbox }) =>
      Effect.sync(() => {
        Fs.rmSync(sandbox.currentSystem, { force: true })
        Fs.symlinkSync(`/nix/store/${closures.booted}`, sandbox.currentSystem)
      }))

    it.scoped(
      "the agent survives a switch that reloads systemd and restarts the agent: it converges, no unit left",
      () =>
        Effect.gen(function*() {
          const { box, closures, sandbox } = yield* SystemdEnv
          yield* rotateJournal
          yield* resetCurrentSystem
          const host = yield* newHost
          yield* installAgent(host, yield* nixSettings(host))

          // daemon-reload only: the same agent process sees it through. The unit is the
          // sandboxed one (systemd-run switch): realise through nix-daemon, the profile, the
          // GC root and D-Bus to systemd all work from inside it.
          const reload = yield* publish(host.cp, closures.reloadsDaemon, 0.05).pipe(Effect.orDie)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          expect(yield* show(["ProtectSystem", "CapabilityBoundingSet", "PrivateTmp", "ProtectHome"])).toStrictEqual({
            ProtectSystem: "strict",
            CapabilityBoundingSet: "",
            PrivateTmp: "yes",
            ProtectHome: "yes"
          })
          const pid = (yield* show(["MainPID"]))["MainPID"]
          yield* awaitState(host, reload.rolloutId, "Converged")
          expect((yield* show(["MainPID"]))["MainPID"]).toBe(pid)
          expect(Fs.readlinkSync(sandbox.currentSystem)).toBe(`/nix/store/${closures.reloadsDaemon}`)

          // A switch that restarts the agent, whatever its unit says.
          yield* box.run(["systemctl", "stop", `${UNIT}.service`])
          const restart = yield* publish(host.cp, closures.restartsAgent, 0.05).pipe(Effect.orDie)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          const restarted = (yield* show(["MainPID"]))["MainPID"]
          yield* awaitState(host, restart.rolloutId, "Converged")
          // The switch's restart ended that agent cleanly and started another.
          expect((yield* show(["MainPID"]))["MainPID"]).not.toBe(restarted)
          expect(exits(host)).toStrictEqual(["success exited 0", "success exited 0"])
          expect(Fs.readlinkSync(sandbox.currentSystem)).toBe(`/nix/store/${closures.restartsAgent}`)
          yield* eventually(
            "the switch unit to be gone",
            Effect.map(transientUnits, (units) => units.length === 0),
            10_000
          )
          const accepted = yield* events(host.cp).pipe(Effect.orDie)
          for (const rolloutId of [reload.rolloutId, restart.rolloutId]) {
            const fresh = expectEachEventOnce(
              accepted.filter((entry) => entry.envelope.rolloutId === rolloutId),
              rolloutId
            )
            expect(fresh.at(-1)?.kind).toBe("Converged")
          }

          // The journal: JSON objects, the pipeline's lines carrying the rollout and the phase.
          const fired = (yield* agentLog).filter((line) => line.message === "switch fired")
          expect(
            fired.map((line) => [line.annotations["rolloutId"], line.annotations["phase"], line.annotations["method"]])
          )
            .toStrictEqual([
              [reload.rolloutId, "fire", "systemd-run"],
              [restart.rolloutId, "fire", "systemd-run"]
            ])
        }),
      TIMEOUT
    )

    it.scoped(
      "an activation that changes the agent's unit has the new agent running within a minute; the switch ends, the rollout converges once, every event once",
      () =>
        Effect.gen(function*() {
          const { box, sandbox, upgrade } = yield* SystemdEnv
          const { closure, host, metricsPort: port, pkg: upgraded, switched } = upgrade
          yield* rotateJournal
          yield* resetCurrentSystem
          yield* installAgent(host, yield* nixSettings(host))

          const { rolloutId } = yield* publish(host.cp, closure, 0.05).pipe(Effect.orDie)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          const oldPid = (yield* show(["MainPID"]))["MainPID"]

          // Another process, from the new package, with the new flag and environment.
          const newAgent = Effect.gen(function*() {
            const p = yield* show(["ActiveState", "MainPID", "ExecStart"])
            const pid = p["MainPID"] ?? "0"
            if (p["ActiveState"] !== "active" || pid === "0" || pid === oldPid) return false
            if (!(p["ExecStart"] ?? "").includes(`path=${upgraded}/bin/nixfleet-agent ;`)) return false
            const argv = (yield* box.exec(["cat", `/proc/${pid}/cmdline`])).stdout.split("\0")
            const environ = (yield* box.exec(["cat", `/proc/${pid}/environ`])).stdout.split("\0")
            return argv.includes(`127.0.0.1:${port}`) && environ.includes("NIXFLEET_TAGS=upgraded")
          })
          yield* eventually("the new agent to run", newAgent, 60_000, diagnostics)
          const running = Date.now()
          const activated = Fs.statSync(Path.join(sandbox.markersDir, `switch-${closure}`)).mtimeMs
          expect(running - activated).toBeLessThan(60_000)
          yield* Effect.logInfo("from the activation to the new agent running").pipe(
            Effect.annotateLogs({ ms: Math.round(running - activated) })
          )

          // The switch got past the restart and ended: it was not killed with the old agent.
          yield* eventually("the switch to end", Effect.sync(() => Fs.existsSync(switched)), 30_000, diagnostics)
          yield* eventually(
            "the switch unit to be gone",
            Effect.map(transientUnits, (units) => units.length === 0),
            10_000
          )
          yield* awaitState(host, rolloutId, "Converged")
          expect(Fs.readlinkSync(sandbox.currentSystem)).toBe(`/nix/store/${closure}`)

          // The new setting is live: the new agent serves metrics.
          const metrics = yield* Effect.promise(() =>
            fetch(`http://127.0.0.1:${port}/metrics`).then((response) => response.text())
          )
          expect(metrics).toMatch(/^nixfleet_/m)

          // The old agent ended cleanly, once; the switch ran once and was fired once: the new
          // agent picked the rollout up where it stood instead of running it again.
          expect(exits(host)).toStrictEqual(["success exited 0"])
          expect((yield* switchRuns(sandbox)).filter((basename) => basename === closure)).toHaveLength(1)
          const fired = (yield* agentLog).filter((line) =>
            line.message === "switch fired" && line.annotations["rolloutId"] === rolloutId
          )
          expect(fired).toHaveLength(1)
          const fresh = expectEachEventOnce(yield* events(host.cp).pipe(Effect.orDie), rolloutId)
          expect(fresh.filter((event) => event.kind === "Converged")).toHaveLength(1)
          expect(fresh.at(-1)?.kind).toBe("Converged")
        }),
      TIMEOUT
    )

    it.scoped(
      "a hung switch: rolled back, the hung unit stopped, none left; a stop mid-switch exits 0 and the switch lands",
      () =>
        Effect.gen(function*() {
          const { box, closures, sandbox } = yield* SystemdEnv
          yield* rotateJournal
          yield* resetCurrentSystem
          const host = yield* newHost
          yield* installAgent(host, yield* nixSettings(host, { verifyTimeoutSecs: 3 }))
          const hung = yield* publish(host.cp, closures.hangs, 0.05).pipe(Effect.orDie)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          yield* awaitState(host, hung.rolloutId, "Reverted")
          expect(Fs.readlinkSync(sandbox.currentSystem)).toBe(`/nix/store/${closures.booted}`)
          yield* eventually(
            "the switch units to be gone",
            Effect.map(transientUnits, (units) => units.length === 0),
            10_000
          )

          // A stop while the switch runs (it flips after 6 s): exit 0 at once, the switch goes on.
          yield* box.run(["systemctl", "stop", `${UNIT}.service`])
          const slow = yield* publish(host.cp, closures.landsLate, 0.05).pipe(Effect.orDie)
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          yield* eventually(
            "the switch unit to run",
            Effect.map(box.show("nixfleet-switch.service", ["ActiveState"]), (p) => p["ActiveState"] === "active"),
            30_000,
            diagnostics
          )
          yield* box.run(["systemctl", "stop", `${UNIT}.service`])
          expect(exits(host)).toStrictEqual(["success exited 0", "success exited 0"])
          expect((yield* box.show("nixfleet-switch.service", ["ActiveState"]))["ActiveState"]).toBe("active")
          yield* eventually(
            "the switch to land without the agent",
            Effect.sync(() => Fs.readlinkSync(sandbox.currentSystem) === `/nix/store/${closures.landsLate}`),
            10_000
          )
          yield* box.run(["systemctl", "start", `${UNIT}.service`])
          yield* awaitState(host, slow.rolloutId, "Converged")
          yield* eventually(
            "the switch unit to be gone",
            Effect.map(transientUnits, (units) => units.length === 0),
            10_000
          )
        }),
      TIMEOUT
    )
  })
})

describeNeeding(undefined, "systemd-run --wait's report", () => {
  layer(Layer.empty)((it) => {
    it.effect("the start line, an exit status, a signal, and output that says neither", () =>
      Effect.sync(() => {
        expect(parseSystemdRunOutput("Running as unit: nixfleet-switch.service\n")).toStrictEqual({
          started: true,
          ended: undefined
        })
        expect(parseSystemdRunOutput(
          "Running as unit: nixfleet-switch.service\nFinished with result: exit-code\n" +
            "Main processes terminated with: code=exited/status=3\nService runtime: 2.003s\n"
        )).toStrictEqual({ started: true, ended: 3 })
        expect(parseSystemdRunOutput(
          "Running as unit: x.service\nFinished with result: signal\nMain processes terminated with: code=killed/status=TERM\n"
        )).toStrictEqual({ started: true, ended: null })
        expect(parseSystemdRunOutput("Failed to start transient service unit: Unit x.service already exists.\n"))
          .toStrictEqual({ started: false, ended: undefined })
      }))
  })
})
