/**
 * Effect's metric snapshot in the Prometheus text exposition format (version 0.0.4), the
 * format of a `/metrics` endpoint and of node_exporter's textfile collector.
 *
 * @internal
 */
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"

/**
 * @internal
 */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")

const escapeHelp = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const labels = (pairs: ReadonlyArray<readonly [string, string]>) =>
  pairs.length === 0 ? "" : `{${pairs.map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(",")}}`

const number = (value: number | bigint) =>
  typeof value === "bigint"
    ? value.toString()
    : Number.isNaN(value)
    ? "NaN"
    : value === Infinity
    ? "+Inf"
    : value === -Infinity
    ? "-Inf"
    : String(value)

interface Family {
  readonly type: "counter" | "gauge" | "histogram"
  readonly help: string
  readonly samples: Array<string>
}

/**
 * The exposition of `pairs`: one `# HELP`/`# TYPE` header per metric name, the series of
 * every tag set under it, sorted so that successive scrapes diff cleanly. Frequency
 * and summary metrics are not used by the agent and are left out. A label named in
 * `omit` is left out of every series (the caller made sure it tells none apart).
 *
 * @internal
 */
export const render = (
  pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>,
  options: { readonly omit?: string } = {}
): string => {
  const families = new Map<string, Family>()
  const family = (name: string, type: Family["type"], description: Option.Option<string>) => {
    let found = families.get(name)
    if (found === undefined) {
      found = { type, help: Option.getOrElse(description, () => name), samples: [] }
      families.set(name, found)
    }
    return found
  }
  const series = pairs.map(({ metricKey, metricState }) => {
    const tags = metricKey.tags.filter((label) => label.key !== options.omit)
      .map((label) => [label.key, label.value] as const)
      .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    return { metricKey, metricState, tags, order: `${metricKey.name}${labels(tags)}` }
  }).sort((a, b) => a.order < b.order ? -1 : a.order > b.order ? 1 : 0)
  for (const { metricKey, metricState, tags } of series) {
    const { description, name } = metricKey
    if (MetricState.isCounterState(metricState)) {
      family(name, "counter", description).samples.push(`${name}${labels(tags)} ${number(metricState.count)}`)
    } else if (MetricState.isGaugeState(metricState)) {
      family(name, "gauge", description).samples.push(`${name}${labels(tags)} ${number(metricState.value)}`)
    } else if (MetricState.isHistogramState(metricState)) {
      const samples = family(name, "histogram", description).samples
      let sawInfinity = false
      for (const [boundary, count] of metricState.buckets) {
        sawInfinity ||= boundary === Infinity
        samples.push(`${name}_bucket${labels([...tags, ["le", number(boundary)]])} ${count}`)
      }
      if (!sawInfinity) samples.push(`${name}_bucket${labels([...tags, ["le", "+Inf"]])} ${metricState.count}`)
      samples.push(`${name}_sum${labels(tags)} ${number(metricState.sum)}`)
      samples.push(`${name}_count${labels(tags)} ${metricState.count}`)
    }
  }
  const lines: Array<string> = []
  for (const name of [...families.keys()].sort()) {
    const { help, samples, type } = families.get(name)!
    lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`, ...samples)
  }
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`
}
