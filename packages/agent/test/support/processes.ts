/**
 * The agent and the dev control plane as separate processes, for the tests that run them
 * so: the CLI as users run it (`packages/agent/bin`, the bundle) and the dev control plane's
 * bundle, spawned with node from the repository root (each in a process group of its own,
 * killed with the test's scope), driven through the control plane's operator API. Both
 * bundles start in a fraction of a second, where the sources through tsx take seconds
 * each (more under load); the test run rebuilds them first (scripts/testBuild.ts).
 */
import { Effect, Schema, type Scope } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { CONTROL_PLANE_BUNDLE } from "../../../../scripts/bundle.js"
import { PRIOR } from "./fixtures.js"

export const REPO = Path.resolve(__dirname, "../../../..")
/** The `nixfleet-agent` command as installed: the bin script, which loads the bundle. */
export const AGENT = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")
/** The command line's source, for the tests that look at the modules it loads. */
export const AGENT_SOURCE = Path.join(REPO, "packages/agent/src/bin.ts")
export const HOST = "web-01"

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface Spawned {
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

/** The node arguments that run `script`: TypeScript through tsx (as a loader, not a wrapper relaying signals). */
const scriptArgs = (script: string): ReadonlyArray<string> =>
  script.endsWith(".ts") ? ["--import", "tsx", "--conditions=@nixfleet/source", script] : [script]

/**
 * Spawns `node <script> ...args` (a `.ts` script from the sources through tsx) from the
 * repository root in a new process group; the scope's finalizer SIGKILLs the group and
 * waits for the leader.
 */
export const spawnScript = (
  name: string,
  script: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>
): Effect.Effect<Spawned, never, Scope.Scope> =>
  spawnProgram(name, process.execPath, [...scriptArgs(script), ...args], env)

/** Any program as {@link spawnScript} spawns node (e.g. `unshare`, which then execs node). */
export const spawnProgram = (
  name: string,
  program: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>
): Effect.Effect<Spawned, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(program, args, {
        cwd: REPO,
        env: environment(env),
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
      if (child.pid === undefined) throw new Error(`${name}: cannot spawn ${program} ${args.join(" ")}`)
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
export const eventually = <E>(
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

export const tail = (lines: ReadonlyArray<string>, n = 20) =>
  lines.length === 0 ? "(nothing)" : lines.slice(-n).join("\n")

/** A temporary directory, removed with the scope. */
export const tempDirectory = Effect.acquireRelease(
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
export const Accepted = Schema.Array(Schema.Struct({ envelope: Envelope, duplicate: Schema.Boolean }))
export type Accepted = typeof Accepted.Type

export const Published = Schema.Struct({ rolloutId: Schema.String, soakDueAt: Schema.String })

export interface ControlPlane {
  readonly url: string
  readonly trustFile: string
  readonly process: Spawned
}

export const startControlPlane = (dir: string): Effect.Effect<ControlPlane, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const spawned = yield* spawnScript("control plane", CONTROL_PLANE_BUNDLE, ["--dir", dir], {})
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

export const operator = <A, I>(
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

export const publish = (cp: ControlPlane, targetClosure: string, soakMinutes: number) =>
  operator(cp, "/v1/operator/rollouts", Published, {
    channel: "stable",
    hosts: [{ hostname: HOST, targetClosure }],
    soakMinutes
  })

export const hostRecord = (cp: ControlPlane, rolloutId: string) =>
  Effect.map(operator(cp, "/v1/operator/hosts", Hosts), (hosts) => hosts[`${rolloutId}/${HOST}`])

export const events = (cp: ControlPlane) => operator(cp, "/v1/operator/events", Accepted)

/** The operator API's raw JSON for `path`, or the error, as text (for failure messages). */
const operatorText = (cp: ControlPlane, path: string) =>
  Effect.promise(() =>
    fetch(`${cp.url}${path}`).then((response) => response.text(), (e: unknown) => `GET ${path} failed: ${String(e)}`)
  )

/** Waits until the host record of `rolloutId` is in `state`; otherwise shows the record, the audit log and the agent. */
export const awaitState = (
  cp: ControlPlane,
  rolloutId: string,
  state: string,
  agent: () => Spawned,
  timeoutMs: number
) =>
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
export const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------

export interface AgentPaths {
  readonly stateDir: string
  readonly currentSystemPath: string
  /** Default: a file that does not exist (no probes). */
  readonly healthChecksFile?: string
  readonly extraFlags?: ReadonlyArray<string>
}

export const TEST_MODES = { NIXFLEET_AGENT_ACTIVATION_TEST_MODE: "1", NIXFLEET_AGENT_PROBE_TEST_MODE: "1" }

/** `run`, from `bin` (default: the installed command, {@link AGENT}). */
export const startAgent = (
  cp: ControlPlane,
  paths: AgentPaths,
  env: Readonly<Record<string, string>>,
  bin: string = AGENT
): Effect.Effect<Spawned, never, Scope.Scope> => spawnScript("agent", bin, agentArgs(cp, paths), env)

const agentArgs = (cp: ControlPlane, paths: AgentPaths): Array<string> => [
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
  paths.healthChecksFile ?? Path.join(paths.stateDir, "..", "no-health-checks.json"),
  "--ssh-host-key-file",
  Path.join(paths.stateDir, "..", "no-ssh-host-key"),
  "--log-format",
  "json",
  ...(paths.extraFlags ?? [])
]

/** The node arguments {@link startAgent} runs the agent with. */
export const agentNodeArgs = (cp: ControlPlane, paths: AgentPaths): ReadonlyArray<string> => [
  AGENT,
  ...agentArgs(cp, paths)
]

/** A state directory and a current-system link to `/nix/store/${PRIOR}`, under `dir`. */
export const testModeHost = (dir: string): AgentPaths => {
  const stateDir = Path.join(dir, "state")
  Fs.mkdirSync(stateDir)
  const currentSystemPath = Path.join(dir, "current-system")
  Fs.symlinkSync(`/nix/store/${PRIOR}`, currentSystemPath)
  return { stateDir, currentSystemPath }
}

export const logged = (agent: Spawned, message: string) => agent.stderr().some((line) => line.includes(message))
