/**
 * Issue 19, part A: a local unprivileged user cannot stop or steer the root agent. A port
 * taken first does not stop it (the endpoint is retried and comes up), a state or textfile
 * directory another user could write is refused or disabled, files are never written
 * through a planted symlink, `status` prints nothing a terminal would execute, and the test
 * gates turn on only for true values and say so. Real sockets, real files, real symlinks,
 * and a second uid (65534, nobody) where "another user" matters.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Logger, Metric, Ref, Schema, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Path from "node:path"
import { renderStatus } from "../src/cli/StatusTable.js"
import { statusSocket } from "../src/config/stateFiles.js"
import {
  ACTIVATION_TEST_MODE,
  announceGates,
  gatesOn,
  PROBE_TEST_MODE,
  testModeGauge,
  WEDGE_REDUCER
} from "../src/config/testGates.js"
import { labelEffect } from "../src/observability/Metrics.js"
import { metricsListenUp } from "../src/observability/MetricsExporter.js"
import { makePrivate } from "../src/outbox/files.js"
import { fire } from "../src/pipeline/phases/Fire.js"
import { probeTestMode } from "../src/probes/ProbeScheduler.js"
import { activationTestMode } from "../src/runtime/ActivationWorker.js"
import { AgentStatus } from "../src/status/AgentStatus.js"
import { type StatusReport, StatusReportJson } from "../src/status/StatusReport.js"
import { claimStatusSocket } from "../src/status/StatusServer.js"
import { writeFileAtomic } from "../src/support/atomicFile.js"
import { findUnsafe, prepareStateDir } from "../src/support/pathSafety.js"
import { printableJson } from "../src/support/terminalText.js"
import { startAgent, stateDirectory } from "./support/agentHarness.js"
import { AGENT, spawnScript } from "./support/processes.js"
import { makeSigner, writeTrustFile } from "./support/signing.js"

const HOST = "web-01"
const NOBODY = 65534
const CP = "http://127.0.0.1:1"

/** Polls (real time) until `condition` holds. */
const until = (what: string, condition: () => boolean, timeoutMs = 15_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })

