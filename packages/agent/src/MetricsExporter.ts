/**
 * Prometheus exposition of the agent's metrics: an HTTP `GET /metrics` on
 * `NIXFLEET_AGENT_METRICS_LISTEN` (`--metrics-listen`, `[host:]port`, loopback unless a
 * host is given) and a node_exporter textfile at `NIXFLEET_AGENT_METRICS_TEXTFILE`
 * (`--metrics-textfile`), rewritten atomically every 15 s and once more on stop. Each is
 * off when its setting is absent.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs/promises"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Path from "node:path"
import type { AgentConfig } from "./AgentConfig.js"
import { writeFileAtomicEffect } from "./internal/atomicFile.js"
import { parseListen } from "./internal/listen.js"
import { CONTENT_TYPE, render } from "./internal/prometheus.js"
import { sampleGauges } from "./Metrics.js"
import type { Outbox } from "./Outbox.js"
import type { Reducer } from "./Reducer.js"

/** node_exporter reads the file when it is scraped; every 15 s keeps it as fresh as a scrape interval. */
const TEXTFILE_INTERVAL = "15 seconds"

/**
 * @since 0.1.0
 */
export class MetricsExporterError extends Data.TaggedError("MetricsExporterError")<{ readonly message: string }> {}

/**
 * Where to listen: `port`, `host:port` or `[ipv6]:port`; a bare port is loopback.
 *
 * @since 0.1.0
 */
export { parseListen }

/**
 * The metrics settings, read from the current `ConfigProvider`.
 *
 * @since 0.1.0
 */
export const metricsConfig = Config.all({
  // An unusable value leaves the endpoint off, never stops the agent: AgentConfig's settingWarnings reports it.
  listen: Config.option(Config.string("NIXFLEET_AGENT_METRICS_LISTEN")).pipe(
    Config.map(Option.flatMapNullable(parseListen))
  ),
  textfile: Config.option(Config.nonEmptyString("NIXFLEET_AGENT_METRICS_TEXTFILE"))
})

/**
 * The prefix of the metrics exposed. Effect's registry is process-wide: it also holds the
 * runtime's own `effect_fiber_*` series (a "counter" that goes down, which breaks
 * `rate()`) and whatever an embedding program records.
 *
 * @since 0.1.0
 */
export const METRIC_PREFIX = "nixfleet_agent_"

/**
 * The current exposition: the sampled gauges refreshed, then the agent's metrics.
 *
 * @since 0.1.0
 */
export const exposition: Effect.Effect<string, never, Outbox | Reducer | AgentConfig> = Effect.zipRight(
  sampleGauges,
  Effect.map(
    Metric.snapshot,
    (pairs) => render(pairs.filter((pair) => pair.metricKey.name.startsWith(METRIC_PREFIX)))
  )
)

const serve = (address: { readonly host: string; readonly port: number }, context: Effect.Effect<string>) =>
  Effect.gen(function*() {
    const app = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (request.url !== "/metrics") return HttpServerResponse.text("not found\n", { status: 404 })
      if (request.method !== "GET") return HttpServerResponse.text("method not allowed\n", { status: 405 })
      return HttpServerResponse.text(yield* context, { contentType: CONTENT_TYPE })
    })
    const server = Http.createServer(yield* NodeHttpServer.makeHandler(app))
    const bound = yield* Effect.acquireRelease(
      Effect.async<Net.AddressInfo, MetricsExporterError>((resume) => {
        server.once("error", (error) =>
          resume(Effect.fail(
            new MetricsExporterError({
              message: `cannot serve metrics on ${address.host}:${address.port}: ${error.message}`
            })
          )))
        server.listen(address.port, address.host, () => resume(Effect.succeed(server.address() as Net.AddressInfo)))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    yield* Effect.logInfo("metrics served").pipe(
      Effect.annotateLogs({ address: `${bound.address}:${bound.port}`, path: "/metrics" })
    )
  })

const textfile = (file: string, context: Effect.Effect<string>) =>
  Effect.gen(function*() {
    const directory = Path.dirname(file)
    yield* Effect.tryPromise(() => Fs.access(directory, Fs.constants.W_OK)).pipe(
      Effect.mapError(() =>
        new MetricsExporterError({ message: `the metrics textfile's directory ${directory} is not writable` })
      )
    )
    // node_exporter runs as another user: the file is world-readable, as its collector expects.
    // Uninterruptible, and the loop stopped before the last write: an abandoned write would
    // still rename its (older) file over the last one.
    const write = Effect.flatMap(
      context,
      (text) => writeFileAtomicEffect(file, text, 0o644)
    ).pipe(
      Effect.catchAll((error) =>
        Effect.logWarning("cannot write the metrics textfile").pipe(
          Effect.annotateLogs({ file, error: error.message })
        )
      )
    )
    const loop = yield* write.pipe(Effect.repeat(Schedule.spaced(TEXTFILE_INTERVAL)), Effect.forkScoped)
    yield* Effect.addFinalizer(() => Effect.zipRight(Fiber.interrupt(loop), write))
  })

/**
 * @since 0.1.0
 */
export const MetricsExporter: Layer.Layer<never, MetricsExporterError, Outbox | Reducer | AgentConfig> = Layer
  .scopedDiscard(
    Effect.gen(function*() {
      const settings = yield* metricsConfig.pipe(
        Effect.mapError((error) => new MetricsExporterError({ message: `metrics settings: ${error}` }))
      )
      const context = yield* Effect.context<Outbox | Reducer | AgentConfig>()
      const current = Effect.provide(exposition, context)
      // An output that cannot be had (a port taken, a directory not writable) is one ERROR
      // line, kept as status's last error, never a stopped agent: the unit would restart for
      // ever over an optional output.
      const optional = <R>(output: Effect.Effect<void, MetricsExporterError, R>) =>
        Effect.catchAll(output, (error) => Effect.logError(`${error.message}; the agent runs without it`))
      if (Option.isSome(settings.listen)) yield* optional(serve(settings.listen.value, current))
      if (Option.isSome(settings.textfile)) yield* optional(textfile(settings.textfile.value, current))
    })
  )
