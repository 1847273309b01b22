/**
 * `NixfleetAgent.layer(options)` keeps a host as safe as `run`: the trust file is checked and
 * the state directory claimed before anything is written, a second agent on the same state
 * directory is refused while `nixfleet-agent status` answers from the first one's socket,
 * the environment is never read, an ambient `HttpClient` is never used, and a required
 * setting that cannot be used is an error naming its key. Against the dev control plane in
 * this process, activation test mode.
 */
import { HttpClient, HttpClientError } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, start } from "@nixfleet/dev-control-plane"
import { Config, ConfigError, ConfigProvider, Context, Effect, Exit, Layer, Schema, Scope } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { statusFile, statusSocket } from "../src/config/stateFiles.js"
import { ACTIVATION_TEST_MODE } from "../src/config/testGates.js"
import * as NixfleetAgent from "../src/NixfleetAgent.js"
import { StatusReportJson } from "../src/status/StatusReport.js"
import { TARGET } from "./support/fixtures.js"
import { hostDirectory as makeHostDirectory } from "./support/hostDirectory.js"
import { unusedPort } from "./support/ports.js"
import { AGENT, eventually, spawnScript, tail } from "./support/processes.js"

const HOST = "web-01"
const TIMEOUT = 60_000

const hostDirectory = makeHostDirectory("nixfleet-embed-")

const options = (cp: DevControlPlane, dir: string): NixfleetAgent.Options & { readonly stateDir: string } => ({
  machineId: HOST,
  controlPlaneUrl: cp.url,
  trustFile: cp.trustFile,
  stateDir: Path.join(dir, "state"),
  currentSystemPath: Path.join(dir, "current-system"),
  // Neither exists: no probes, no key (plain http on loopback needs none).
  healthChecksFile: Path.join(dir, "no-health-checks.json"),
  sshHostKeyFile: Path.join(dir, "no-ssh-host-key"),
  activationTestMode: true
})

/** A dev control plane, a host directory and the agent's options for them. */
const embeddedHost = Effect.gen(function*() {
  const cp = yield* start()
  const dir = yield* hostDirectory
  return { cp, dir, settings: options(cp, dir) }
})

/**
 * Builds the agent in a scope of its own (so a test can stop it and go on); the test's
 * scope closes it too.
 */
const startEmbedded = (
  settings: NixfleetAgent.Options,
  ambient: Layer.Layer<HttpClient.HttpClient> | Layer.Layer<never> = Layer.empty
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const stop = Scope.close(scope, Exit.void)
    yield* Effect.addFinalizer(() => stop)
    const layer = NixfleetAgent.layer(settings).pipe(Layer.provide(Layer.merge(NodeContext.layer, ambient)))
    const context = yield* Layer.buildWithScope(layer, scope)
    return { agent: Context.get(context, NixfleetAgent.NixfleetAgent), stop }
  })

/** Why the agent would not start. */
const startFailure = (settings: NixfleetAgent.Options) =>
  Effect.flip(Effect.scoped(Layer.build(NixfleetAgent.layer(settings).pipe(Layer.provide(NodeContext.layer)))))

const publish = (cp: DevControlPlane) =>
  Effect.map(
    cp.publishRollout({ channel: "stable", hosts: [{ hostname: HOST, targetClosure: TARGET }], soakMinutes: 0.02 }),
    ({ rolloutId }) => rolloutId
  )

/** Until the agent reports the rollout Converged and the control plane has it too. */
const awaitConverged = (cp: DevControlPlane, agent: NixfleetAgent.NixfleetAgentService, rolloutId: string) =>
  Effect.all([
    eventually(
      `${rolloutId} Converged in the agent's report`,
      Effect.map(
        agent.status,
        (report) => report.rollouts.some((rollout) => rollout.rolloutId === rolloutId && rollout.state === "Converged")
      ),
      30_000,
      Effect.map(agent.status, (report) => JSON.stringify(report.rollouts))
    ),
    eventually(
      `${rolloutId}/${HOST} Converged at the control plane`,
      Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state === "Converged"),
      30_000
    )
  ])

const expectAgentError = (error: unknown, reason: NixfleetAgent.NixfleetAgentError["reason"]) => {
  expect(error).toBeInstanceOf(NixfleetAgent.NixfleetAgentError)
  expect(error).toMatchObject({ reason })
}

