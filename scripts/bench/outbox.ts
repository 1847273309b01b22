/**
 * Outbox benchmarks, each against a baseline in the same run:
 *
 * 1. Durable enqueue throughput, `Outbox.enqueue` itself and through the reducer and the
 *    applier (probe-topology declarations, durable and state-neutral), next to raw
 *    better-sqlite3 inserts into the same schema with the same statement, pragmas (WAL,
 *    synchronous=FULL) and one transaction per event. The three run one after the other in
 *    each round; the ratio is the median of the rounds' own ratios (a round's runs share
 *    the disk's state: its fsync latency drifts over a run of the benchmark). Aim: >= 50 %.
 * 2. Drain of a 100 000-event backlog to a loopback server (in a child process, so that
 *    the agent's own RSS is what is sampled): events per second and peak RSS; memory must
 *    stay flat because rows are read in pages.
 *
 *   npm run bench -- outbox-enqueue outbox-drain
 */
import { NodeContext } from "@effect/platform-node"
import { AgentEvent, FleetResolved, type RolloutManifest } from "@nixfleet/proto"
import Database from "better-sqlite3"
import { Effect, Layer, Schema } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentConfig } from "../../packages/agent/src/config/AgentConfig.js"
import { ControlPlaneClient, ControlPlaneTransport } from "../../packages/agent/src/controlplane/ControlPlaneClient.js"
import * as OutboundSender from "../../packages/agent/src/controlplane/OutboundSender.js"
import { Outbox } from "../../packages/agent/src/outbox/Outbox.js"
import { HostLedger } from "../../packages/agent/src/runtime/HostLedger.js"
import { Reducer } from "../../packages/agent/src/runtime/Reducer.js"
import { ReducerInput } from "../../packages/agent/src/runtime/ReducerInput.js"
import { RuntimeChannels } from "../../packages/agent/src/runtime/RuntimeChannels.js"
import { Shutdown } from "../../packages/agent/src/runtime/Shutdown.js"
import { StatusBoard } from "../../packages/agent/src/runtime/StatusBoard.js"
import { median } from "./stats.js"

const ROLLOUT = "stable@abc123"
const TARGET = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-web-01"
const ENQUEUES = 2_000
const RUNS = 5
const BACKLOG = 100_000

const tempDir = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-bench-"))

const config = (stateDir: string, controlPlaneUrl = "http://127.0.0.1:9") =>
  AgentConfig.make({
    machineId: "web-01",
    stateDir,
    controlPlaneUrl,
    sustainedFailureSecs: 120,
    outboxNonDurableCap: 10_000
  })

const manifestSet = () => ({
  fleet: Schema.decodeUnknownSync(FleetResolved)({
    schemaVersion: 1,
    hosts: { "web-01": { platform: "x86_64-linux", tags: [], channel: "stable", closureHash: TARGET, pubkey: null } },
    channels: {
      stable: { rolloutPolicy: "p", reconcileIntervalMinutes: 30, freshnessWindow: 180, signingIntervalMinutes: 60 }
    },
    rolloutPolicies: { p: { strategy: "all-at-once", waves: [], healthGate: {}, onHealthFailure: "halt" } },
    waves: { stable: [] },
    meta: { schemaVersion: 1, signedAt: "2026-05-01T00:00:00Z", ciCommit: "abc123" }
  }),
  fleetHash: "0".repeat(64),
  rollouts: new Map<string, RolloutManifest>()
})

const topology = (at: Date) => ({
  _tag: "LocalProbeTopologyDeclared" as const,
  probes: [{ probeName: "nginx", kind: "http", mode: "enforce" as const }],
  declaredAt: at,
  seq: 0
})

