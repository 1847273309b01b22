/**
 * What an embedding program observes of `NixfleetAgent.layer`: the events the agent records
 * and its state transitions as streams, `awaitDelivered` (the control plane has everything
 * recorded before the call), a subscriber that never reads slowing nothing, and two agents
 * in one process each exposing only their own metrics. Against the dev control plane in
 * this process, activation test mode; the outbox's newest id on a real SQLite outbox.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, start } from "@nixfleet/dev-control-plane"
import { Chunk, Context, Effect, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as NixfleetAgent from "../src/NixfleetAgent.js"
import { MACHINE_ID_LABEL } from "../src/observability/Metrics.js"
import { defaultCapacities } from "../src/runtime/RuntimeChannels.js"
import { entry, openOutbox, ROLLOUT_A, tempStateDir } from "./fixtures/outbox/support.js"
import { HOST_KEY_FILE, HOST_SPKI } from "./support/certificates.js"
import { TARGET } from "./support/fixtures.js"
import { hostDirectory as makeHostDirectory } from "./support/hostDirectory.js"
import { unusedPort } from "./support/ports.js"
import { eventually } from "./support/processes.js"

const TIMEOUT = 90_000

const hostDirectory = makeHostDirectory("nixfleet-observe-")

/**
 * A control plane whose fleet already names the channel's policy: an agent started before
 * its rollout is published takes the dispatch at once instead of at its next manifest poll.
 */
const controlPlane = (options: { readonly tls?: boolean } = {}) =>
  Effect.tap(
    start(options),
    (cp) =>
      cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: "elsewhere", targetClosure: TARGET }],
        soakMinutes: 0.02
      })
  )

/**
 * An agent for `host` (its own machine id: metrics are process-wide, so each test's agents
 * are told apart from the earlier tests' ones), started in the test's scope.
 */
const startAgent = (cp: DevControlPlane, host: string, extra: Partial<NixfleetAgent.Options> = {}) =>
  Effect.gen(function*() {
    const dir = yield* hostDirectory
    const scope = yield* Scope.make()
    const stop = Scope.close(scope, Exit.void)
    yield* Effect.addFinalizer(() => stop)
    const layer = NixfleetAgent.layer({
      machineId: host,
      controlPlaneUrl: cp.url,
      trustFile: cp.trustFile,
      stateDir: Path.join(dir, "state"),
      currentSystemPath: Path.join(dir, "current-system"),
      healthChecksFile: Path.join(dir, "no-health-checks.json"),
      sshHostKeyFile: Path.join(dir, "no-ssh-host-key"),
      activationTestMode: true,
      ...extra
    }).pipe(Layer.provide(NodeContext.layer))
    return { ...Context.get(yield* Layer.buildWithScope(layer, scope), NixfleetAgent.NixfleetAgent), stop }
  })

const publish = (cp: DevControlPlane, host: string) =>
  Effect.map(
    cp.publishRollout({ channel: "stable", hosts: [{ hostname: host, targetClosure: TARGET }], soakMinutes: 0.02 }),
    ({ rolloutId }) => rolloutId
  )

const convergedAt = (cp: DevControlPlane, host: string, rolloutId: string) =>
  eventually(
    `${rolloutId}/${host} Converged at the control plane`,
    Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${host}`)?.state === "Converged"),
    45_000
  )

/** The seqs the control plane accepted (first deliveries) for a rollout. */
const receivedSeqs = (cp: DevControlPlane, rolloutId: string) =>
  Effect.map(cp.events, (events) =>
    events.flatMap(({ duplicate, envelope }) => {
      const { event, rolloutId: id } = envelope as { rolloutId: string; event: { seq: number } }
      return id === rolloutId && !duplicate ? [event.seq] : []
    }))

/**
 * Runs `stream` in the background up to and including the first item `last` accepts. The
 * pause lets it subscribe before the caller makes anything happen.
 */
const collectUntil = <A>(stream: Stream.Stream<A>, last: (item: A) => boolean) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkScoped(Stream.runCollect(Stream.takeUntil(stream, last)))
    yield* Effect.sleep("100 millis")
    return Effect.map(
      Fiber.join(fiber).pipe(
        Effect.timeoutFail({ duration: "45 seconds", onTimeout: () => new Error("the stream never got there") })
      ),
      Chunk.toReadonlyArray
    )
  })

const scrape = (port: number) =>
  Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`).then((response) => response.text()))

