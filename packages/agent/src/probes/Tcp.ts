/**
 * The tcp probe: passes iff a TCP connection to `host:port` opens within
 * `connectTimeoutSecs`. The connection is closed at once; nothing is sent.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Net from "node:net"
import type { ProbeDeclaration } from "./HealthChecks.js"
import type { ProbeOutcome } from "./ProbeOutcome.js"
import { failed, passed } from "./reason.js"

const connect = (host: string, port: number, address: string) =>
  Effect.async<void, string>((resume) => {
    let socket: Net.Socket
    try {
      socket = Net.createConnection({ host, port })
    } catch (error) {
      // Node refuses some arguments synchronously (port 0, for one).
      return resume(
        Effect.fail(`tcp probe: connect ${address}: ${error instanceof Error ? error.message : String(error)}`)
      )
    }
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.void)
    })
    socket.once("error", (error) => resume(Effect.fail(`tcp probe: connect ${address}: ${error.message}`)))
    // On timeout (interruption) the pending connection attempt is abandoned.
    return Effect.sync(() => socket.destroy())
  })

/**
 * @since 0.1.0
 */
export const runTcp: (declaration: ProbeDeclaration) => Effect.Effect<ProbeOutcome> = Effect.fn("probe.tcp")(
  function*(declaration) {
    const { connectTimeoutSecs, host, port } = declaration
    if (port === null) return failed("tcp probe: port missing")
    const address = Net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
    yield* Effect.annotateCurrentSpan("address", address)
    return yield* connect(host, port, address).pipe(
      Effect.timeoutFail({
        duration: Duration.seconds(connectTimeoutSecs),
        onTimeout: () => `tcp probe: connect ${address} timed out after ${connectTimeoutSecs}s`
      }),
      Effect.as(passed),
      Effect.catchAll((reason) => Effect.succeed(failed(reason)))
    )
  }
)
