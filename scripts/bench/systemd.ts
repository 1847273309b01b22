/**
 * The agent's unit under a real systemd (the systemd box, as in SystemdUnit.test.ts): the
 * unit the NixOS module renders, ExecStart pointed at the installed CLI (the bin script on
 * the bundle, built from the sources into the run's directory), against the dev
 * control plane in a separate process. Medians of several runs of:
 *
 * 1. `systemctl start` → it returns (Type=notify: READY=1, sent after boot recovery), idle;
 * 2. `systemctl stop` idle, and in the middle of a rollout (Soaking);
 * 3. SIGKILL of the main process → active again (Restart=always, then READY=1 after boot
 *    recovery rehydrated the rollout), minus the RestartSec=1 of the test drop-in (the
 *    module's RestartSec is 30 s, which adds 29 s on a host);
 * 4. `nixfleet-agent activate` of a real switch (tiny Nix closures: one that flips at once,
 *    one that exits 3, one that flips after 2.5 s) with `systemd-run` next to `direct`:
 *    the whole command, and from its `switch fired` log line to its exit (the detection
 *    of the outcome plus the process's exit).
 *
 *   npm run build && npm run bench -- systemd
 */
import { boot, buildClosure, makeSandbox, type NixSandbox } from "@nixfleet/dev/NixFixtures"
import { Effect, Schema, type Scope } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { REPO } from "../nix/moduleEval.js"
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
} from "../systemd/box.js"
import { median } from "./stats.js"

const RUNS = 5
const HOST = "web-01"
const TSX = Path.join(REPO, "node_modules/.bin/tsx")
const CONTROL_PLANE = Path.join(REPO, "packages/dev-control-plane/src/main.ts")
/** A valid store basename; nothing is realised in activation test mode. */
const TEST_TARGET = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-bench"
const TEST_MODES = { NIXFLEET_AGENT_ACTIVATION_TEST_MODE: "1", NIXFLEET_AGENT_PROBE_TEST_MODE: "1" }
const DROP_IN = "[Service]\nRestartSec=1\n"

// ---------------------------------------------------------------------------------------
// The control plane
// ---------------------------------------------------------------------------------------

const Started = Schema.parseJson(Schema.Struct({ url: Schema.String, trustFile: Schema.String }))
const Hosts = Schema.Record({ key: Schema.String, value: Schema.Struct({ state: Schema.String }) })

interface ControlPlane {
  readonly url: string
  readonly trustFile: string
}

const startControlPlane = (dir: string): Effect.Effect<ControlPlane, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly cp: ControlPlane; readonly pid: number }>((resume) => {
      const child = spawn(TSX, ["--conditions=@nixfleet/source", CONTROL_PLANE, "--dir", dir], {
        cwd: REPO,
        detached: true,
        stdio: ["ignore", "pipe", "inherit"]
      })
      let out = ""
      let started = false
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        out += chunk
        const line = out.split("\n")[0]
        if (!started && out.includes("\n") && line !== undefined && child.pid !== undefined) {
          started = true
          resume(Effect.succeed({ cp: Schema.decodeSync(Started)(line), pid: child.pid }))
        }
      })
      child.on("exit", (code) => {
        if (!started) resume(Effect.dieMessage(`the control plane exited (${code}) before starting`))
        started = true
      })
    }),
    ({ pid }) =>
      Effect.sync(() => {
        try {
          process.kill(-pid, "SIGKILL")
        } catch {
          // Gone.
        }
      })
  ).pipe(Effect.map(({ cp }) => cp))

