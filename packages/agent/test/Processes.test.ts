/**
 * The agent and the dev control plane as separate processes, as they run on a host: both
 * spawned as `node --import tsx` from the repository root (each in a process group of its
 * own, killed with the test's scope), driven and observed only through the control
 * plane's operator API and the agent's JSON log lines on stderr.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema, type Scope } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import {
  boot,
  buildClosure,
  currentClosure,
  makeSandbox,
  type NixSandbox,
  profileClosure
} from "../../../scripts/nix/fixtures.js"
import { describeNix } from "./nix/describeNix.js"
import { PRIOR, TARGET } from "./support/fixtures.js"

const REPO = Path.resolve(__dirname, "../../..")
const AGENT = Path.join(REPO, "packages/agent/src/bin.ts")
const CONTROL_PLANE = Path.join(REPO, "packages/dev-control-plane/src/main.ts")
const HOST = "web-01"

const UPSTREAM_KEYS: Readonly<Record<string, ReadonlyArray<string>>> = {
  DispatchAck: ["currentClosureAtDispatch", "kind", "receivedAt", "seq"],
  ActivationStarted: ["kind", "seq", "startedAt", "switchMethod"],
  ActivationCompleted: ["completedAt", "exitCode", "kind", "observedCurrentClosure", "seq"],
  Converged: ["convergedAt", "currentClosure", "kind", "seq"]
}
const KINDS = ["DispatchAck", "ActivationStarted", "ActivationCompleted", "Converged"]

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Spawned {
  readonly name: string
  /** The node process, leader of its own process group. */
  readonly pid: number
  /** Complete stdout / stderr lines so far. */
  readonly stdout: () => ReadonlyArray<string>
  readonly stderr: () => ReadonlyArray<string>
  readonly exited: () => Exited | undefined
  /** Waits for the leader to exit, at most `timeoutMs`; undefined if it did not. */
  readonly awaitExit: (timeoutMs: number) => Effect.Effect<Exited | undefined>
  /** Signals the whole process group (node and anything it spawned). */
  readonly signalGroup: (signal: NodeJS.Signals) => void
  /** Signals the leader only. */
  readonly signal: (signal: NodeJS.Signals) => void
}

const lineCollector = () => {
  const lines: Array<string> = []
  let partial = ""
  return {
    lines,
    push: (chunk: string) => {
      const parts = (partial + chunk).split("\n")
      partial = parts.pop() ?? ""
      lines.push(...parts)
    }
  }
}

const ignoreMissing = (f: () => void) => {
  try {
    f()
  } catch (e) {
    if (!(e instanceof Error && "code" in e && e.code === "ESRCH")) throw e
  }
}

/** The test's environment without any `NIXFLEET_AGENT_*` variable, then `extra`. */
const environment = (extra: Readonly<Record<string, string>>): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("NIXFLEET_AGENT_")) env[key] = value
  }
  return { ...env, ...extra }
}

/**
 * Spawns `node --import tsx --conditions=@nixfleet/source <script> ...args` from the
 * repository root in a new process group (tsx as a loader, so signals reach the program
 * itself, not a wrapper relaying them); the scope's finalizer SIGKILLs the group and waits
 * for the leader.
 */
const spawnTsx = (
  name: string,
  script: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>
): Effect.Effect<Spawned, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["--import", "tsx", "--conditions=@nixfleet/source", script, ...args], {
        cwd: REPO,
        env: environment(env),
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
      if (child.pid === undefined) throw new Error(`${name}: cannot spawn ${script}`)
      const pid = child.pid
      const out = lineCollector()
      const err = lineCollector()
      child.stdout.setEncoding("utf8").on("data", out.push)
      child.stderr.setEncoding("utf8").on("data", err.push)
      let exit: Exited | undefined
      const waiters: Array<(exit: Exited) => void> = []
      child.on("exit", (code, signal) => {
        exit = { code, signal }
        for (const waiter of waiters.splice(0)) waiter(exit)
      })
      const awaitExit = (timeoutMs: number) =>
        Effect.async<Exited | undefined>((resume) => {
          if (exit !== undefined) return resume(Effect.succeed(exit))
          const timer = setTimeout(() => resume(Effect.succeed(undefined)), timeoutMs)
          waiters.push((done) => {
            clearTimeout(timer)
            resume(Effect.succeed(done))
          })
        })
      const spawned: Spawned = {
        name,
        pid,
        stdout: () => [...out.lines],
        stderr: () => [...err.lines],
        exited: () => exit,
        awaitExit,
        signalGroup: (signal) => ignoreMissing(() => process.kill(-pid, signal)),
        signal: (signal) => ignoreMissing(() => process.kill(pid, signal))
      }
      return spawned
    }),
    (spawned) =>
      Effect.gen(function*() {
        // The group may outlive its leader (a switch the agent detached): always kill it.
        spawned.signalGroup("SIGKILL")
        yield* spawned.awaitExit(10_000)
      })
  )

