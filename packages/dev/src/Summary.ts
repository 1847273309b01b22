/**
 * The table `dev` ends with: one row per rollout, then what did not go as expected.
 *
 * @since 0.1.0
 */
import type { RolloutResult } from "./DemoRollout.js"
import type { Paint } from "./Progress.js"

const HEADERS = ["rollout", "rollout id", "closure", "final state", "events delivered", "duration", "as expected"]

/**
 * The table's lines (columns padded on the plain text, colours added after).
 *
 * @since 0.1.0
 */
export const summaryLines = (results: ReadonlyArray<RolloutResult>, paint: Paint): ReadonlyArray<string> => {
  const rows = results.map((result) => [
    result.label,
    result.rolloutId,
    result.closure,
    result.finalState,
    String(result.eventsDelivered),
    `${(result.durationMs / 1000).toFixed(1)} s`,
    result.problems.length === 0 ? "yes" : "NO"
  ])
  const widths = HEADERS.map((header, i) => Math.max(header.length, ...rows.map((row) => row[i]?.length ?? 0)))
  const format = (cells: ReadonlyArray<string>, colour: (cell: string, i: number) => string) =>
    cells.map((cell, i) => `${colour(cell, i)}${" ".repeat((widths[i] ?? 0) - cell.length)}`).join("  ").trimEnd()
  const colourCell = (cell: string, i: number) => {
    if (i === 3) return paint.state(cell)
    if (i === 6) return cell === "yes" ? paint.good(cell) : paint.bad(cell)
    return cell
  }
  return [
    format(HEADERS, paint.bold),
    ...rows.map((row) => format(row, colourCell)),
    ...results.flatMap((result) => result.problems.map((problem) => paint.bad(`${result.label}: ${problem}`)))
  ]
}