const operator = (cp: ControlPlane, path: string, body?: unknown) =>
  Effect.tryPromise(async () => {
    const response = await fetch(
      `${cp.url}${path}`,
      body === undefined ? {} : {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body)
      }
    )
    const text = await response.text()
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}: ${text}`)
    return JSON.parse(text) as unknown
  }).pipe(Effect.orDie)

const publish = (cp: ControlPlane, targetClosure: string, soakMinutes: number) =>
  Effect.map(
    operator(cp, "/v1/operator/rollouts", {
      channel: "stable",
      hosts: [{ hostname: HOST, targetClosure }],
      soakMinutes
    }),
    (json) => (json as { readonly rolloutId: string }).rolloutId
  )

const stateOf = (cp: ControlPlane, rolloutId: string) =>
  Effect.map(
    Effect.flatMap(operator(cp, "/v1/operator/hosts"), Schema.decodeUnknown(Hosts)),
    (hosts) => hosts[`${rolloutId}/${HOST}`]?.state
  ).pipe(Effect.orDie)

// ---------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const value = yield* effect
    return { value, ms: performance.now() - start }
  })

const ms = (value: number) => `${value.toFixed(0)} ms`

const report = (label: string, samples: ReadonlyArray<number>) =>
  Effect.sync(() =>
    process.stdout.write(
      `  ${label.padEnd(58)} median ${ms(median(samples)).padStart(8)}  (${
        samples.map((s) => s.toFixed(0)).join(", ")
      })\n`
    )
  )

// ---------------------------------------------------------------------------------------
// The unit
// ---------------------------------------------------------------------------------------

/** With `dir` (under /tmp, which the hardened unit's PrivateTmp replaces) bound into the unit. */
const install = (box: Box, dir: string, pkg: string, settings: Readonly<Record<string, unknown>>) =>
  Effect.flatMap(
    agentUnit(settings, pkg),
    (unit) => box.install(`${UNIT}.service`, unit, `${DROP_IN}BindPaths=${dir}\n`)
  )

const mainPid = (box: Box) => Effect.map(box.show(`${UNIT}.service`, ["MainPID"]), (p) => p["MainPID"] ?? "0")

const lifecycle = (box: Box, dir: string, pkg: string) =>
  Effect.gen(function*() {
    const cp = yield* startControlPlane(Path.join(dir, "cp"))
    const stateDir = Path.join(dir, "state")
    Fs.mkdirSync(stateDir)
    const currentSystem = Path.join(dir, "current-system")
    Fs.symlinkSync("/nix/store/9z8y7x6w5v4s3r2q1p0n9m8l7k6j5i4h-nixos-system-bench", currentSystem)
    yield* install(box, dir, pkg, {
      controlPlaneUrl: cp.url,
      machineId: HOST,
      trustFile: cp.trustFile,
      tls: { clientCert: null, clientKey: null },
      stateDir,
      sshHostKeyFile: Path.join(dir, "no-ssh-host-key"),
      environment: TEST_MODES,
      extraArgs: ["--current-system-path", currentSystem]
    })
    const systemctl = (...args: ReadonlyArray<string>) => box.run(["systemctl", ...args, `${UNIT}.service`])

    // A control plane that has signed artifacts, and a first rollout converged.
    const first = yield* publish(cp, TEST_TARGET, 0)
    yield* systemctl("start")
    yield* eventually("the first rollout to converge", Effect.map(stateOf(cp, first), (s) => s === "Converged"), 60_000)
    yield* systemctl("stop")

    const starts: Array<number> = []
    const stops: Array<number> = []
    for (let i = 0; i < RUNS; i++) {
      starts.push((yield* timed(systemctl("start"))).ms)
      stops.push((yield* timed(systemctl("stop"))).ms)
    }

    // One rollout soaking for longer than the rest: stops mid-soak, then SIGKILLs.
    const soaking = yield* publish(cp, TEST_TARGET, 10)
    const stopsMidRollout: Array<number> = []
    const restarts: Array<number> = []
    yield* systemctl("start")
    yield* eventually("the rollout to soak", Effect.map(stateOf(cp, soaking), (s) => s === "Soaking"), 60_000)
    for (let i = 0; i < RUNS; i++) {
      stopsMidRollout.push((yield* timed(systemctl("stop"))).ms)
      yield* systemctl("start")
    }
    for (let i = 0; i < RUNS; i++) {
      const before = yield* mainPid(box)
      const { ms } = yield* timed(Effect.gen(function*() {
        yield* box.run(["systemctl", "kill", "--kill-who=main", "--signal=SIGKILL", `${UNIT}.service`])
        yield* eventually(
          "the agent to be back",
          Effect.map(box.show(`${UNIT}.service`, ["MainPID", "ActiveState"]), (p) =>
            p["ActiveState"] === "active" && p["MainPID"] !== before && p["MainPID"] !== "0"),
          30_000
        )
      }))
      restarts.push(ms - 1000)
    }
    const rehydrated = (yield* box.journal(UNIT)).filter((line) =>
      line.includes("rollout rehydrated from the control plane") && line.includes(soaking)
    ).length
    yield* systemctl("stop")

    process.stdout.write(`systemd (this machine's) in a box, the module's unit (Type=notify), ${RUNS} runs each\n`)
    yield* report("systemctl start → returns (READY=1), idle", starts)
    yield* report("systemctl stop, idle", stops)
    yield* report("systemctl stop, mid-rollout (Soaking)", stopsMidRollout)
    yield* report("SIGKILL → active again (READY), minus RestartSec=1", restarts)
    process.stdout.write(
      `  (the rollout was rehydrated ${rehydrated} times and still soaking: ${yield* stateOf(cp, soaking)})\n`
    )
  })

// ---------------------------------------------------------------------------------------
// Switch outcomes
// ---------------------------------------------------------------------------------------

const FiredLine = Schema.parseJson(Schema.Struct({ message: Schema.String, timestamp: Schema.String }))

const activate = (
  box: Box,
  cli: string,
  sandbox: NixSandbox,
  booted: string,
  closure: string,
  method: string
) =>
  Effect.gen(function*() {
    Fs.rmSync(sandbox.currentSystem, { force: true })
    Fs.symlinkSync(`/nix/store/${booted}`, sandbox.currentSystem)
    const { value: done, ms } = yield* timed(box.exec([
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
      sandbox.stateDir
    ]))
    const ended = Date.now()
    const fired = done.stderr.split("\n").flatMap((line) => {
      const decoded = Schema.decodeUnknownOption(FiredLine)(line)
      return decoded._tag === "Some" && decoded.value.message === "switch fired" ? [decoded.value.timestamp] : []
    })[0]
    if (fired === undefined) return yield* Effect.dieMessage(`no "switch fired" line: ${done.stdout}\n${done.stderr}`)
    const outcome = (JSON.parse(done.stdout.trim().split("\n").at(-1) ?? "{}") as { outcome?: string }).outcome
    return { ms, afterFire: ended - Date.parse(fired), outcome }
  })

const switches = (
  box: Box,
  cli: string,
  sandbox: NixSandbox,
  closures: Readonly<Record<string, string>>,
  booted: string
) =>
  Effect.gen(function*() {
    process.stdout.write(`\nnixfleet-agent activate of a real switch (systemd-run next to direct), ${RUNS} runs each\n`)
    for (const [name, closure] of Object.entries(closures)) {
      const samples: Record<string, { whole: Array<number>; afterFire: Array<number>; outcomes: Set<string> }> = {
        "systemd-run": { whole: [], afterFire: [], outcomes: new Set() },
        direct: { whole: [], afterFire: [], outcomes: new Set() }
      }
      for (let i = 0; i < RUNS; i++) {
        for (const method of ["systemd-run", "direct"]) {
          const run = yield* activate(box, cli, sandbox, booted, closure, method)
          samples[method]!.whole.push(run.ms)
          samples[method]!.afterFire.push(run.afterFire)
          samples[method]!.outcomes.add(run.outcome ?? "?")
        }
      }
      for (const [method, s] of Object.entries(samples)) {
        yield* report(`${name}, ${method}: whole command [${[...s.outcomes].join("/")}]`, s.whole)
        yield* report(`${name}, ${method}: switch fired → exit`, s.afterFire)
      }
    }
  })

export const benchSystemd = () =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const missing = boxMissing()
    if (missing !== undefined) {
      process.stdout.write(`systemd: skipped, missing ${missing}\n`)
      return
    }
    const dir = yield* tempDirectory("nixfleet-bench-systemd-")
    const cli = yield* installCli(dir)
    const sandbox = yield* makeSandbox
    const booted = yield* buildClosure(sandbox, { name: "nixos-system-bench-booted", switch: { _tag: "Flip" } })
    const closures = {
      "flips at once": yield* buildClosure(sandbox, { name: "nixos-system-bench-flips", switch: { _tag: "Flip" } }),
      "exits 3": yield* buildClosure(sandbox, { name: "nixos-system-bench-exits", switch: { _tag: "Exit", code: 3 } }),
      "flips after 2.5 s": yield* buildClosure(sandbox, {
        name: "nixos-system-bench-slow",
        switch: { _tag: "Flip", delayMs: 2_500 }
      })
    }
    yield* boot(sandbox, booted)
    const box = yield* startBox([dir, sandbox.root], dir)
    const pkg = agentPackage(dir, cli)
    yield* lifecycle(box, dir, pkg)
    yield* switches(box, cli, sandbox, closures, booted)
  })))
