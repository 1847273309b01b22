/**
 * Prometheus metrics: the exposition format, a scrape over HTTP after a rollout showing
 * the values that rollout produced, and the node_exporter textfile (written atomically:
 * a reader polling it never sees half a file).
 */
import { describe, expect, it } from "@effect/vitest"
import { start } from "@nixfleet/dev-control-plane"
import { Effect, MetricBoundaries, MetricKey, MetricPair, MetricState } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { parseListen } from "../src/observability/MetricsExporter.js"
import { render } from "../src/observability/prometheus.js"
import { ActivationPipeline } from "../src/pipeline/ActivationPipeline.js"
import { writeFileAtomic } from "../src/support/atomicFile.js"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { PRIOR, TARGET } from "./support/fixtures.js"
import { unusedPort } from "./support/ports.js"

const HOST = "web-01"

describe("the exposition format", () => {
  it("writes HELP and TYPE once per name, sorted series, escaped labels, cumulative buckets ending at +Inf", () => {
    const counter = MetricKey.counter("demo_requests_total", { description: "Requests\nby path" })
    const gauge = MetricKey.gauge("demo_depth")
    const histogram = MetricKey.histogram("demo_seconds", MetricBoundaries.fromIterable([1, 5]))
    const text = render([
      MetricPair.unsafeMake(MetricKey.tagged(counter, "path", "/b\"\\"), MetricState.counter(2)),
      MetricPair.unsafeMake(MetricKey.tagged(counter, "path", "/a"), MetricState.counter(1)),
      MetricPair.unsafeMake(gauge, MetricState.gauge(7)),
      MetricPair.unsafeMake(
        histogram,
        MetricState.histogram({ buckets: [[1, 1], [5, 3], [Infinity, 4]], count: 4, min: 0.5, max: 9, sum: 12.5 })
      )
    ])
    expect(text.split("\n")).toStrictEqual([
      "# HELP demo_depth demo_depth",
      "# TYPE demo_depth gauge",
      "demo_depth 7",
      "# HELP demo_requests_total Requests\\nby path",
      "# TYPE demo_requests_total counter",
      "demo_requests_total{path=\"/a\"} 1",
      "demo_requests_total{path=\"/b\\\"\\\\\"} 2",
      "# HELP demo_seconds demo_seconds",
      "# TYPE demo_seconds histogram",
      "demo_seconds_bucket{le=\"1\"} 1",
      "demo_seconds_bucket{le=\"5\"} 3",
      "demo_seconds_bucket{le=\"+Inf\"} 4",
      "demo_seconds_sum 12.5",
      "demo_seconds_count 4",
      ""
    ])
  })

  it("--metrics-listen accepts port, host:port and [ipv6]:port; a bare port is loopback", () => {
    expect(parseListen("9464")).toStrictEqual({ host: "127.0.0.1", port: 9464 })
    expect(parseListen("0.0.0.0:9464")).toStrictEqual({ host: "0.0.0.0", port: 9464 })
    expect(parseListen("[::1]:9464")).toStrictEqual({ host: "::1", port: 9464 })
    for (const bad of ["", "x", "70000", "0", "host:", ":9464", "a:b:9464"]) {
      expect(parseListen(bad), bad).toBeUndefined()
    }
  })
})

/** `name{labels} value` lines as a map from the series to its value. */
const samples = (text: string) =>
  new Map(
    text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => {
      const at = line.lastIndexOf(" ")
      return [line.slice(0, at), Number(line.slice(at + 1))] as const
    })
  )

