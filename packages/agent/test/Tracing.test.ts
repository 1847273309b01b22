/**
 * Traces: the phase spans of one real activation, collected with an in-memory exporter,
 * in order under the activation's span; and `run` exporting OTLP/HTTP to a collector when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
 */
import { describe, expect, it } from "@effect/vitest"
import { boot, buildClosure, makeSandbox } from "@nixfleet/dev/NixFixtures"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { ConfigProvider, Effect, Layer, Logger, Option } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Path from "node:path"
import { layer as tracingLayer, layerWithProcessor, tracesUrl } from "../src/observability/Tracing.js"
import { ActivationPipeline } from "../src/pipeline/ActivationPipeline.js"
import { describeNix } from "./nix/describeNix.js"
import { TARGET } from "./support/fixtures.js"
import { pipeline, withEnv } from "./support/nixPipeline.js"
import {
  awaitState,
  eventually,
  publish,
  startAgent,
  startControlPlane,
  tail,
  tempDirectory,
  TEST_MODES,
  testModeHost
} from "./support/processes.js"

const TIMEOUT = 120_000

const startMillis = (span: ReadableSpan) => span.startTime[0] * 1e3 + span.startTime[1] / 1e6

describe("tracesUrl", () => {
  it("takes the traces endpoint as given, or /v1/traces under the base endpoint", () => {
    expect(tracesUrl({ base: Option.some("http://collector:4318/"), traces: Option.none() }))
      .toStrictEqual(Option.some("http://collector:4318/v1/traces"))
    expect(tracesUrl({ base: Option.some("http://a:4318"), traces: Option.some("http://b/traces") }))
      .toStrictEqual(Option.some("http://b/traces"))
    expect(tracesUrl({ base: Option.none(), traces: Option.none() })).toStrictEqual(Option.none())
  })
})

describe("Tracing.layer", () => {
  it.scoped("an endpoint that is not a URL is one ERROR line and no tracing, not a failed start", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => lines.push(String(message))))
      const provider = ConfigProvider.fromMap(new Map([["OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"]]))
      const built = yield* Effect.exit(
        Layer.build(tracingLayer).pipe(Effect.withConfigProvider(provider), Effect.provide(logger))
      )
      expect(built._tag).toBe("Success")
      expect(lines.some((line) => line.includes("OTEL_EXPORTER_OTLP_ENDPOINT") && line.includes("not a URL"))).toBe(
        true
      )
    }))
})

describeNix("traces of a real activation", () => {
  it.scopedLive("one span per phase, in order, under the activation's span", () =>
    Effect.gen(function*() {
      const sandbox = yield* makeSandbox
      const prior = yield* buildClosure(sandbox, { name: "nixos-system-prior", switch: { _tag: "Flip" } })
      yield* boot(sandbox, prior)
      const target = yield* buildClosure(sandbox, { name: "nixos-system-next", switch: { _tag: "Flip" } })
      const exporter = new InMemorySpanExporter()
      // Read the spans before the provider shuts down: shutting down empties the exporter.
      const [result, spans] = yield* withEnv(
        sandbox.env,
        Effect.flatMap(ActivationPipeline, (p) => Effect.either(p.activate(target))).pipe(
          Effect.map((result) => [result, [...exporter.getFinishedSpans()]] as const),
          Effect.provide(pipeline(sandbox)),
          Effect.provide(layerWithProcessor(new SimpleSpanProcessor(exporter)))
        )
      )
      expect(result._tag).toBe("Right")

      const activation = spans.find((span) => span.name === "ActivationPipeline.activate")
      expect(activation?.attributes).toMatchObject({ closure: target })
      const phases = spans
        .filter((span) => span.parentSpanContext?.spanId === activation?.spanContext().spanId)
        .sort((a, b) => startMillis(a) - startMillis(b))
        .map((span) => span.name)
      // nix-env --set and the deferred-reboot check run side by side: either may start first.
      const concurrent = phases.slice(3, 5).sort()
      expect([...phases.slice(0, 3), ...concurrent, ...phases.slice(5)]).toStrictEqual([
        "ActivationPipeline.lock",
        "ActivationPipeline.realise",
        "ActivationPipeline.preSwitchRead",
        "ActivationPipeline.detectInhibitor",
        "ActivationPipeline.setProfile",
        "ActivationPipeline.fire",
        "ActivationPipeline.verify",
        "ActivationPipeline.selfCorrectProfile"
      ])
      for (const span of spans.filter((s) => s.name !== "ActivationPipeline.activate")) {
        expect(span.status.code, span.name).not.toBe(2)
      }
    }), TIMEOUT)
})

