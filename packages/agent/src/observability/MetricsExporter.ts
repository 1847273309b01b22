/**
 * Prometheus exposition of the agent's metrics: an HTTP `GET /metrics` on
 * `NIXFLEET_AGENT_METRICS_LISTEN` (`--metrics-listen`, `[host:]port`, loopback unless a
 * host is given) and a node_exporter textfile at `NIXFLEET_AGENT_METRICS_TEXTFILE`
 * (`--metrics-textfile`), rewritten atomically every 15 s and once more on stop. Each is
 * off when its setting is absent.
 *
 * @since 0.1.0
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs/promises"
import type * as Net from "node:net"
import * as Path from "node:path"
import { AgentConfig } from "../config/AgentConfig.js"
import type { Outbox } from "../outbox/Outbox.js"
import type { Reducer } from "../runtime/Reducer.js"
import { StatusBoard } from "../runtime/StatusBoard.js"
import type { MetricsListen } from "../runtime/StatusBoard.js"
import { forkWorker } from "../runtime/Workers.js"
import { writeFileAtomicEffect } from "../support/atomicFile.js"
import { getOnly, type ListenRefused, serveHttp } from "../support/httpServer.js"
import { parseListen } from "../support/listen.js"
import { describeUnsafe, findUnsafe } from "../support/pathSafety.js"
import { labelEffect, MACHINE_ID_LABEL, sampleGauges, seriesOf } from "./Metrics.js"
import { CONTENT_TYPE, render } from "./prometheus.js"

/**
 * 1 while the metrics endpoint (`--metrics-listen`) is bound, 0 while its bind is refused
 * and retried (a port taken by another process, a privileged port). Read in the textfile,
 * or as the scrape's own failure.
 *
 * @since 0.1.0
 */
export const metricsListenUp = Metric.gauge("nixfleet_agent_metrics_listen_up", {
  description: "1 while the metrics endpoint is bound; 0 while binding it is refused and retried"
})

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
 * The current exposition of this agent (its machine id's series, see `MACHINE_ID_LABEL`):
 * the sampled gauges refreshed, then its metrics, without the machine-id label. Another
 * agent in the same process has its own.
 *
 * @since 0.1.0
 */
export const exposition: Effect.Effect<string, never, Outbox | Reducer | AgentConfig> = Effect.gen(function*() {
  const { machineId } = yield* AgentConfig
  // Labelled here too: a last textfile is written from the fiber that closes the agent.
  yield* labelEffect(machineId)(sampleGauges)
  const pairs = yield* Metric.snapshot
  return render(
    seriesOf(machineId, pairs).filter((pair) => pair.metricKey.name.startsWith(METRIC_PREFIX)),
    { omit: MACHINE_ID_LABEL }
  )
})

/** The first retry after a refused bind; each next one waits twice as long, up to the cap. */
const BIND_RETRY_FIRST = "1 second"
const BIND_RETRY_CAP = "5 minutes"

/**
 * Bind retries: exponential from 1 s, at most 5 minutes apart, for as long as the agent
 * runs. A port taken by another (local, unprivileged) process must not stop the agent, and
 * the endpoint comes up once the port is free.
 *
 * @internal
 */
export const bindRetry = Schedule.exponential(BIND_RETRY_FIRST).pipe(
  Schedule.union(Schedule.spaced(BIND_RETRY_CAP))
)

const serve = (address: { readonly host: string; readonly port: number }, context: Effect.Effect<string>) =>
  Effect.gen(function*() {
    const serveMetrics = yield* serveHttp(getOnly(
      "/metrics",
      Effect.map(context, (text) => HttpServerResponse.text(text, { contentType: CONTENT_TYPE }))
    ))
    const board = yield* Effect.serviceOption(StatusBoard)
    const where = `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`
    const report = (state: MetricsListen) =>
      Effect.zipRight(
        Option.match(board, { onNone: () => Effect.void, onSome: (b) => Ref.set(b.metricsListen, state) }),
        Metric.set(metricsListenUp, state.up ? 1 : 0)
      )
    const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

    // One attempt; a failed one leaves nothing listening.
    const bind = serveMetrics({ port: address.port, host: address.host })

    const failures = yield* Ref.make(0)
    const lastCode = yield* Ref.make("")
    const downSince = yield* Ref.make<Date | null>(null)
    const refused = (error: ListenRefused) =>
      Effect.gen(function*() {
        const count = yield* Ref.updateAndGet(failures, (n) => n + 1)
        const previous = yield* Ref.getAndSet(lastCode, error.code)
        const at = yield* now
        const since = (yield* Ref.updateAndGet(downSince, (first) => first ?? at)) ?? at
        yield* report({ address: where, up: false, since, error: `${error.code}: ${error.detail}` })
        // One line when it starts failing, and again only when the reason changes: a port held
        // for days must not fill the journal.
        if (count === 1) {
          yield* Effect.logError(
            `cannot serve metrics on ${where}: ${error.detail}; the agent runs without it, retrying in the background`
          ).pipe(Effect.annotateLogs({ address: where, errno: error.code }))
        } else if (previous !== error.code) {
          yield* Effect.logWarning(`still cannot serve metrics on ${where}: ${error.detail}; retrying`).pipe(
            Effect.annotateLogs({ address: where, errno: error.code })
          )
        }
      })

    const served = Effect.gen(function*() {
      const server = yield* bind.pipe(Effect.tapError(refused), Effect.retry(bindRetry))
      const bound = server.address() as Net.AddressInfo
      const failed = yield* Ref.get(failures)
      yield* report({ address: where, up: true, since: yield* now, error: "" })
      yield* Effect.logInfo(`metrics served at last, after ${failed} refused attempts`).pipe(
        Effect.annotateLogs({ address: `${bound.address}:${bound.port}`, path: "/metrics" })
      )
    })
    // The first attempt is made now, so that a free port is bound before the layer is up.
    const first = yield* Effect.either(bind)
    if (first._tag === "Right") {
      yield* Effect.zipRight(
        report({ address: where, up: true, since: yield* now, error: "" }),
        Effect.logInfo("metrics served").pipe(Effect.annotateLogs({ address: where, path: "/metrics" }))
      )
      return
    }
    yield* refused(first.left)
    yield* forkWorker("MetricsExporter.bind", Effect.zipRight(Effect.sleep(BIND_RETRY_FIRST), served), { mayEnd: true })
  })

const textfile = (file: string, context: Effect.Effect<string>) =>
  Effect.gen(function*() {
    const directory = Path.dirname(file)
    yield* Effect.tryPromise(() => Fs.access(directory, Fs.constants.W_OK)).pipe(
      Effect.mapError(() =>
        new MetricsExporterError({ message: `the metrics textfile's directory ${directory} is not writable` })
      )
    )
    // Root writing in a directory another user controls writes where that user chooses.
    const unsafe = yield* findUnsafe(directory).pipe(
      Effect.mapError((message) => new MetricsExporterError({ message }))
    )
    if (unsafe !== null) {
      return yield* Effect.logWarning(
        `metrics textfile disabled: unsafe directory ${describeUnsafe(unsafe)}`
      ).pipe(Effect.annotateLogs({ file, path: unsafe.path }))
    }
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
    const loop = yield* forkWorker(
      "MetricsExporter.textfile",
      write.pipe(Effect.repeat(Schedule.spaced(TEXTFILE_INTERVAL)))
    )
    yield* Effect.addFinalizer(() => Effect.zipRight(Fiber.interrupt(loop), write))
  })

/**
 * @since 0.1.0
 */
export const layer: Layer.Layer<never, MetricsExporterError, Outbox | Reducer | AgentConfig> = Layer
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