const scrape = (port: number) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`)
    return { status: response.status, type: response.headers.get("content-type"), text: await response.text() }
  })

describe("metrics of a running agent", () => {
  it.scopedLive("a scrape after a rollout shows what the rollout produced", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const dir = yield* stateDirectory
      Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
      const healthChecksFile = Path.join(dir, "health-checks.json")
      Fs.writeFileSync(
        healthChecksFile,
        JSON.stringify({ web: { kind: "exec", mode: "enforce", command: ["true"], intervalSeconds: 5 } })
      )
      const port = yield* unusedPort
      const textfile = Path.join(dir, "nixfleet-agent.prom")
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }],
        soakMinutes: 0.02
      })
      yield* startAgent(
        { machineId: HOST, stateDir: dir, controlPlaneUrl: cp.url, trustFile: cp.trustFile, healthChecksFile },
        {
          testMode: false,
          pipeline: ActivationPipeline.scripted(),
          env: { NIXFLEET_AGENT_METRICS_LISTEN: `127.0.0.1:${port}`, NIXFLEET_AGENT_METRICS_TEXTFILE: textfile }
        }
      )
      yield* eventually(
        "Converged on the control plane",
        Effect.map(cp.hostStates, (hosts) => hosts.get(`${rolloutId}/${HOST}`)?.state === "Converged"),
        45_000
      )
      const delivered = (yield* cp.events).filter((e) => !e.duplicate).length
      yield* eventually(
        "every event delivered and counted",
        Effect.map(scrape(port), ({ text }) => {
          const values = samples(text)
          return values.get("nixfleet_agent_outbox_pending") === 0 &&
            values.get("nixfleet_agent_outbox_deliveries_total{result=\"delivered\"}") === delivered
        }),
        20_000
      )
      const { status, text, type } = yield* scrape(port)
      expect(status).toBe(200)
      expect(type).toBe("text/plain; version=0.0.4; charset=utf-8")
      const values = samples(text)
      const series = "{kind=\"activate\",outcome=\"FiredAndPolled\"}"
      expect(values.get(`nixfleet_agent_activations_total${series}`)).toBe(1)
      expect(values.get(`nixfleet_agent_activation_duration_seconds_count${series}`)).toBe(1)
      expect(
        values.get(`nixfleet_agent_activation_duration_seconds_bucket{kind="activate",outcome="FiredAndPolled",le="1"}`)
      )
        .toBe(1)
      expect(values.get("nixfleet_agent_rollouts{state=\"Converged\"}")).toBe(1)
      for (const state of ["Pending", "Activating", "Deferred", "Soaking", "Failed", "Reverted"]) {
        expect(values.get(`nixfleet_agent_rollouts{state="${state}"}`), state).toBe(0)
      }
      expect(values.get("nixfleet_agent_probe_results_total{mode=\"enforce\",probe=\"web\",status=\"pass\"}"))
        .toBeGreaterThanOrEqual(1)
      expect(values.has("nixfleet_agent_probe_results_total{mode=\"enforce\",probe=\"web\",status=\"fail\"}"))
        .toBe(false)
      expect(values.get("nixfleet_agent_outbox_dead_letters")).toBe(0)
      expect(values.has("nixfleet_agent_dispatches_refused_total")).toBe(false)
      expect([...values.keys()].some((key) => key.startsWith("nixfleet_agent_build_info{version="))).toBe(true)
      // Only the agent's own series: not the runtime's effect_fiber_* nor an embedder's.
      expect([...values.keys()].filter((key) => !key.startsWith("nixfleet_agent_"))).toStrictEqual([])
      expect((yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/other`))).status).toBe(404)

      // The textfile (written at start, then every 15 s) is the same exposition, readable
      // by node_exporter's user.
      yield* eventually("the textfile", Effect.sync(() => Fs.existsSync(textfile)), 20_000)
      expect(Fs.statSync(textfile).mode & 0o777).toBe(0o644)
      expect(Fs.readFileSync(textfile, "utf8")).toMatch(/^nixfleet_agent_build_info\{version="[^"]+"\} 1$/m)
    }), 90_000)

  it.scopedLive("a textfile polled while it is rewritten is never seen half-written", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const file = Path.join(dir, "metrics.prom")
      // Contents of very different sizes, each ending with a marker a torn read would lack.
      const versions = Array.from({ length: 40 }, (_, i) => `${"x".repeat((i % 7) * 40_000)}\nversion ${i} end\n`)
      let reads = 0
      let torn = 0
      let writing = true
      const reader = Effect.promise(async () => {
        while (writing) {
          try {
            const text = Fs.readFileSync(file, "utf8")
            reads++
            if (!versions.includes(text)) torn++
          } catch (e) {
            if (!(e instanceof Error && "code" in e && e.code === "ENOENT")) throw e
          }
          await new Promise((resolve) => setImmediate(resolve))
        }
      })
      const writer = Effect.promise(async () => {
        for (const text of versions) await writeFileAtomic(file, text, 0o644)
        writing = false
      })
      yield* Effect.all([reader, writer], { concurrency: 2 })
      expect(reads).toBeGreaterThan(10)
      expect(torn).toBe(0)
      expect(Fs.readdirSync(dir)).toStrictEqual(["metrics.prom"])
    }))
})

describe("metrics settings", () => {
  it.scopedLive("a port already taken is one ERROR line, and the agent runs without the endpoint", () =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const blocker = yield* Effect.acquireRelease(
        Effect.async<Net.Server>((resume) => {
          const server = Net.createServer().listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.sync(() => server.close())
      )
      const { port } = blocker.address() as Net.AddressInfo
      const agent = yield* startAgent({ machineId: HOST, stateDir: dir, controlPlaneUrl: "http://127.0.0.1:1" }, {
        env: { NIXFLEET_AGENT_METRICS_LISTEN: `127.0.0.1:${port}` }
      })
      const errors = (yield* agent.logs).filter((line) => line.startsWith("ERROR"))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(
        new RegExp(`^ERROR cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*; the agent runs without it`)
      )
    }))
})
