/**
 * The http probe: passes iff `GET url` answers exactly `expectStatus` within `timeoutSecs`.
 *
 * The request goes through undici with a dispatcher made for this one run and destroyed
 * after it (upstream built a fresh client per run too), not through the agent's
 * `HttpClient`: that one carries the host's mTLS identity for the control plane, which must
 * never be presented to an arbitrary probe target, and a shared or global dispatcher could
 * be swapped under the probe. Server certificates are checked against Node's CA roots
 * (plus `NODE_EXTRA_CA_CERTS`).
 *
 * Redirects are never followed: the redirect answer itself is judged, so a 302 fails a
 * probe expecting 200 and passes one expecting 302. Upstream followed up to ten redirects
 * to any host; following none keeps a probe on the host its declaration names.
 *
 * The body is never read: the status is the whole verdict.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { Agent, request } from "undici"
import type { ProbeDeclaration } from "./HealthChecks.js"
import type { ProbeOutcome } from "./ProbeOutcome.js"
import { failed, passed } from "./reason.js"

const describe = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** Only http and https: other schemes (`data:`, `file:`) would not probe a service. */
const checkUrl = (text: string): string | null => {
  if (!URL.canParse(text)) return `http probe: invalid url ${JSON.stringify(text)}`
  const { protocol } = new URL(text)
  return protocol === "http:" || protocol === "https:" ? null : `http probe: unsupported scheme ${protocol}`
}

const status = (url: string) =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Agent()),
    (dispatcher) =>
      Effect.tryPromise({
        try: async (signal) => {
          const response = await request(url, { method: "GET", dispatcher, signal })
          // Not read: the status is the verdict, and a body that trickles must not hold the
          // probe. Destroying an unfinished undici body emits an abort error; without a
          // listener it would be an uncaught exception.
          response.body.on("error", () => {}).destroy()
          return response.statusCode
        },
        catch: (error) => `http probe: send: ${describe(error)}`
      }),
    (dispatcher) => Effect.ignore(Effect.tryPromise(() => dispatcher.destroy()))
  )

/**
 * @since 0.1.0
 */
export const runHttp: (declaration: ProbeDeclaration) => Effect.Effect<ProbeOutcome> = Effect.fn("probe.http")(
  function*(declaration) {
    const { expectStatus, timeoutSecs, url } = declaration
    if (url === null) return failed("http probe: url missing")
    const invalid = checkUrl(url)
    if (invalid !== null) return failed(invalid)
    return yield* status(url).pipe(
      Effect.timeoutFail({
        duration: Duration.seconds(timeoutSecs),
        onTimeout: () => `http probe: timed out after ${timeoutSecs}s`
      }),
      Effect.map((got) =>
        got === expectStatus ? passed : failed(`http probe: status ${got} != expected ${expectStatus}`)
      ),
      Effect.catchAll((reason) => Effect.succeed(failed(reason)))
    )
  }
)