/** Sets environment variables for the scope's lifetime, restoring what was there. */
const withEnvironment = (variables: Readonly<Record<string, string>>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const before = Object.keys(variables).map((key) => [key, process.env[key]] as const)
      Object.assign(process.env, variables)
      return before
    }),
    (before) =>
      Effect.sync(() => {
        for (const [key, value] of before) {
          if (value === undefined) delete process.env[key]
          else process.env[key] = value
        }
      })
  )

/** Whether something accepts connections on the loopback port. */
const listening = (port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

describe("NixfleetAgent.layer", () => {
  it.scopedLive(
    "an embedded agent converges a published rollout and stops when its scope closes",
    () =>
      Effect.gen(function*() {
        const { cp, settings } = yield* embeddedHost
        const rolloutId = yield* publish(cp)
        const { agent, stop } = yield* startEmbedded(settings)
        yield* awaitConverged(cp, agent, rolloutId)
        expect(Fs.statSync(statusSocket(settings.stateDir)).isSocket()).toBe(true)

        yield* stop.pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("stop hung") }))
        // Stopped: the socket is gone, the last report says so, and the state directory is
        // free again (a socket still answering would refuse the next agent).
        expect(Fs.existsSync(statusSocket(settings.stateDir))).toBe(false)
        const persisted = JSON.parse(Fs.readFileSync(statusFile(settings.stateDir), "utf8"))
        expect(persisted).toMatchObject({ agent: { running: false, lifecycle: "stopped" } })
        const next = yield* startEmbedded(settings)
        expect((yield* next.agent.status).agent).toMatchObject({ running: true, pid: process.pid })
      }),
    TIMEOUT
  )

  it.scopedLive(
    "a missing or invalid trust file refuses the start before the state directory is touched",
    () =>
      Effect.gen(function*() {
        const { cp, dir } = yield* embeddedHost
        const notJson = Path.join(dir, "not-json.json")
        Fs.writeFileSync(notJson, "{ trust me")
        const notTrust = Path.join(dir, "not-trust.json")
        Fs.writeFileSync(notTrust, JSON.stringify({ ciReleaseKey: "nope" }))
        for (const trustFile of [Path.join(dir, "missing.json"), notJson, notTrust]) {
          const settings = { ...options(cp, dir), trustFile }
          const error = yield* startFailure(settings)
          expectAgentError(error, "TrustFile")
          expect(error.message).toContain(trustFile)
          expect(Fs.existsSync(settings.stateDir), trustFile).toBe(false)
        }
        expect(yield* cp.requests).toStrictEqual([])
      }),
    TIMEOUT
  )

  it.scopedLive(
    "a second agent on the same state directory is refused; status answers live from the first",
    () =>
      Effect.gen(function*() {
        const { cp, settings } = yield* embeddedHost
        const rolloutId = yield* publish(cp)
        const { agent } = yield* startEmbedded(settings)
        yield* awaitConverged(cp, agent, rolloutId)

        const error = yield* startFailure(settings)
        expectAgentError(error, "AlreadyRunning")
        expect(error.message).toContain(Path.join(settings.stateDir, "agent.lock"))

        const status = yield* Effect.scoped(Effect.gen(function*() {
          const spawned = yield* spawnScript(
            "status",
            AGENT,
            ["status", "--state-dir", settings.stateDir, "--json"],
            {}
          )
          const exit = yield* spawned.awaitExit(30_000)
          return { code: exit?.code, stdout: spawned.stdout().join("\n"), stderr: spawned.stderr() }
        }))
        expect(status.code, tail(status.stderr)).toBe(0)
        const report = Schema.decodeUnknownSync(StatusReportJson)(status.stdout.trim())
        expect(report).toMatchObject({
          source: "live",
          agent: { running: true, lifecycle: "running", pid: process.pid },
          machineId: HOST,
          controlPlaneUrl: cp.url,
          stateDir: settings.stateDir
        })
        expect(report.rollouts.find((rollout) => rollout.rolloutId === rolloutId)?.state).toBe("Converged")
      }),
    TIMEOUT
  )

  it.scopedLive(
    "with options, nothing is read from the environment and an ambient HttpClient is never used",
    () =>
      Effect.gen(function*() {
        const { cp, settings } = yield* embeddedHost
        const port = yield* unusedPort
        // Read, these would serve metrics, refuse the start (not a gate value), rename the
        // host and point it elsewhere.
        yield* withEnvironment({
          NIXFLEET_AGENT_METRICS_LISTEN: `127.0.0.1:${port}`,
          [ACTIVATION_TEST_MODE]: "maybe",
          NIXFLEET_AGENT_MACHINE_ID: "intruder",
          NIXFLEET_AGENT_CP_URL: "http://127.0.0.1:9"
        })
        // The process's own provider does see them: the agent would, if it read it.
        expect(yield* Config.string(ACTIVATION_TEST_MODE)).toBe("maybe")

        const seen: Array<string> = []
        const ambient = Layer.succeed(
          HttpClient.HttpClient,
          HttpClient.make((request) =>
            Effect.suspend(() => {
              seen.push(`${request.method} ${request.url}`)
              return Effect.fail(
                new HttpClientError.RequestError({ request, reason: "Transport", description: "the embedder's client" })
              )
            })
          )
        )
        const rolloutId = yield* publish(cp)
        const { agent } = yield* startEmbedded(settings, ambient)
        yield* awaitConverged(cp, agent, rolloutId)

        const report = yield* agent.status
        expect(report).toMatchObject({ machineId: HOST, controlPlaneUrl: cp.url })
        expect(report.metricsListen).toBeUndefined()
        expect(report.testGates?.map(({ gate, value }) => ({ gate, value }))).toStrictEqual([
          { gate: ACTIVATION_TEST_MODE, value: "1" }
        ])
        expect(yield* listening(port)).toBe(false)
        expect(seen).toStrictEqual([])
      }),
    TIMEOUT
  )

  it.scopedLive(
    "two agents started at the same moment on one state directory: exactly one runs, the other is refused",
    () =>
      Effect.gen(function*() {
        const { settings } = yield* embeddedHost
        const attempts = yield* Effect.all(
          [0, 1, 2].map(() => Effect.either(startEmbedded(settings))),
          { concurrency: "unbounded" }
        )
        const refused = attempts.flatMap((attempt) => attempt._tag === "Left" ? [attempt.left] : [])
        expect(attempts.length - refused.length).toBe(1)
        for (const error of refused) expectAgentError(error, "AlreadyRunning")
        // The one that runs keeps its socket: a refused start removed nothing.
        expect(Fs.lstatSync(statusSocket(settings.stateDir)).isSocket()).toBe(true)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "an empty path in the options is an error naming it, never the default path",
    () =>
      Effect.gen(function*() {
        const { cp, dir } = yield* embeddedHost
        for (const given of [{ stateDir: "" }, { trustFile: " " }] as const) {
          const error = yield* startFailure({ ...options(cp, dir), ...given })
          expect(ConfigError.isConfigError(error), JSON.stringify(given)).toBe(true)
          expect(error.message).toContain(Object.keys(given)[0])
        }
      }),
    TIMEOUT
  )

  it.scopedLive(
    "a required setting that cannot be used is an error naming its key, before anything is written",
    () =>
      Effect.gen(function*() {
        const { cp, dir } = yield* embeddedHost
        const cases: ReadonlyArray<readonly [Partial<NixfleetAgent.Options>, string]> = [
          [{ controlPlaneUrl: "not a url" }, "NIXFLEET_AGENT_CP_URL"],
          [{ controlPlaneUrl: "" }, "NIXFLEET_AGENT_CP_URL"],
          [{ machineId: " web-01" }, "NIXFLEET_AGENT_MACHINE_ID"],
          [{ machineId: "" }, "NIXFLEET_AGENT_MACHINE_ID"]
        ]
        for (const [given, key] of cases) {
          const settings = { ...options(cp, dir), ...given }
          const error = yield* startFailure(settings)
          expect(ConfigError.isConfigError(error), JSON.stringify(given)).toBe(true)
          expect(error.message, JSON.stringify(given)).toContain(key)
          expect(Fs.existsSync(settings.stateDir)).toBe(false)
        }
        // Absent (what `layerConfig` meets in an empty environment): each key is named.
        const absent = yield* Effect.flip(Effect.scoped(Layer.build(
          NixfleetAgent.layerConfig().pipe(
            Layer.provide(NodeContext.layer),
            Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map())))
          )
        )))
        expect(absent.message).toContain("NIXFLEET_AGENT_MACHINE_ID")
        expect(absent.message).toContain("NIXFLEET_AGENT_CP_URL")
      }),
    TIMEOUT
  )
})