/** Milliseconds for ENQUEUES durable events through reducer, applier and the SQLite outbox. */
const throughReducer = (): Promise<number> => {
  const dir = tempDir()
  const layer = Reducer.layer.pipe(
    Layer.provideMerge(Layer.merge(Outbox.layer, HostLedger.layerMemory)),
    Layer.provideMerge(Layer.mergeAll(RuntimeChannels.layer(), Shutdown.layer, config(dir))),
    Layer.provide(NodeContext.layer)
  )
  return Effect.gen(function*() {
    const reducer = yield* Reducer
    const at = new Date()
    yield* reducer.submit(ReducerInput.ManifestSetUpdated({ set: manifestSet() }))
    yield* reducer.submit(ReducerInput.HostEvent({
      rolloutId: ROLLOUT,
      event: {
        _tag: "LocalActivate",
        currentClosureAtDispatch: "prior",
        targetClosure: TARGET,
        receivedAt: at,
        soakDueAt: at,
        seq: 0
      }
    }))
    yield* reducer.submit(ReducerInput.HostEvent({
      rolloutId: ROLLOUT,
      event: { _tag: "LocalActivationCompleted", observedCurrentClosure: TARGET, exitCode: 0, completedAt: at, seq: 0 }
    }))
    const start = performance.now()
    for (let i = 0; i < ENQUEUES - 1; i++) {
      yield* reducer.offer(ReducerInput.HostEvent({ rolloutId: ROLLOUT, event: topology(at) }))
    }
    yield* reducer.submit(ReducerInput.HostEvent({ rolloutId: ROLLOUT, event: topology(at) }))
    const elapsed = performance.now() - start
    const pending = yield* Effect.flatMap(Outbox, (outbox) => outbox.pendingCount(ROLLOUT))
    if (pending !== ENQUEUES + 2) throw new Error(`expected ${ENQUEUES + 2} queued events, found ${pending}`)
    return elapsed
  }).pipe(
    Effect.scoped,
    Effect.provide(layer),
    Effect.ensuring(Effect.sync(() => Fs.rmSync(dir, { recursive: true }))),
    Effect.runPromise
  )
}

/** Milliseconds for ENQUEUES durable events through `Outbox.enqueue` alone. */
const direct = (): Promise<number> => {
  const dir = tempDir()
  const at = new Date()
  return Effect.gen(function*() {
    const outbox = yield* Outbox
    const start = performance.now()
    for (let seq = 1; seq <= ENQUEUES; seq++) {
      yield* outbox.enqueue({
        rolloutId: ROLLOUT,
        seq,
        hostname: "web-01",
        durable: true,
        event: { ...topology(at), _tag: "ProbeTopologyDeclared", seq }
      })
    }
    return performance.now() - start
  }).pipe(
    Effect.scoped,
    Effect.provide(Outbox.layer.pipe(Layer.provide(Layer.merge(config(dir), NodeContext.layer)))),
    Effect.ensuring(Effect.sync(() => Fs.rmSync(dir, { recursive: true }))),
    Effect.runPromise
  )
}

/**
 * Milliseconds for ENQUEUES raw inserts into the outbox's own schema (created by its
 * migrations), with the same statement, the same pragmas and one transaction per event:
 * what SQLite itself costs, so the ratio is what the agent adds.
 */
const rawInserts = async (): Promise<number> => {
  const dir = tempDir()
  await Effect.runPromise(
    Effect.scoped(Layer.build(Outbox.layer.pipe(Layer.provide(Layer.merge(config(dir), NodeContext.layer)))))
  )
  const db = new Database(Path.join(dir, "outbox.sqlite"))
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = FULL")
  const insert = db.prepare(
    `INSERT INTO outbox (rollout_id, seq, hostname, kind, durable, body, created_at) VALUES (?, ?, ?, ?, 1, ?, ?)
     ON CONFLICT (rollout_id, seq) DO NOTHING RETURNING id`
  )
  const body = JSON.stringify(
    Schema.encodeSync(AgentEvent)({ ...topology(new Date()), _tag: "ProbeTopologyDeclared", seq: 1 })
  )
  const one = db.transaction((seq: number) =>
    insert.all(ROLLOUT, seq, "web-01", "ProbeTopologyDeclared", body, Date.now())
  )
  const start = performance.now()
  for (let seq = 1; seq <= ENQUEUES; seq++) one(seq)
  const elapsed = performance.now() - start
  db.close()
  Fs.rmSync(dir, { recursive: true })
  return elapsed
}

export const benchOutboxEnqueue = async (): Promise<void> => {
  const agent: Array<number> = []
  const outbox: Array<number> = []
  const raw: Array<number> = []
  for (let run = 0; run < RUNS; run++) {
    agent.push(await throughReducer())
    outbox.push(await direct())
    raw.push(await rawInserts())
  }
  const rate = (ms: number) => Math.round(ENQUEUES / (ms / 1000))
  const a = median(agent)
  const o = median(outbox)
  const r = median(raw)
  const ratio = (of: ReadonlyArray<number>) => median(of.map((ms, run) => (raw[run] ?? 0) / ms))
  process.stdout.write([
    `outbox enqueue: ${ENQUEUES} durable events per run, medians of ${RUNS} rounds`,
    `  Outbox.enqueue:             ${rate(o).toLocaleString("en")} events/s, ${
      (ratio(outbox) * 100).toFixed(0)
    } % of raw (aim: >= 50 %)`,
    `  reducer + applier + outbox: ${rate(a).toLocaleString("en")} events/s, ${
      (ratio(agent) * 100).toFixed(0)
    } % of raw`,
    `  raw better-sqlite3 inserts: ${rate(r).toLocaleString("en")} events/s`,
    JSON.stringify({
      bench: "outbox-enqueue",
      events: ENQUEUES,
      agentMs: a,
      outboxMs: o,
      rawMs: r,
      ratio: ratio(agent),
      outboxRatio: ratio(outbox)
    }),
    ""
  ].join("\n"))
}

