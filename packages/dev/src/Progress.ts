/**
 * What `dev` shows its user on stdout: plain lines, timed from the start, with colours
 * only on a terminal (logs go to stderr, so this stays readable).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * Colours (ANSI SGR) for a terminal, identities otherwise.
 *
 * @since 0.1.0
 */
export interface Paint {
  readonly bold: (text: string) => string
  readonly dim: (text: string) => string
  readonly good: (text: string) => string
  readonly bad: (text: string) => string
  /** A rollout state: green when converged, red when failed or reverted, yellow on the way. */
  readonly state: (state: string) => string
}

/**
 * @since 0.1.0
 */
export interface ProgressService {
  /** One line as it is. */
  readonly line: (text: string) => Effect.Effect<void>
  /** One line prefixed with the seconds since the start, e.g. `[  12.3s]`. */
  readonly timed: (text: string) => Effect.Effect<void>
  readonly paint: Paint
}

/**
 * @since 0.1.0
 */
export class Progress extends Context.Tag("@nixfleet/dev/Progress")<Progress, ProgressService>() {
  /** Lines through the current `Console`; `color` only when stdout is a terminal. */
  static readonly layer = (options: { readonly color: boolean }): Layer.Layer<Progress> =>
    Layer.effect(
      Progress,
      Effect.map(Clock.currentTimeMillis, (startedAt) => {
        const paint = options.color ? colours : plain
        return {
          line: (text) => Console.log(text),
          timed: (text) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Console.log(`${paint.dim(`[${((now - startedAt) / 1000).toFixed(1).padStart(6)}s]`)} ${text}`)),
          paint
        }
      })
    )
}

const sgr = (code: string) => (text: string) => `\u001b[${code}m${text}\u001b[0m`

const identity = (text: string) => text

const plain: Paint = { bold: identity, dim: identity, good: identity, bad: identity, state: identity }

const colours: Paint = {
  bold: sgr("1"),
  dim: sgr("2"),
  good: sgr("32"),
  bad: sgr("31"),
  state: (state) => sgr(stateColour(state))(state)
}

function stateColour(state: string): string {
  if (state === "Converged") return "32"
  return state === "Failed" || state === "Reverted" ? "31" : "33"
}