/** Polls `check` every 50 ms until it holds; fails after `timeoutMs` with `diagnostics`. */
const eventually = <E>(
  what: string,
  check: Effect.Effect<boolean, E>,
  timeoutMs: number,
  diagnostics: Effect.Effect<string, E> = Effect.succeed("")
): Effect.Effect<void, E | Error> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!(yield* check)) {
      if (Date.now() > deadline) {
        return yield* Effect.fail(
          new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${yield* diagnostics}`)
        )
      }
      yield* Effect.sleep("50 millis")
    }
  })

const tail = (lines: ReadonlyArray<string>, n = 20) => lines.length === 0 ? "(nothing)" : lines.slice(-n).join("\n")

/** A temporary directory, removed with the scope. */
const tempDirectory = Effect.acquireRelease(
  Effect.sync(() => Fs.realpathSync(Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-processes-")))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

// ---------------------------------------------------------------------------------------
// The control plane and its operator API
// ---------------------------------------------------------------------------------------

const Started = Schema.parseJson(Schema.Struct({
  url: Schema.String,
  trustFile: Schema.String,
  caFile: Schema.NullOr(Schema.String)
}))

const HostRecord = Schema.Struct({
  state: Schema.String,
  targetClosure: Schema.String,
  currentClosure: Schema.NullOr(Schema.String),
  currentClosureAtDispatch: Schema.NullOr(Schema.String),
  lastEventSeq: Schema.Number
})
const Hosts = Schema.Record({ key: Schema.String, value: HostRecord })

/** Every key kept (the checks compare key sets). */
const Open = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const Event = Schema.Struct({ kind: Schema.String, seq: Schema.Number }, Open)
const Envelope = Schema.Struct({ hostname: Schema.String, rolloutId: Schema.String, event: Event }, Open)
const Accepted = Schema.Array(Schema.Struct({ envelope: Envelope, duplicate: Schema.Boolean }))
type Accepted = typeof Accepted.Type

const Published = Schema.Struct({ rolloutId: Schema.String, soakDueAt: Schema.String })

interface ControlPlane {
  readonly url: string
  readonly trustFile: string
  readonly process: Spawned
}

const startControlPlane = (dir: string): Effect.Effect<ControlPlane, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const spawned = yield* spawnTsx("control plane", CONTROL_PLANE, ["--dir", dir], {})
    yield* eventually(
      "the control plane's start line",
      Effect.sync(() => spawned.stdout().length > 0 || spawned.exited() !== undefined),
      30_000,
      Effect.sync(() => tail(spawned.stderr()))
    )
    const line = spawned.stdout()[0]
    if (line === undefined) {
      return yield* Effect.fail(
        new Error(`the control plane exited (${JSON.stringify(spawned.exited())}): ${tail(spawned.stderr())}`)
      )
    }
    const started = yield* Schema.decode(Started)(line).pipe(Effect.mapError((e) => new Error(e.message)))
    return { url: started.url, trustFile: started.trustFile, process: spawned }
  })

const operator = <A, I>(
  cp: ControlPlane,
  path: string,
  schema: Schema.Schema<A, I>,
  body?: unknown
): Effect.Effect<A, Error> =>
  Effect.tryPromise({
    try: async () => {
      const response = await fetch(
        `${cp.url}${path}`,
        body === undefined ? {} : {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body)
        }
      )
      const text = await response.text()
      if (!response.ok) throw new Error(`HTTP ${response.status}: ${text}`)
      return JSON.parse(text) as unknown
    },
    catch: (e) => new Error(`${body === undefined ? "GET" : "POST"} ${path}: ${String(e)}`)
  }).pipe(
    Effect.flatMap((json) => Schema.decodeUnknown(schema)(json)),
    Effect.mapError((e) => e instanceof Error ? e : new Error(String(e)))
  )

const publish = (cp: ControlPlane, targetClosure: string, soakMinutes: number) =>
  operator(cp, "/v1/operator/rollouts", Published, {
    channel: "stable",
    hosts: [{ hostname: HOST, targetClosure }],
    soakMinutes
  })

const hostRecord = (cp: ControlPlane, rolloutId: string) =>
  Effect.map(operator(cp, "/v1/operator/hosts", Hosts), (hosts) => hosts[`${rolloutId}/${HOST}`])

const events = (cp: ControlPlane) => operator(cp, "/v1/operator/events", Accepted)

/** The operator API's raw JSON for `path`, or the error, as text (for failure messages). */
const operatorText = (cp: ControlPlane, path: string) =>
  Effect.promise(() =>
    fetch(`${cp.url}${path}`).then((response) => response.text(), (e: unknown) => `GET ${path} failed: ${String(e)}`)
  )

/** Waits until the host record of `rolloutId` is in `state`; otherwise shows the record, the audit log and the agent. */
const awaitState = (cp: ControlPlane, rolloutId: string, state: string, agent: () => Spawned, timeoutMs: number) =>
  eventually(
    `${rolloutId}/${HOST} to be ${state}`,
    Effect.map(hostRecord(cp, rolloutId), (record) => record?.state === state),
    timeoutMs,
    Effect.gen(function*() {
      const hosts = yield* operatorText(cp, "/v1/operator/hosts")
      const log = yield* operatorText(cp, "/v1/operator/log")
      return `host records: ${hosts}\ncontrol plane log: ${log}\n` +
        `agent exit: ${JSON.stringify(agent().exited())}\nagent stderr (tail):\n${tail(agent().stderr(), 40)}`
    })
  )

/** Whether any process of the group `pgid` is still there. */
const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * The outbox delivered every event once and in order: the non-duplicate entries have
 * seqs 1..n in arrival order and the kinds of a rollout that converged; a resend is only
 * ever flagged `duplicate` and repeats a seq already recorded. Every envelope carries
 * exactly the upstream keys.
 */
const expectDeliveredInOrder = (accepted: Accepted, rolloutId: string) => {
  const seen = new Set<number>()
  for (const { duplicate, envelope } of accepted) {
    expect(Object.keys(envelope).sort()).toStrictEqual(["event", "hostname", "rolloutId"])
    expect({ hostname: envelope.hostname, rolloutId: envelope.rolloutId }).toStrictEqual({ hostname: HOST, rolloutId })
    expect(Object.keys(envelope.event).sort(), envelope.event.kind).toStrictEqual(UPSTREAM_KEYS[envelope.event.kind])
    if (duplicate) expect(seen.has(envelope.event.seq), `duplicate of seq ${envelope.event.seq}`).toBe(true)
    else seen.add(envelope.event.seq)
  }
  const fresh = accepted.filter((entry) => !entry.duplicate).map((entry) => entry.envelope.event)
  expect(fresh.map((event) => event.seq)).toStrictEqual(fresh.map((_, i) => i + 1))
  expect(fresh.map((event) => event.kind)).toStrictEqual(KINDS)
  return fresh
}

// ---------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------

interface AgentPaths {
  readonly stateDir: string
  readonly currentSystemPath: string
  readonly extraFlags?: ReadonlyArray<string>
}

const TEST_MODES = { NIXFLEET_AGENT_ACTIVATION_TEST_MODE: "1", NIXFLEET_AGENT_PROBE_TEST_MODE: "1" }

const startAgent = (
  cp: ControlPlane,
  paths: AgentPaths,
  env: Readonly<Record<string, string>>
): Effect.Effect<Spawned, never, Scope.Scope> =>
  spawnTsx("agent", AGENT, [
    "run",
    "--control-plane-url",
    cp.url,
    "--machine-id",
    HOST,
    "--trust-file",
    cp.trustFile,
    "--state-dir",
    paths.stateDir,
    "--current-system-path",
    paths.currentSystemPath,
    "--health-checks-file",
    Path.join(paths.stateDir, "..", "no-health-checks.json"),
    "--ssh-host-key-file",
    Path.join(paths.stateDir, "..", "no-ssh-host-key"),
    "--log-format",
    "json",
    ...(paths.extraFlags ?? [])
  ], env)

/** A state directory and a current-system link to `/nix/store/${PRIOR}`, under `dir`. */
const testModeHost = (dir: string): AgentPaths => {
  const stateDir = Path.join(dir, "state")
  Fs.mkdirSync(stateDir)
  const currentSystemPath = Path.join(dir, "current-system")
  Fs.symlinkSync(`/nix/store/${PRIOR}`, currentSystemPath)
  return { stateDir, currentSystemPath }
}

const logged = (agent: Spawned, message: string) => agent.stderr().some((line) => line.includes(message))

const TIMEOUT = 90_000

describe("agent and dev control plane as separate processes", () => {
  it.scopedLive(
    "a rollout reaches Converged in activation test mode; events have seqs 1..n and exactly the upstream keys",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const agent = yield* startAgent(cp, host, TEST_MODES)
        const { rolloutId } = yield* publish(cp, TARGET, 0.05)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)

        const accepted = yield* events(cp)
        expect(accepted.filter((entry) => entry.duplicate)).toStrictEqual([])
        const fresh = expectDeliveredInOrder(accepted, rolloutId)
        // The closure that ran at dispatch (the rollback target), and the one it converged on.
        expect(fresh[0]).toMatchObject({ kind: "DispatchAck", currentClosureAtDispatch: PRIOR })
        expect(fresh[3]).toMatchObject({ kind: "Converged", currentClosure: TARGET })
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({
          state: "Converged",
          currentClosureAtDispatch: PRIOR,
          currentClosure: TARGET,
          lastEventSeq: 4
        })
        // Test mode activates nothing: the link is untouched.
        expect(Fs.readlinkSync(host.currentSystemPath)).toBe(`/nix/store/${PRIOR}`)

        // SIGTERM: a clean stop, exit 0, within the 25 s drain.
        agent.signal("SIGTERM")
        expect(yield* agent.awaitExit(30_000), tail(agent.stderr())).toStrictEqual({ code: 0, signal: null })
      }),
    TIMEOUT
  )

  it.scopedLive(
    "an agent SIGKILLed mid-soak and restarted rehydrates from the snapshot, converges, and loses no event",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const first = yield* startAgent(cp, host, TEST_MODES)
        let current = first
        const { rolloutId, soakDueAt } = yield* publish(cp, TARGET, 0.3)
        yield* awaitState(cp, rolloutId, "Soaking", () => current, 45_000)
        // Still inside the soak: the convergence is the restarted agent's to decide.
        expect(Date.parse(soakDueAt) - Date.now()).toBeGreaterThan(3_000)

        first.signalGroup("SIGKILL")
        expect(yield* first.awaitExit(10_000)).toStrictEqual({ code: null, signal: "SIGKILL" })
        // The agent and anything it ran: the whole group is gone.
        yield* eventually(
          "the killed agent's process group to be gone",
          Effect.sync(() => !groupAlive(first.pid)),
          5_000
        )
        expect((yield* hostRecord(cp, rolloutId))?.state).toBe("Soaking")

        const second = yield* startAgent(cp, host, TEST_MODES)
        current = second
        yield* awaitState(cp, rolloutId, "Converged", () => current, 60_000)

        const fresh = expectDeliveredInOrder(yield* events(cp), rolloutId)
        expect(fresh[3]).toMatchObject({ kind: "Converged", currentClosure: TARGET })
        // Converged no earlier than the soak allowed.
        expect(Date.parse(String(fresh[3]?.["convergedAt"]))).toBeGreaterThanOrEqual(Date.parse(soakDueAt))
        expect(
          logged(second, "rollout rehydrated from the control plane"),
          `the restarted agent's stderr has no "rollout rehydrated from the control plane" line; ` +
            `it printed ${second.stderr().length} line(s):\n${tail(second.stderr())}`
        ).toBe(true)
      }),
    120_000
  )
})