/** A 204-answering loopback server in its own process. */
const startServer = (): Promise<{ readonly child: ChildProcess; readonly url: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [
      "-e",
      `
      const http = require("node:http")
      const server = http.createServer((req, res) => { req.resume(); req.on("end", () => { res.writeHead(204); res.end() }) })
      server.keepAliveTimeout = 60000
      server.listen(0, "127.0.0.1", () => process.stdout.write(String(server.address().port) + "\\n"))
    `
    ], { stdio: ["ignore", "pipe", "inherit"] })
    child.stdout!.once("data", (data: Buffer) => resolve({ child, url: `http://127.0.0.1:${String(data).trim()}` }))
    child.once("error", reject)
  })

export const benchOutboxDrain = async (): Promise<void> => {
  const dir = tempDir()
  // Create the schema through the outbox itself, then fill the backlog in one raw transaction.
  await Effect.runPromise(
    Effect.scoped(Layer.build(Outbox.layer.pipe(Layer.provide(Layer.merge(config(dir), NodeContext.layer)))))
  )
  const db = new Database(Path.join(dir, "outbox.sqlite"))
  const insert = db.prepare(
    "INSERT INTO outbox (rollout_id, seq, hostname, kind, durable, body, created_at) VALUES (?, ?, 'web-01', 'ProbeResult', 0, ?, ?)"
  )
  db.transaction(() => {
    for (let seq = 1; seq <= BACKLOG; seq++) {
      insert.run(
        ROLLOUT,
        seq,
        `{"kind":"ProbeResult","probeName":"nginx","mode":"enforce","status":"pass","observedAt":"2026-05-17T12:00:00Z","seq":${seq}}`,
        Date.now()
      )
    }
  })()
  db.close()

  const { child, url } = await startServer()
  global.gc?.()
  const rssBefore = process.memoryUsage().rss
  let peak = rssBefore
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }, 50)
  const layer = OutboundSender.layer.pipe(
    Layer.provide(ControlPlaneClient.layer),
    Layer.provide(ControlPlaneTransport.layer),
    Layer.provideMerge(Outbox.layer),
    Layer.provide(Layer.merge(Shutdown.layer, StatusBoard.layer)),
    Layer.provide(Layer.merge(config(dir, url), NodeContext.layer))
  )
  const start = performance.now()
  // Heap after a forced collection (the bench runs with --expose-gc): what the drain keeps.
  const samples: Array<number> = []
  await Effect.gen(function*() {
    const outbox = yield* Outbox
    while ((yield* outbox.pendingCount()) > 0) {
      global.gc?.()
      samples.push(process.memoryUsage().heapUsed)
      yield* Effect.sleep("1 second")
    }
  }).pipe(Effect.scoped, Effect.provide(layer), Effect.runPromise)
  const elapsed = performance.now() - start
  clearInterval(sampler)
  child.kill()
  Fs.rmSync(dir, { recursive: true })
  const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)
  const firstHalf = samples.slice(0, Math.floor(samples.length / 2))
  const secondHalf = samples.slice(Math.floor(samples.length / 2))
  process.stdout.write([
    `outbox drain: ${BACKLOG.toLocaleString("en")} events to a loopback server in ${(elapsed / 1000).toFixed(1)} s`,
    `  ${Math.round(BACKLOG / (elapsed / 1000)).toLocaleString("en")} events/s`,
    `  RSS: ${mib(rssBefore)} MiB before, ${mib(peak)} MiB peak`,
    `  heap after GC: median ${mib(median(firstHalf))} MiB in the first half of the drain, ${
      mib(median(secondHalf))
    } MiB in the second (flat when they are close)`,
    JSON.stringify({
      bench: "outbox-drain",
      events: BACKLOG,
      ms: elapsed,
      rssBefore,
      rssPeak: peak,
      heapSamples: samples
    }),
    ""
  ].join("\n"))
}
