/**
 * systemd notifications: `run` as a separate process talking to a real `AF_UNIX`
 * datagram socket bound by the test (as systemd's `NOTIFY_SOCKET` is), and the watchdog's
 * rule that a stuck reducer gets no `WATCHDOG=1`, with `TestClock`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Ref, Stream, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { AgentRuntimeService } from "../src/AgentRuntime.js"
import { notifySystemd, SystemdNotify } from "../src/node/SystemdNotify.js"
import type { ReducerService } from "../src/runtime/Reducer.js"
import type { AgentStatusService } from "../src/status/AgentStatus.js"
import { TARGET } from "./support/fixtures.js"
import { notifySocket } from "./support/notify.js"
import {
  awaitState,
  eventually,
  publish,
  startAgent,
  startControlPlane,
  tail,
  tempDirectory,
  testModeHost
} from "./support/processes.js"

const TIMEOUT = 90_000

// Each test has its own control plane, agent and notify socket: they run concurrently.
describe("systemd notifications from `run`", { concurrent: true }, () => {
  it.scopedLive(
    "READY=1 after boot recovery, STATUS= per phase, WATCHDOG=1 within WATCHDOG_USEC, STOPPING=1 on SIGTERM",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const host = testModeHost(dir)
        const { received } = yield* notifySocket(Path.join(dir, "notify.sock"))
        // A probe that records the environment the agent gives its children.
        const probeEnv = Path.join(dir, "probe-env")
        const healthChecksFile = Path.join(dir, "health-checks.json")
        Fs.writeFileSync(
          healthChecksFile,
          JSON.stringify({
            env: { kind: "exec", mode: "enforce", command: ["/bin/sh", "-c", `env > ${probeEnv}`], intervalSeconds: 5 }
          })
        )
        const agent = yield* startAgent(cp, { ...host, healthChecksFile }, {
          NIXFLEET_AGENT_ACTIVATION_TEST_MODE: "1",
          NOTIFY_SOCKET: Path.join(dir, "notify.sock"),
          WATCHDOG_USEC: "2000000"
        })
        yield* eventually(
          "READY=1",
          Effect.sync(() => received.length > 0),
          30_000,
          Effect.sync(() => tail(agent.stderr()))
        )
        // READY=1 comes first, with the phase, once boot recovery is done.
        expect(received[0]!.lines).toStrictEqual(["READY=1", "STATUS=idle: no rollout yet"])
        expect(agent.stderr().some((line) => line.includes("boot recovery done"))).toBe(true)

        const { rolloutId } = yield* publish(cp, TARGET, 0.02)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)
        const statuses = () => received.flatMap((r) => r.lines.filter((line) => line.startsWith("STATUS=")))
        yield* eventually(
          "the Converged status line",
          Effect.sync(() => statuses().includes(`STATUS=idle: ${rolloutId} Converged`)),
          10_000,
          Effect.sync(() => statuses().join("\n"))
        )
        expect(statuses()).toContain(`STATUS=dispatched ${rolloutId}`)
        expect(statuses().some((line) => line.startsWith(`STATUS=soaking ${rolloutId} until `))).toBe(true)

        // Pinged all along, never WATCHDOG_USEC apart (when systemd would kill it). The
        // cadence, half of it, is checked with TestClock below: a tighter bound here would
        // race the machine's load.
        const pings = received.filter((r) => r.lines.includes("WATCHDOG=1")).map((r) => r.at)
        expect(pings.length).toBeGreaterThanOrEqual(3)
        const gaps = pings.slice(1).map((at, i) => at - pings[i]!)
        expect(Math.max(...gaps)).toBeLessThan(2000)

        // The children do not inherit systemd's variables: they cannot notify in its name.
        const childEnv = Fs.readFileSync(probeEnv, "utf8")
        expect(childEnv).not.toMatch(/^(NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID)=/m)
        expect(childEnv).toMatch(/^PATH=/m)

        agent.signal("SIGTERM")
        expect((yield* agent.awaitExit(30_000))?.code).toBe(0)
        const stopping = received.findIndex((r) => r.lines.includes("STOPPING=1"))
        expect(stopping).toBeGreaterThan(0)
        expect(received[stopping]!.lines).toStrictEqual(["STOPPING=1", "STATUS=stopping: draining"])
      }),
    TIMEOUT
  )

  it.scopedLive(
    "a watchdog meant for another process (WATCHDOG_PID) is left alone; READY=1 still goes out",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const { received } = yield* notifySocket(Path.join(dir, "notify.sock"))
        const agent = yield* startAgent(cp, testModeHost(dir), {
          NOTIFY_SOCKET: Path.join(dir, "notify.sock"),
          WATCHDOG_USEC: "200000",
          WATCHDOG_PID: "1"
        })
        yield* eventually(
          "READY=1",
          Effect.sync(() => received.length > 0),
          30_000,
          Effect.sync(() => tail(agent.stderr()))
        )
        yield* Effect.sleep("1 second")
        expect(received.flatMap((r) => r.lines)).not.toContain("WATCHDOG=1")
        expect(received[0]!.lines[0]).toBe("READY=1")
        agent.signal("SIGTERM")
        expect((yield* agent.awaitExit(30_000))?.code).toBe(0)
      }),
    TIMEOUT
  )
})

describe("notifySystemd", () => {
  const recorder = (interval: Duration.DurationInput) =>
    Effect.map(Ref.make<ReadonlyArray<string>>([]), (sent) => ({
      sent,
      layer: Layer.succeed(SystemdNotify, {
        enabled: true,
        watchdogInterval: Option.some(Duration.decode(interval)),
        notify: (message: string) => Ref.update(sent, (all) => [...all, message])
      })
    }))

  const runtimeWith = (
    submit: ReducerService["submit"],
    workerFault: AgentRuntimeService["workerFault"] = Effect.succeedNone
  ): AgentRuntimeService => ({
    shutdown: Effect.void,
    awaitShutdown: Effect.never,
    reducer: { offer: () => Effect.void, submit } as unknown as ReducerService,
    status: { phase: Stream.make("idle: no rollout yet"), report: Effect.never } as unknown as AgentStatusService,
    workerFault,
    events: Stream.empty,
    transitions: Stream.empty,
    awaitDelivered: Effect.void
  })

  it.scoped("pings the watchdog while the reducer answers", () =>
    Effect.gen(function*() {
      const { layer, sent } = yield* recorder("1 second")
      yield* notifySystemd(runtimeWith(() => Effect.void)).pipe(Effect.provide(layer))
      yield* TestClock.adjust("3500 millis")
      const messages = yield* Ref.get(sent)
      expect(messages[0]).toBe("READY=1\nSTATUS=idle: no rollout yet")
      expect(messages.filter((m) => m === "WATCHDOG=1")).toHaveLength(4)
    }))

  it.scoped("a reducer that does not answer gets no WATCHDOG=1, so systemd restarts the agent", () =>
    Effect.gen(function*() {
      const { layer, sent } = yield* recorder("1 second")
      yield* notifySystemd(runtimeWith(() => Effect.never)).pipe(Effect.provide(layer))
      yield* TestClock.adjust("5 seconds")
      expect(yield* Ref.get(sent)).toStrictEqual(["READY=1\nSTATUS=idle: no rollout yet"])
    }))

  it.scoped("a failed worker stops the WATCHDOG=1 even though the reducer answers", () =>
    Effect.gen(function*() {
      const { layer, sent } = yield* recorder("1 second")
      const failed = yield* Ref.make(false)
      const fault = Effect.map(
        Ref.get(failed),
        (yes) => yes ? Option.some({ worker: "Longpoll", at: new Date(0), reason: "boom" }) : Option.none()
      )
      yield* notifySystemd(runtimeWith(() => Effect.void, fault)).pipe(Effect.provide(layer))
      yield* TestClock.adjust("1500 millis")
      yield* Ref.set(failed, true)
      yield* TestClock.adjust("5 seconds")
      expect((yield* Ref.get(sent)).filter((m) => m === "WATCHDOG=1")).toHaveLength(2)
    }))
})