/** A collector stand-in: records the body of every OTLP/HTTP traces request. */
const collector = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly bodies: Array<string>; readonly server: Http.Server }>((resume) => {
    const bodies: Array<string> = []
    const server = Http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        if (request.url === "/v1/traces") bodies.push(Buffer.concat(chunks).toString("utf8"))
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, bodies, server }))
    })
  }),
  ({ server }) => Effect.sync(() => server.close())
)

describe("run with OTEL_EXPORTER_OTLP_ENDPOINT", () => {
  it.scopedLive(
    "exports the spans of control-plane calls, deliveries and the activation to the collector",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const otel = yield* collector
        const cp = yield* startControlPlane(Path.join(dir, "cp"))
        const agent = yield* startAgent(cp, testModeHost(dir), { ...TEST_MODES, OTEL_EXPORTER_OTLP_ENDPOINT: otel.url })
        const { rolloutId } = yield* publish(cp, TARGET, 0.02)
        yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)
        agent.signal("SIGTERM")
        expect((yield* agent.awaitExit(30_000))?.code, tail(agent.stderr())).toBe(0)
        // The batch is flushed on the way out at the latest.
        yield* eventually("spans at the collector", Effect.sync(() => otel.bodies.length > 0), 10_000)
        const names = new Set(
          otel.bodies.flatMap((body) => [...body.matchAll(/"name":"([^"]+)"/g)].map((match) => match[1] ?? ""))
        )
        for (const name of ["BootRecovery", "ActivationWorker.intent", "OutboundSender.deliver"]) {
          expect(names.has(name), `${name} in ${[...names].join(", ")}`).toBe(true)
        }
        expect([...names].some((name) => name.startsWith("ControlPlaneClient "))).toBe(true)
        expect(otel.bodies.join("")).toContain("nixfleet-agent")
      }),
    TIMEOUT
  )
})

describe("run without OTEL_EXPORTER_OTLP_ENDPOINT", () => {
  it.scopedLive("never loads an OpenTelemetry module", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      // A module hook that reports every OpenTelemetry module the process resolves.
      Fs.writeFileSync(
        Path.join(dir, "hook.mjs"),
        "export async function resolve(specifier, context, next) {\n" +
          "  if (specifier.includes(\"opentelemetry\")) process.stderr.write(`LOADED ${specifier}\\n`)\n" +
          "  return next(specifier, context)\n}\n"
      )
      Fs.writeFileSync(
        Path.join(dir, "register.mjs"),
        `import { register } from "node:module"\nregister(${JSON.stringify(`file://${dir}/hook.mjs`)})\n`
      )
      const cp = yield* startControlPlane(Path.join(dir, "cp"))
      const host = testModeHost(dir)
      const agent = yield* startAgent(cp, host, { ...TEST_MODES, NODE_OPTIONS: `--import ${dir}/register.mjs` })
      const { rolloutId } = yield* publish(cp, TARGET, 0.02)
      yield* awaitState(cp, rolloutId, "Converged", () => agent, 45_000)
      agent.signal("SIGTERM")
      expect((yield* agent.awaitExit(30_000))?.code, tail(agent.stderr())).toBe(0)
      expect(agent.stderr().filter((line) => line.startsWith("LOADED "))).toStrictEqual([])
    }), TIMEOUT)
})
