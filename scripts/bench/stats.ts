/**
 * Small helpers shared by the benchmarks: medians of repeated runs, compared in one run.
 */
import { performance } from "node:perf_hooks"

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Milliseconds taken by `body`. */
export const time = (body: () => void): number => {
  const start = performance.now()
  body()
  return performance.now() - start
}

/**
 * Runs the candidates interleaved (A, B, A, B, …) so that drift of the machine affects
 * both alike, and returns each one's median duration in milliseconds.
 */
export const compare = (
  candidates: Readonly<Record<string, () => void>>,
  options: { readonly warmup: number; readonly runs: number }
): Record<string, number> => {
  const names = Object.keys(candidates)
  for (let i = 0; i < options.warmup; i++) for (const name of names) candidates[name]!()
  const samples: Record<string, Array<number>> = Object.fromEntries(names.map((name) => [name, []]))
  for (let i = 0; i < options.runs; i++) {
    for (const name of names) samples[name]!.push(time(candidates[name]!))
  }
  return Object.fromEntries(names.map((name) => [name, median(samples[name]!)]))
}