const listening = (port: number) =>
  Effect.acquireRelease(
    Effect.async<Net.Server>((resume) => {
      const server = Net.createServer().listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )

const scrape = (port: number) =>
  Effect.async<number | string>((resume) => {
    const request = Http.get({ host: "127.0.0.1", port, path: "/metrics" }, (response) => {
      response.resume()
      response.on("end", () => resume(Effect.succeed(response.statusCode ?? 0)))
    })
    request.on("error", (error) => resume(Effect.succeed(error.message)))
  })

describe("metrics that cannot bind never stop the agent", () => {
  it.scopedLive(
    "a port taken first: one ERROR line with address and errno, retried, served once it is free",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        const blocker = yield* listening(0)
        const { port } = blocker.address() as Net.AddressInfo
        const agent = yield* startAgent({ machineId: HOST, stateDir: dir, controlPlaneUrl: CP }, {
          env: { NIXFLEET_AGENT_METRICS_LISTEN: `127.0.0.1:${port}` }
        })
        const status = Effect.flatMap(
          Effect.provide(AgentStatus, agent.context),
          (service) => service.report
        )
        const down = yield* status
        expect(down.metricsListen).toMatchObject({ address: `127.0.0.1:${port}`, up: false })
        expect(down.metricsListen?.error).toMatch(/^EADDRINUSE: /)
        expect((yield* labelEffect(HOST)(Metric.value(metricsListenUp))).value).toBe(0)
        const errors = (yield* agent.logs).filter((line) => line.startsWith("ERROR"))
        expect(errors).toHaveLength(1)
        expect(errors[0]).toMatch(new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*retrying`))
        expect(errors[0]).toContain("errno=EADDRINUSE")

        // The other user lets go of the port: the agent takes it on its next attempt.
        yield* Effect.async<void>((resume) => void blocker.close(() => resume(Effect.void)))
        const logs: Array<string> = []
        yield* until("the endpoint to come up", () => {
          Effect.runSync(Effect.map(agent.logs, (lines) => logs.splice(0, logs.length, ...lines)))
          return logs.some((line) => line.includes("metrics served at last"))
        })
        expect(yield* scrape(port)).toBe(200)
        const up = yield* status
        expect(up.metricsListen).toMatchObject({ address: `127.0.0.1:${port}`, up: true, error: "" })
        expect((yield* labelEffect(HOST)(Metric.value(metricsListenUp))).value).toBe(1)
        // Still one ERROR line: the retries while it was taken said nothing more.
        expect((yield* agent.logs).filter((line) => line.startsWith("ERROR"))).toHaveLength(1)
      }),
    60_000
  )
})

describe("the state directory and the textfile directory are checked", () => {
  const chownNobody = (path: string) => Fs.chownSync(path, NOBODY, NOBODY)

  it.scoped("a missing state directory is created 0700; a safe one is accepted", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const state = Path.join(dir, "deep", "state")
      yield* Effect.sync(() => process.umask(0o022))
      yield* prepareStateDir(state)
      expect(Fs.statSync(state).mode & 0o7777).toBe(0o700)
      expect(Fs.statSync(Path.dirname(state)).mode & 0o7777).toBe(0o755)
      expect(yield* findUnsafe(state)).toBeNull()
    }))

  it.scoped("owned by another user, or writable by group or others: refused with the path, owner, mode and fix", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const owned = Path.join(dir, "owned")
      Fs.mkdirSync(owned, { mode: 0o700 })
      chownNobody(owned)
      const refused = yield* Effect.flip(prepareStateDir(owned))
      expect(refused).toBe(
        `unsafe state directory ${owned} (owner uid ${NOBODY}, mode 0700) belongs to another user ` +
          `(the agent runs as uid 0): they could replace the agent's files; fix: chown root ${owned} && chmod go-w ${owned}`
      )

      const open = Path.join(dir, "open")
      Fs.mkdirSync(open)
      Fs.chmodSync(open, 0o777)
      expect(yield* Effect.flip(prepareStateDir(open))).toContain(
        `${open} (owner uid 0, mode 0777) is writable by group`
      )

      // A parent another user controls steers everything below it, however safe the leaf.
      const parent = Path.join(dir, "parent")
      const leaf = Path.join(parent, "state")
      Fs.mkdirSync(leaf, { recursive: true, mode: 0o700 })
      chownNobody(parent)
      expect(yield* Effect.flip(prepareStateDir(leaf))).toContain(`${leaf}: its parent ${parent} (owner uid ${NOBODY}`)

      // A sticky shared parent (/tmp-style) is fine: nobody can rename an entry they do not own.
      const sticky = Path.join(dir, "sticky")
      Fs.mkdirSync(Path.join(sticky, "state"), { recursive: true, mode: 0o700 })
      Fs.chmodSync(sticky, 0o1777)
      expect(yield* findUnsafe(Path.join(sticky, "state"))).toBeNull()
      // …but the state directory itself is never shared, sticky or not.
      Fs.chmodSync(Path.join(sticky, "state"), 0o1777)
      expect(yield* findUnsafe(Path.join(sticky, "state"))).not.toBeNull()

      // A symlink to a directory another user owns is checked where it leads.
      const link = Path.join(dir, "link")
      Fs.symlinkSync(owned, link)
      expect(yield* Effect.flip(prepareStateDir(link))).toContain(`${owned} (owner uid ${NOBODY}`)
    }))

  it.scopedLive(
    "`run` on a state directory another user owns exits 78 with one line, and writes nothing there",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        const state = Path.join(dir, "state")
        Fs.mkdirSync(state, { mode: 0o755 })
        chownNobody(state)
        const trust = writeTrustFile(dir, makeSigner())
        const agent = yield* spawnScript("agent", AGENT, [
          "run",
          "--control-plane-url",
          CP,
          "--machine-id",
          HOST,
          "--state-dir",
          state,
          "--trust-file",
          trust
        ], {})
        const exit = yield* agent.awaitExit(60_000)
        const stderr = agent.stderr().join("\n")
        expect(stderr).toContain(
          `unsafe state directory ${state} (owner uid ${NOBODY}, mode 0755) belongs to another user`
        )
        expect(exit).toStrictEqual({ code: 78, signal: null })
        expect(Fs.readdirSync(state)).toStrictEqual([])
      }),
    90_000
  )

  it.scopedLive(
    "`run` with a test gate set to neither a true nor a false value exits 78 naming the key",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        const agent = yield* spawnScript("agent", AGENT, [
          "run",
          "--control-plane-url",
          CP,
          "--machine-id",
          HOST,
          "--state-dir",
          Path.join(dir, "state"),
          "--trust-file",
          writeTrustFile(dir, makeSigner())
        ], { [ACTIVATION_TEST_MODE]: "0x1" })
        const exit = yield* agent.awaitExit(60_000)
        expect(agent.stderr().join("\n")).toContain(`${ACTIVATION_TEST_MODE}="0x1" is not a test gate value`)
        expect(exit).toStrictEqual({ code: 78, signal: null })
      }),
    90_000
  )

  it.scopedLive(
    "a textfile directory another user can write: a WARN, no textfile, the agent runs on",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        const collector = Path.join(dir, "collector")
        Fs.mkdirSync(collector)
        chownNobody(collector)
        const file = Path.join(collector, "nixfleet.prom")
        const agent = yield* startAgent({ machineId: HOST, stateDir: Path.join(dir, "state"), controlPlaneUrl: CP }, {
          env: { NIXFLEET_AGENT_METRICS_TEXTFILE: file }
        })
        const warnings = (yield* agent.logs).filter((line) => line.includes("metrics textfile disabled"))
        expect(warnings).toHaveLength(1)
        expect(warnings[0]).toMatch(
          new RegExp(`^WARN metrics textfile disabled: unsafe directory ${collector} \\(owner uid ${NOBODY}`)
        )
        yield* Effect.sleep("200 millis")
        expect(Fs.existsSync(file)).toBe(false)
      }),
    60_000
  )
})