/** `name{labels} value` lines as a map from the series to its value. */
const samples = (text: string) =>
  new Map(
    text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => {
      const at = line.lastIndexOf(" ")
      return [line.slice(0, at), Number(line.slice(at + 1))] as const
    })
  )

describe("what an embedder observes", () => {
  it.scopedLive(
    "the events stream sees DispatchAck … Converged in seq order; transitions Pending → … → Converged",
    () =>
      Effect.gen(function*() {
        const host = "observe-01"
        const cp = yield* controlPlane()
        const agent = yield* startAgent(cp, host)
        const events = yield* collectUntil(agent.events, (event) => event.kind === "Converged")
        const transitions = yield* collectUntil(agent.transitions, (transition) => transition.to === "Converged")
        const rolloutId = yield* publish(cp, host)

        const recorded = yield* events
        expect(recorded.map((event) => event.rolloutId)).toStrictEqual(recorded.map(() => rolloutId))
        expect(recorded.map((event) => event.kind)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "ProbeTopologyDeclared",
          "Converged"
        ])
        expect(recorded.map((event) => event.seq)).toStrictEqual([1, 2, 3, 4, 5])
        for (const event of recorded) expect(event.body).toMatchObject({ _tag: event.kind, seq: event.seq })

        const changes = yield* transitions
        expect(changes.map(({ from, to }) => `${from}→${to}`)).toStrictEqual([
          "Pending→Activating",
          "Activating→Soaking",
          "Soaking→Converged"
        ])
        expect(changes.every((change) => change.rolloutId === rolloutId && change.at instanceof Date)).toBe(true)
        expect(changes[0]?.event).toBe("LocalActivate")
        // Everything the stream saw reaches the control plane.
        yield* convergedAt(cp, host, rolloutId)

        // A subscriber's stream ends when the agent stops.
        const subscriber = yield* Effect.forkScoped(Stream.runDrain(Stream.merge(agent.events, agent.transitions)))
        yield* Effect.sleep("100 millis")
        yield* agent.stop
        yield* Fiber.join(subscriber).pipe(
          Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the streams outlived the agent") })
        )
      }),
    TIMEOUT
  )

  it.scopedLive(
    "awaitDelivered waits while the control plane refuses events, and completes once it has them all",
    () =>
      Effect.gen(function*() {
        const host = "observe-02"
        const cp = yield* controlPlane()
        const agent = yield* startAgent(cp, host)
        yield* cp.setFault("events", { _tag: "Status", status: 503 })
        const events = yield* collectUntil(agent.events, (event) => event.kind === "Converged")
        const rolloutId = yield* publish(cp, host)
        const recorded = (yield* events).map((event) => event.seq)
        expect(yield* receivedSeqs(cp, rolloutId)).toStrictEqual([])

        const delivered = yield* Effect.forkScoped(agent.awaitDelivered)
        yield* Effect.sleep("2 seconds")
        expect(Option.isNone(yield* Fiber.poll(delivered))).toBe(true)

        yield* cp.setFault("events", undefined)
        yield* Fiber.join(delivered).pipe(
          Effect.timeoutFail({ duration: "45 seconds", onTimeout: () => new Error("awaitDelivered never completed") })
        )
        // Completed: the control plane has every event recorded before the call.
        expect(yield* receivedSeqs(cp, rolloutId)).toStrictEqual(recorded)
        // Nothing is pending: it completes at once.
        yield* agent.awaitDelivered.pipe(
          Effect.timeoutFail({ duration: "1 second", onTimeout: () => new Error("awaitDelivered waited for nothing") })
        )
      }),
    TIMEOUT
  )

  it.scopedLive(
    "a subscriber that never reads does not hold the agent back",
    () =>
      Effect.gen(function*() {
        const host = "observe-03"
        const cp = yield* controlPlane()
        // A feed of two: the rollout's five events and three transitions overflow it.
        const agent = yield* startAgent(cp, host, { capacities: { ...defaultCapacities, observed: 2 } })
        for (const feed of [agent.events, agent.transitions] as const) {
          yield* Effect.forkScoped(Stream.runForEach(feed as Stream.Stream<unknown>, () => Effect.never))
        }
        yield* Effect.sleep("100 millis")
        const rolloutId = yield* publish(cp, host)
        yield* convergedAt(cp, host, rolloutId)
        const report = yield* agent.status
        expect(report.rollouts.find((rollout) => rollout.rolloutId === rolloutId)?.state).toBe("Converged")
      }),
    TIMEOUT
  )

  it.scopedLive(
    "two agents in one process: each exposition has only its own series, without the machine-id label",
    () =>
      Effect.gen(function*() {
        const [busy, idle] = ["metrics-a", "metrics-b"]
        // Over mTLS: over plain http the dev control plane cannot tell whose long-poll is whose.
        const cp = yield* controlPlane({ tls: true })
        const identity = (host: string) =>
          Effect.gen(function*() {
            const dir = yield* hostDirectory
            const clientCert = Path.join(dir, "client.pem")
            Fs.writeFileSync(clientCert, yield* cp.issueClientCertificate(host, HOST_SPKI))
            return { caCert: cp.caFile, clientCert, clientKey: HOST_KEY_FILE }
          })
        const [busyPort, idlePort] = [yield* unusedPort, yield* unusedPort]
        const first = yield* startAgent(cp, busy, { ...yield* identity(busy), metricsListen: `127.0.0.1:${busyPort}` })
        yield* startAgent(cp, idle, { ...yield* identity(idle), metricsListen: `127.0.0.1:${idlePort}` })
        const rolloutId = yield* publish(cp, busy)
        yield* convergedAt(cp, busy, rolloutId)
        yield* first.awaitDelivered

        const delivered = "nixfleet_agent_outbox_deliveries_total{result=\"delivered\"}"
        const busyText = yield* scrape(busyPort)
        const idleText = yield* scrape(idlePort)
        expect(samples(busyText).get(delivered)).toBe((yield* receivedSeqs(cp, rolloutId)).length)
        expect(samples(busyText).get("nixfleet_agent_rollouts{state=\"Converged\"}")).toBe(1)
        expect(samples(idleText).has(delivered)).toBe(false)
        expect(samples(idleText).get("nixfleet_agent_rollouts{state=\"Converged\"}")).toBe(0)
        for (const text of [busyText, idleText]) {
          expect(text).not.toContain(MACHINE_ID_LABEL)
          expect(text).toMatch(/^nixfleet_agent_build_info\{version="[^"]+"\} 1$/m)
        }
      }),
    TIMEOUT
  )
})

describe("the outbox's newest id (what awaitDelivered waits up to)", () => {
  it.scoped("is the newest pending row's id, 0 when none is pending, and never goes back to a deleted id", () =>
    Effect.gen(function*() {
      const { outbox } = yield* openOutbox(yield* tempStateDir)
      expect(yield* outbox.newestId).toBe(0)
      yield* outbox.enqueue(entry(ROLLOUT_A, 1))
      yield* outbox.enqueue(entry(ROLLOUT_A, 2))
      const rows = yield* outbox.head(10)
      expect(yield* outbox.newestId).toBe(rows[1]?.id)
      yield* outbox.acknowledgeMany(rows.map((row) => row.id))
      expect(yield* outbox.newestId).toBe(0)
      yield* outbox.enqueue(entry(ROLLOUT_A, 3))
      expect(yield* outbox.newestId).toBeGreaterThan(rows[1]?.id ?? Infinity)
    }))
})
