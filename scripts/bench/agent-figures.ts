/**
 * Figures of the agent daemon as it runs on a host: the command line as installed
 * (`packages/agent/bin/nixfleet-agent.js run`, executed through its shebang, with its node
 * flags, on the bundle; no tsx in between) against the dev control plane in a separate
 * process, in activation and probe test mode. Each of the runs starts a fresh agent (its
 * own host name and state directory) and measures:
 *
 * 1. spawn → its `boot recovery done` log line (wall time seen from here; the line's own
 *    `ms` annotation, the boot heartbeat alone, is reported next to it), next to spawn →
 *    exit of `node -e 0` (aim: within 500 ms);
 * 2. publish → the control plane holding the host's `DispatchAck` (the dispatch is
 *    queued by the publish; `/v1/operator/events` polled every 10 ms, so +0–10 ms);
 * 3. the agent's resident set (`VmRSS` of its node process) after the rollout converged
 *    and 10 s of idling (aim: within 80 MiB), next to a node process idling on a timer.
 *
 *   npm run build && npm run bench -- agent-figures
 */
import { Effect, Schema, type Scope } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { performance } from "node:perf_hooks"
import { median } from "./stats.js"

const RUNS = 5
const IDLE_MS = 10_000
const REPO = Path.resolve(import.meta.dirname, "../..")
const CLI = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")
const BUNDLE = Path.join(REPO, "packages/agent/dist/bundle/nixfleet-agent.mjs")
const TSX = Path.join(REPO, "node_modules/.bin/tsx")
const CONTROL_PLANE = Path.join(REPO, "packages/dev-control-plane/src/main.ts")
/** Valid store basenames; nothing is realised in test mode. */
const RUNNING = "9z8y7x6w5v4s3r2q1p0n9m8l7k6j5i4h-nixos-system-bench"
const TARGET = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-bench"

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

interface Line {
  /** `performance.now()` when the chunk holding the line arrived. */
  readonly at: number
  readonly text: string
}

interface Child {
  readonly pid: number
  readonly stdout: Array<Line>
  readonly stderr: Array<Line>
  readonly exit: () => { readonly code: number | null; readonly signal: string | null } | undefined
  readonly awaitExit: (timeoutMs: number) => Effect.Effect<boolean>
  readonly signal: (signal: NodeJS.Signals) => void
}

const collect = (into: Array<Line>) => {
  let partial = ""
  return (chunk: string) => {
    const at = performance.now()
    const parts = (partial + chunk).split("\n")
    partial = parts.pop() ?? ""
    for (const text of parts) into.push({ at, text })
  }
}

/** The environment without `NIXFLEET_AGENT_*`, then `extra`. */
const environment = (extra: Readonly<Record<string, string>>): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("NIXFLEET_AGENT_")) env[key] = value
  }
  return { ...env, ...extra }
}

/**
 * Spawns `command` from the repository root in a process group of its own, killed
 * (SIGKILL, the whole group) when the scope closes. Returns the spawn instant too.
 */
const start = (
  command: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>> = {}
): Effect.Effect<{ readonly child: Child; readonly spawnedAt: number }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const stdout: Array<Line> = []
      const stderr: Array<Line> = []
      const spawnedAt = performance.now()
      const proc = spawn(command, [...args], {
        cwd: REPO,
        env: environment(env),
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
      if (proc.pid === undefined) throw new Error(`cannot spawn ${command}`)
      const pid = proc.pid
      proc.stdout.setEncoding("utf8").on("data", collect(stdout))
      proc.stderr.setEncoding("utf8").on("data", collect(stderr))
      let exited: { readonly code: number | null; readonly signal: string | null } | undefined
      proc.on("exit", (code, signal) => {
        exited = { code, signal }
      })
      const awaitExit = (timeoutMs: number) =>
        Effect.gen(function*() {
          const deadline = Date.now() + timeoutMs
          while (exited === undefined && Date.now() < deadline) yield* Effect.sleep("20 millis")
          return exited !== undefined
        })
      const kill = (target: number, signal: NodeJS.Signals) => {
        try {
          process.kill(target, signal)
        } catch {
          // Already gone.
        }
      }
      const child: Child = {
        pid,
        stdout,
        stderr,
        exit: () => exited,
        awaitExit,
        signal: (signal) => kill(pid, signal)
      }
      return { child, spawnedAt }
    }),
    ({ child }) =>
      Effect.gen(function*() {
        try {
          process.kill(-child.pid, "SIGKILL")
        } catch {
          // The group is gone.
        }
        yield* child.awaitExit(10_000)
      })
  )