describe("files the agent creates are never opened through a symlink", () => {
  it.scoped("switch.log planted as a symlink: the direct switch is refused naming the path, the target untouched", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const target = Path.join(dir, "shadow")
      Fs.writeFileSync(target, "root:secret\n", { mode: 0o600 })
      Fs.symlinkSync(target, Path.join(dir, "switch.log"))
      const store = Path.join(dir, "system")
      Fs.mkdirSync(Path.join(store, "bin"), { recursive: true })
      Fs.writeFileSync(Path.join(store, "bin", "switch-to-configuration"), "#!/bin/sh\nexit 0\n", { mode: 0o755 })
      const failed = yield* Effect.flip(
        fire({ method: "direct", unit: "nixfleet-switch", storePath: store, stateDir: dir }).pipe(
          Effect.provide(NodeContext.layer)
        )
      )
      expect(failed.detail).toBe(
        `cannot write ${
          Path.join(dir, "switch.log")
        }: it is a symbolic link; the agent does not write through or over one (remove it)`
      )
      expect(Fs.readFileSync(target, "utf8")).toBe("root:secret\n")
    }))

  it.scoped("an atomic write (status.json, ledger, certificates, manifests, textfile) refuses a symlink at its path", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const target = Path.join(dir, "elsewhere")
      Fs.writeFileSync(target, "keep\n")
      const file = Path.join(dir, "status.json")
      Fs.symlinkSync(target, file)
      const error = yield* Effect.flip(Effect.tryPromise({ try: () => writeFileAtomic(file, "{}"), catch: (e) => e }))
      expect(String((error as Error).message)).toBe(
        `cannot write ${file}: it is a symbolic link; the agent does not write through or over one (remove it)`
      )
      expect(Fs.readFileSync(target, "utf8")).toBe("keep\n")
      expect(Fs.lstatSync(file).isSymbolicLink()).toBe(true)
      // Nothing left behind: no temporary file.
      expect(Fs.readdirSync(dir).sort()).toStrictEqual(["elsewhere", "status.json"])
    }))

  it.scoped("the outbox's database or its -wal planted as a symlink: refused before SQLite opens it, nothing chmod-ed", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const target = Path.join(dir, "victim")
      Fs.writeFileSync(target, "x", { mode: 0o644 })
      for (const name of ["outbox.sqlite", "outbox.sqlite-wal"]) {
        const db = Path.join(dir, "outbox.sqlite")
        for (const stale of ["outbox.sqlite", "outbox.sqlite-wal"]) Fs.rmSync(Path.join(dir, stale), { force: true })
        Fs.symlinkSync(target, Path.join(dir, name))
        const error = yield* Effect.flip(makePrivate(db))
        expect(String((error as Error).message)).toContain(
          `cannot write ${Path.join(dir, name)}: it is a symbolic link`
        )
        expect(Fs.statSync(target).mode & 0o777).toBe(0o644)
      }
    }))
})

describe("the status socket cannot be steered", () => {
  it.scoped("a symlink at agent.sock to a socket that answers is removed, never asked: the agent is not stopped by it", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const other = Path.join(dir, "other.sock")
      yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          const server = Net.createServer((socket) => socket.end()).listen(other, () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      Fs.symlinkSync(other, statusSocket(dir))
      yield* claimStatusSocket(dir)
      expect(Fs.existsSync(statusSocket(dir))).toBe(false)
      // The socket it pointed at is untouched.
      expect(Fs.lstatSync(other).isSocket()).toBe(true)
    }))
})