describeNix("agent and dev control plane as separate processes, real Nix", () => {
  const nixFlags = (sandbox: NixSandbox) => [
    "--system-profile",
    sandbox.profile,
    "--switch-method",
    "direct",
    "--switch-lock-path",
    sandbox.lockPath,
    "--verify-timeout-secs",
    "60"
  ]

  it.scopedLive(
    "a published closure is realised, set in the profile and switched to: Converged, link and profile on it",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const a = yield* buildClosure(sandbox, { name: "nixos-system-web-01-a", switch: { _tag: "Flip" } })
        const b = yield* buildClosure(sandbox, { name: "nixos-system-web-01-b", switch: { _tag: "Flip" } })
        yield* boot(sandbox, a)
        const cp = yield* startControlPlane(Path.join(sandbox.root, "cp"))
        // No activation test mode: the agent's Nix subprocesses get the sandbox's NIX_CONFIG.
        const agent = yield* startAgent(cp, {
          stateDir: sandbox.stateDir,
          currentSystemPath: sandbox.currentSystem,
          extraFlags: nixFlags(sandbox)
        }, { ...sandbox.env, NIXFLEET_AGENT_PROBE_TEST_MODE: "1" })
        const { rolloutId } = yield* publish(cp, b, 0.05)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 90_000)

        expect(yield* currentClosure(sandbox)).toBe(b)
        expect(yield* profileClosure(sandbox)).toBe(b)
        const fresh = expectDeliveredInOrder(yield* events(cp), rolloutId)
        expect(fresh[0]).toMatchObject({ kind: "DispatchAck", currentClosureAtDispatch: a })
        expect(fresh[2]).toMatchObject({ kind: "ActivationCompleted", exitCode: 0, observedCurrentClosure: b })
        expect(yield* hostRecord(cp, rolloutId)).toMatchObject({ currentClosureAtDispatch: a, currentClosure: b })
      }),
    180_000
  )
})