/** Polls `check` every `everyMs` until it returns a value; dies after `timeoutMs` with `why()`. */
const waitFor = <A>(
  what: string,
  check: Effect.Effect<A | undefined>,
  timeoutMs: number,
  why: () => string,
  everyMs = 20
): Effect.Effect<A> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const value = yield* check
      if (value !== undefined) return value
      if (Date.now() > deadline) {
        return yield* Effect.dieMessage(`agent-figures: no ${what} within ${timeoutMs} ms. ${why()}`)
      }
      yield* Effect.sleep(`${everyMs} millis`)
    }
  })

const tail = (lines: ReadonlyArray<Line>, n = 10) =>
  lines.length === 0 ? "(nothing)" : lines.slice(-n).map((line) => line.text).join("\n")

// ---------------------------------------------------------------------------------------
// The control plane
// ---------------------------------------------------------------------------------------

const Started = Schema.parseJson(Schema.Struct({ url: Schema.String, trustFile: Schema.String }))
const Published = Schema.Struct({ rolloutId: Schema.String })
const Hosts = Schema.Record({ key: Schema.String, value: Schema.Struct({ state: Schema.String }) })
const Events = Schema.Array(Schema.Struct({
  envelope: Schema.Struct({
    rolloutId: Schema.String,
    event: Schema.Struct({ kind: Schema.String })
  })
}))
const BootLine = Schema.parseJson(Schema.Struct({
  message: Schema.Unknown,
  annotations: Schema.optional(Schema.Struct({ ms: Schema.optional(Schema.Number) }))
}))