const hostile = {
  title: "\u001b]0;pwned\u0007",
  clear: "\u001b[2J\u001b[H",
  clipboard: "\u001b]52;c;Y3VybCBldmlsIHwgc2g=\u0007",
  csi8: "\u009b31m",
  forgedLine: "ok\nnixfleet-agent 9.9.9: running",
  bidi: "\u202eevil"
}
const dirty = Object.values(hostile).join("")

const hostileReport: StatusReport = {
  source: "live",
  agent: {
    version: "0.1.0",
    running: true,
    pid: 42,
    startedAt: new Date("2026-12-07T09:00:00Z"),
    lifecycle: "running",
    phase: `soaking ${dirty}`,
    reportedAt: new Date("2026-12-07T10:00:00Z")
  },
  machineId: HOST,
  controlPlaneUrl: "https://cp.example:8443",
  stateDir: "/var/lib/nixfleet-agent",
  currentSystemPath: "/run/current-system",
  currentClosure: `abc-nixos-system-${dirty}`,
  rollouts: [{
    rolloutId: `stable@${dirty}`,
    channel: "stable",
    state: "Soaking",
    targetClosure: `abc-${dirty}`,
    currentClosure: null,
    lastEventSeq: 1,
    dispatchedAt: new Date("2026-12-07T09:30:00Z"),
    soakDueAt: null,
    failingProbes: [`probe${dirty}`]
  }],
  outbox: {
    depth: 1,
    nonDurable: 0,
    oldestPendingAt: null,
    deadLetters: 1,
    recentDeadLetters: [{
      rolloutId: "r",
      seq: 1,
      kind: "ProbeResult",
      status: 400,
      reason: `HTTP 400: ${dirty}`,
      deadAt: new Date("2026-12-07T09:40:00Z")
    }]
  },
  deliveryBlocked: { status: 403, url: "https://cp/v1/events", since: new Date(0), reason: dirty },
  settingWarnings: [{ setting: "--x", value: dirty, message: `--x ${dirty} is bad` }],
  testGates: [{ gate: ACTIVATION_TEST_MODE, value: dirty, effect: "nothing" }],
  lastError: { at: new Date(0), message: `control plane said ${dirty}`, rolloutId: dirty, detail: `body=${dirty}` },
  lastWarning: null
}

// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/

describe("status prints nothing a terminal would execute", () => {
  it("the human form shows title, screen-clear, OSC 52, 8-bit CSI and bidi controls as escapes", () => {
    const out = renderStatus(hostileReport, [`note ${dirty}`])
    expect(out).not.toMatch(CONTROLS)
    expect(out).toContain("\\x1b]0;pwned\\x07")
    expect(out).toContain("\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07")
    expect(out).toContain("\\x9b31m")
    expect(out).toContain("\\u202eevil")
    // A newline from outside stays on its line: no forged headline.
    expect(out.split("\n").filter((line) => line.startsWith("nixfleet-agent "))).toHaveLength(1)
  })

  it("the JSON form escapes what JSON leaves raw (DEL, C1, bidi) and still decodes to the same report", () =>
    Effect.gen(function*() {
      const json = printableJson(yield* Schema.encode(StatusReportJson)(hostileReport))
      expect(json).not.toMatch(CONTROLS)
      expect(yield* Schema.decode(StatusReportJson)(json)).toStrictEqual(hostileReport)
    }).pipe(Effect.runSync))

  it.scopedLive(
    "`nixfleet-agent status` on a hostile status.json prints no control character",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        Fs.writeFileSync(Path.join(dir, "status.json"), Effect.runSync(Schema.encode(StatusReportJson)(hostileReport)))
        for (const json of [false, true]) {
          const status = yield* spawnScript("status", AGENT, [
            "status",
            "--state-dir",
            dir,
            ...(json ? ["--json"] : [])
          ], {})
          const exit = yield* status.awaitExit(30_000)
          expect(exit?.code).toBe(3)
          const out = [...status.stdout(), ...status.stderr()].join("\n")
          expect(out).toContain("pwned")
          expect(out).not.toMatch(CONTROLS)
        }
      }),
    60_000
  )
})

const withEnv = (entries: Readonly<Record<string, string>>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(entries))))

