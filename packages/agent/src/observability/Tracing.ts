/**
 * OpenTelemetry export of the agent's spans (one per activation and per pipeline phase,
 * per outbox delivery, per control-plane call), through `@effect/opentelemetry`.
 *
 * The OpenTelemetry packages are loaded only when tracing is on: `OTEL_EXPORTER_OTLP_ENDPOINT`
 * (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set in the current `ConfigProvider`. Without it
 * the layer is empty and nothing is imported, so an agent that does not trace pays nothing.
 *
 * @since 0.1.0
 */
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { optionalSettings } from "../support/optionalSettings.js"
import { VERSION } from "../support/version.js"

/**
 * The service name spans are exported under.
 *
 * @since 0.1.0
 */
export const SERVICE_NAME = "nixfleet-agent"

/**
 * Effect's tracer backed by an OpenTelemetry tracer provider feeding `processor`. The
 * provider is shut down (its spans flushed) when the layer's scope closes.
 *
 * @since 0.1.0
 */
export const layerWithProcessor = (processor: SpanProcessor): Layer.Layer<never> =>
  Layer.unwrapEffect(
    Effect.map(
      Effect.promise(() => import("@effect/opentelemetry/NodeSdk")),
      (NodeSdk) =>
        Layer.discard(NodeSdk.layer(() => ({
          resource: { serviceName: SERVICE_NAME, serviceVersion: VERSION },
          spanProcessor: processor
        })))
    )
  )

const endpoints = Config.all({
  base: Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_ENDPOINT")),
  traces: Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
})

/**
 * Where OTLP/HTTP traces go: the traces endpoint as given, or `/v1/traces` under the base
 * endpoint (the OpenTelemetry exporter specification's rule).
 *
 * @since 0.1.0
 */
export const tracesUrl = (
  settings: { readonly base: Option.Option<string>; readonly traces: Option.Option<string> }
): Option.Option<string> =>
  Option.orElse(settings.traces, () => Option.map(settings.base, (base) => `${base.replace(/\/+$/, "")}/v1/traces`))

/**
 * Tracing as configured: OTLP over HTTP with batched export when an endpoint is set,
 * nothing otherwise. An unreadable setting is logged and leaves tracing off: traces are
 * never a reason not to run.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<never> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const settings = yield* optionalSettings(endpoints, "OpenTelemetry settings are unreadable; not tracing")
    const url = Option.flatMap(settings, tracesUrl)
    if (Option.isNone(url)) return Layer.empty
    // The exporter throws on a URL it cannot parse: that would stop the agent from starting.
    if (!URL.canParse(url.value)) {
      yield* Effect.logError(
        "OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is not a URL; not tracing"
      ).pipe(Effect.annotateLogs("url", url.value))
      return Layer.empty
    }
    const [{ BatchSpanProcessor }, { OTLPTraceExporter }] = yield* Effect.promise(() =>
      Promise.all([import("@opentelemetry/sdk-trace-base"), import("@opentelemetry/exporter-trace-otlp-http")])
    )
    yield* Effect.logInfo("exporting traces").pipe(Effect.annotateLogs("url", url.value))
    return layerWithProcessor(new BatchSpanProcessor(new OTLPTraceExporter({ url: url.value })))
  })
)