const operator = <A, I>(url: string, path: string, schema: Schema.Schema<A, I>, body?: unknown): Effect.Effect<A> =>
  Effect.tryPromise(async () => {
    const response = await fetch(
      `${url}${path}`,
      body === undefined ? {} : {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body)
      }
    )
    const text = await response.text()
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}: ${text}`)
    return JSON.parse(text) as unknown
  }).pipe(Effect.flatMap(Schema.decodeUnknown(schema)), Effect.orDie)

const publish = (url: string, hostname: string) =>
  operator(url, "/v1/operator/rollouts", Published, {
    channel: "stable",
    hosts: [{ hostname, targetClosure: TARGET }],
    soakMinutes: 0
  })

const startControlPlane = (dir: string) =>
  Effect.gen(function*() {
    const { child } = yield* start(TSX, ["--conditions=@nixfleet/source", CONTROL_PLANE, "--dir", dir])
    const line = yield* waitFor(
      "start line from the dev control plane",
      Effect.sync(() => child.stdout[0]?.text),
      30_000,
      () => `stderr: ${tail(child.stderr)}`
    )
    return yield* Schema.decode(Started)(line).pipe(Effect.orDie)
  })

// ---------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------

const vmRssKiB = (pid: number): number => {
  const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status)
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(match[1])
}

interface RunFigures {
  readonly spawnToBootMs: number
  readonly bootAnnotatedMs: number | null
  readonly publishToAckMs: number
  readonly idleRssKiB: number
  readonly stopExit: string
  /** The baselines, measured in the same run: spawn → exit of `node -e 0`, and an idle node's RSS. */
  readonly nodeExitMs: number
  readonly nodeIdleRssKiB: number
}

/**
 * How the agent is started: `installed`, the bin script executed through its shebang (its
 * node flags and environment); `plain`, `node <bin script>`, without them.
 */
export type Launch = "installed" | "plain"

const launch = (how: Launch, args: ReadonlyArray<string>): readonly [string, ReadonlyArray<string>] =>
  how === "installed" ? [CLI, args] : [process.execPath, [CLI, ...args]]

/** Spawn → exit of `node -e 0`, in milliseconds. */
const nodeExitMs = (): number => {
  const start = performance.now()
  spawnSync(process.execPath, ["-e", "0"], { stdio: "ignore" })
  return performance.now() - start
}

/** The RSS of a node process idling on a timer, after 2 s. */
const nodeIdleRssKiB = Effect.scoped(Effect.gen(function*() {
  const { child } = yield* start(process.execPath, ["-e", "setInterval(() => {}, 1000)"])
  yield* Effect.sleep("2 seconds")
  return vmRssKiB(child.pid)
}))

const isBootLine = (text: string) => text.includes("boot recovery done")

const run = (cp: { readonly url: string; readonly trustFile: string }, root: string, index: number, how: Launch) =>
  Effect.scoped(Effect.gen(function*() {
    const hostname = `bench-${how}-${index + 1}`
    const dir = Path.join(root, hostname)
    const stateDir = Path.join(dir, "state")
    Fs.mkdirSync(stateDir, { recursive: true })
    const currentSystem = Path.join(dir, "current-system")
    Fs.symlinkSync(`/nix/store/${RUNNING}`, currentSystem)

    const { child: agent, spawnedAt } = yield* start(
      ...launch(how, [
        "run",
        "--control-plane-url",
        cp.url,
        "--machine-id",
        hostname,
        "--trust-file",
        cp.trustFile,
        "--state-dir",
        stateDir,
        "--current-system-path",
        currentSystem,
        "--health-checks-file",
        Path.join(dir, "no-health-checks.json"),
        "--ssh-host-key-file",
        Path.join(dir, "no-ssh-host-key"),
        "--log-format",
        "json"
      ]),
      { NIXFLEET_AGENT_ACTIVATION_TEST_MODE: "1", NIXFLEET_AGENT_PROBE_TEST_MODE: "1" }
    )

    // (1) spawn → `boot recovery done`.
    const bootLine = yield* waitFor(
      "`boot recovery done` log line on the agent's stderr",
      Effect.sync(() => agent.stderr.find((line) => isBootLine(line.text))),
      30_000,
      () =>
        `The agent ${agent.exit() === undefined ? "still runs" : `exited ${JSON.stringify(agent.exit())}`}; ` +
        `it printed ${agent.stderr.length} stderr line(s): ${tail(agent.stderr)}`
    )
    const decoded = Schema.decodeOption(BootLine)(bootLine.text)
    const bootAnnotatedMs = decoded._tag === "Some" ? decoded.value.annotations?.ms ?? null : null

    // Let the dispatch long-poll park, as on an idle host.
    yield* Effect.sleep("1 second")

    // (2) publish → DispatchAck recorded.
    const publishedAt = performance.now()
    const { rolloutId } = yield* publish(cp.url, hostname)
    const ackedAt = yield* waitFor(
      `DispatchAck for ${rolloutId}`,
      Effect.map(
        operator(cp.url, "/v1/operator/events", Events),
        (events) =>
          events.some((e) => e.envelope.rolloutId === rolloutId && e.envelope.event.kind === "DispatchAck")
            ? performance.now()
            : undefined
      ),
      30_000,
      () => `agent stderr: ${tail(agent.stderr)}`,
      10
    )

    // (3) converged, then idle.
    yield* waitFor(
      `Converged for ${rolloutId}`,
      Effect.map(
        operator(cp.url, "/v1/operator/hosts", Hosts),
        (hosts) => hosts[`${rolloutId}/${hostname}`]?.state === "Converged" ? true : undefined
      ),
      60_000,
      () => `agent stderr: ${tail(agent.stderr)}`,
      100
    )
    yield* Effect.sleep(`${IDLE_MS} millis`)
    if (agent.exit() !== undefined) {
      return yield* Effect.dieMessage(`agent-figures: the agent exited while idle: ${JSON.stringify(agent.exit())}`)
    }
    const idleRssKiB = vmRssKiB(agent.pid)

    agent.signal("SIGTERM")
    const stopped = yield* agent.awaitExit(30_000)
    const exit = agent.exit()
    const figures: RunFigures = {
      spawnToBootMs: bootLine.at - spawnedAt,
      bootAnnotatedMs,
      publishToAckMs: ackedAt - publishedAt,
      idleRssKiB,
      stopExit: stopped && exit !== undefined ? String(exit.code ?? exit.signal) : "still running after 30 s",
      nodeExitMs: nodeExitMs(),
      nodeIdleRssKiB: yield* nodeIdleRssKiB
    }
    return figures
  }))

/** The medians of RUNS fresh agents started `how`. */
export interface AgentFigures {
  readonly launch: Launch
  readonly runs: ReadonlyArray<RunFigures>
  readonly spawnToBootMs: number
  readonly bootAnnotatedMs: number | null
  readonly publishToAckMs: number
  readonly idleRssKiB: number
  readonly nodeExitMs: number
  readonly nodeIdleRssKiB: number
}

/** RUNS fresh agents started `how` against one dev control plane. */
export const agentFigures = (how: Launch): Effect.Effect<AgentFigures> =>
  Effect.scoped(Effect.gen(function*() {
    if (!Fs.existsSync(BUNDLE)) {
      return yield* Effect.dieMessage(
        `agent-figures: ${Path.relative(REPO, BUNDLE)} is missing; run \`npm run build\` first (the command ` +
          "line is measured as installed, from the bundle)"
      )
    }
    const root = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-agent-figures-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const cp = yield* startControlPlane(Path.join(root, "cp"))
    // The control plane answers agents only once something was published.
    yield* publish(cp.url, "bench-ready")

    const runs: Array<RunFigures> = []
    for (let i = 0; i < RUNS; i++) runs.push(yield* run(cp, root, i, how))
    const annotated = runs.flatMap((r) => (r.bootAnnotatedMs === null ? [] : [r.bootAnnotatedMs]))
    return {
      launch: how,
      runs,
      spawnToBootMs: median(runs.map((r) => r.spawnToBootMs)),
      bootAnnotatedMs: annotated.length === 0 ? null : median(annotated),
      publishToAckMs: median(runs.map((r) => r.publishToAckMs)),
      idleRssKiB: median(runs.map((r) => r.idleRssKiB)),
      nodeExitMs: median(runs.map((r) => r.nodeExitMs)),
      nodeIdleRssKiB: median(runs.map((r) => r.nodeIdleRssKiB))
    }
  }))