describe("test gates turn on only for true values, and are loud", () => {
  it.effect("1, true, yes (any case) turn a gate on; 0, false, no, empty and unset leave it off", () =>
    Effect.gen(function*() {
      for (const value of ["1", "true", "TRUE", "yes", " Yes "]) {
        expect(yield* activationTestMode.pipe(withEnv({ [ACTIVATION_TEST_MODE]: value })), value).toBe(true)
        expect(yield* probeTestMode.pipe(withEnv({ [PROBE_TEST_MODE]: value })), value).toBe(true)
      }
      for (const value of ["0", "false", "no", "NO", ""]) {
        expect(yield* activationTestMode.pipe(withEnv({ [ACTIVATION_TEST_MODE]: value })), value).toBe(false)
        expect(yield* probeTestMode.pipe(withEnv({ [PROBE_TEST_MODE]: value })), value).toBe(false)
      }
      expect(yield* activationTestMode.pipe(withEnv({}))).toBe(false)
      expect(yield* gatesOn.pipe(withEnv({ [WEDGE_REDUCER]: "0" }))).toStrictEqual([])
    }))

  it.effect("any other value is a configuration error naming the key", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(gatesOn.pipe(withEnv({ [ACTIVATION_TEST_MODE]: "maybe" })))
      expect(String(error)).toContain(
        `${ACTIVATION_TEST_MODE}="maybe" is not a test gate value: 1, true or yes turn it on; 0, false, no or empty leave it off`
      )
      const wedge = yield* Effect.flip(gatesOn.pipe(withEnv({ [WEDGE_REDUCER]: "soon" })))
      expect(String(wedge)).toContain(`${WEDGE_REDUCER}="soon" is not a number of seconds`)
    }))

  it.scoped("a gate on: a WARN at start and every hour (TestClock), and the gauge at 1", () =>
    Effect.gen(function*() {
      const lines = yield* Ref.make<ReadonlyArray<string>>([])
      const gates = yield* gatesOn.pipe(withEnv({ [PROBE_TEST_MODE]: "yes", [ACTIVATION_TEST_MODE]: "0" }))
      expect(gates.map((gate) => gate.gate)).toStrictEqual([PROBE_TEST_MODE])
      const capture = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message }) => {
          Effect.runSync(Ref.update(lines, (all) => [...all, `${logLevel.label} ${String(message)}`]))
        })
      )
      yield* announceGates(gates).pipe(Effect.provide(capture))
      const warned = Effect.map(Ref.get(lines), (all) => all.filter((line) => line.includes("TEST GATE ON")).length)
      yield* Effect.yieldNow()
      expect(yield* warned).toBe(1)
      expect((yield* Ref.get(lines))[0]).toBe(
        `WARN TEST GATE ON: ${PROBE_TEST_MODE}=yes: health probes are NOT run; never set it on a real host`
      )
      expect((yield* Metric.value(Metric.tagged(testModeGauge, "gate", PROBE_TEST_MODE))).value).toBe(1)
      expect((yield* Metric.value(Metric.tagged(testModeGauge, "gate", ACTIVATION_TEST_MODE))).value).toBe(0)
      yield* TestClock.adjust("59 minutes")
      expect(yield* warned).toBe(1)
      yield* TestClock.adjust("1 minute")
      expect(yield* warned).toBe(2)
      yield* TestClock.adjust("1 hour")
      expect(yield* warned).toBe(3)
    }))

  it.scopedLive(
    "the running agent shows a gate in status; `=0` is off; a bad value stops the start naming the key",
    () =>
      Effect.gen(function*() {
        const dir = yield* stateDirectory
        const on = yield* startAgent({ machineId: HOST, stateDir: Path.join(dir, "a"), controlPlaneUrl: CP })
        const report = yield* Effect.flatMap(Effect.provide(AgentStatus, on.context), (status) => status.report)
        expect(report.testGates).toStrictEqual([{
          gate: ACTIVATION_TEST_MODE,
          value: "1",
          effect: "activations and rollbacks are NOT run, only reported as succeeded"
        }])
        expect(renderStatus(report, [])).toContain(`TEST GATE ON: ${ACTIVATION_TEST_MODE}=1`)
        yield* on.stop

        const off = yield* startAgent({ machineId: HOST, stateDir: Path.join(dir, "b"), controlPlaneUrl: CP }, {
          testMode: false,
          env: { [ACTIVATION_TEST_MODE]: "0" }
        })
        const quiet = yield* Effect.flatMap(Effect.provide(AgentStatus, off.context), (status) => status.report)
        expect(quiet.testGates).toBeUndefined()
        yield* off.stop

        const bad = yield* Effect.either(
          startAgent({ machineId: HOST, stateDir: Path.join(dir, "c"), controlPlaneUrl: CP }, {
            testMode: false,
            env: { [PROBE_TEST_MODE]: "on" }
          })
        )
        expect(Either.isLeft(bad)).toBe(true)
        expect(String(Either.isLeft(bad) ? bad.left : "")).toContain(`${PROBE_TEST_MODE}="on" is not a test gate value`)
      }),
    60_000
  )
})