export const range = (values: ReadonlyArray<number>, digits: number) =>
  `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`

const bench = Effect.gen(function*() {
  const figures = yield* agentFigures("installed")
  const { runs } = figures
  const stopExits = runs.map((r) => r.stopExit)
  process.stdout.write([
    `agent-figures: medians of ${RUNS} fresh agents (installed command line, test mode) against the dev control plane process`,
    `  spawn → "boot recovery done":       ${figures.spawnToBootMs.toFixed(0)} ms (range ${
      range(runs.map((r) => r.spawnToBootMs), 0)
    }; boot heartbeat itself: ${
      figures.bootAnnotatedMs === null ? "n/a" : `${figures.bootAnnotatedMs.toFixed(0)} ms`
    }; aim: <= 500 ms)`,
    `    baseline, spawn → exit of node -e 0: ${figures.nodeExitMs.toFixed(0)} ms`,
    `  publish → DispatchAck recorded:     ${figures.publishToAckMs.toFixed(0)} ms (range ${
      range(runs.map((r) => r.publishToAckMs), 0)
    }; polled every 10 ms)`,
    `  idle RSS after converging + ${IDLE_MS / 1000} s: ${(figures.idleRssKiB / 1024).toFixed(1)} MiB (range ${
      range(runs.map((r) => r.idleRssKiB / 1024), 1)
    } MiB; aim: <= 80 MiB)`,
    `    baseline, node idling on a timer:   ${(figures.nodeIdleRssKiB / 1024).toFixed(1)} MiB`,
    `  exit status on SIGTERM:             ${stopExits.join(", ")}`,
    JSON.stringify({
      bench: "agent-figures",
      runs: RUNS,
      spawnToBootRecoveryMs: figures.spawnToBootMs,
      bootRecoveryAnnotatedMs: figures.bootAnnotatedMs,
      nodeExitMs: figures.nodeExitMs,
      publishToDispatchAckMs: figures.publishToAckMs,
      idleRssBytes: figures.idleRssKiB * 1024,
      nodeIdleRssBytes: figures.nodeIdleRssKiB * 1024,
      stopExitStatuses: stopExits
    }),
    ""
  ].join("\n"))
})

export const benchAgentFigures = (): Promise<void> => Effect.runPromise(bench)
