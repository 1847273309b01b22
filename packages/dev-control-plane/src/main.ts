/**
 * The control plane as a separate process, for tests that run the agent as a subprocess
 * and for humans:
 *
 * ```sh
 * node_modules/.bin/tsx --conditions=@nixfleet/source packages/dev-control-plane/src/main.ts \
 *   [--host H] [--port N] [--tls] [--dir D] [--strict] [--cn-suffix S]
 * ```
 *
 * It prints exactly one line on stdout, `{"url": ..., "trustFile": ..., "caFile": ...}`,
 * once it is listening, and serves until SIGTERM or SIGINT (exit 0). A bad argument exits
 * 64 with one line on stderr; a start failure exits 1. Drive it with the operator API.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { type DevControlPlaneOptions, start } from "./DevControlPlane.js"

class UsageError extends Data.TaggedError("UsageError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

const EX_USAGE = 64

/**
 * Parses the command line into start options.
 *
 * @since 0.1.0
 */
export const parseArguments = (argv: ReadonlyArray<string>): Either.Either<DevControlPlaneOptions, UsageError> => {
  let options: DevControlPlaneOptions = {}
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const value = (): Either.Either<string, UsageError> => {
      const next = argv[i + 1]
      if (next === undefined) return Either.left(new UsageError({ reason: `${flag} needs a value` }))
      i++
      return Either.right(next)
    }
    switch (flag) {
      case "--tls":
        options = { ...options, tls: true }
        break
      case "--strict":
        options = { ...options, strictProtocol: true }
        break
      case "--host":
      case "--dir":
      case "--cn-suffix": {
        const text = value()
        if (Either.isLeft(text)) return Either.left(text.left)
        const key = flag === "--host" ? "host" : flag === "--dir" ? "dir" : "cnSuffix"
        options = { ...options, [key]: text.right }
        break
      }
      case "--port": {
        const text = value()
        if (Either.isLeft(text)) return Either.left(text.left)
        const port = /^[0-9]{1,5}$/.test(text.right) ? Number(text.right) : NaN
        if (!(port <= 65535)) {
          return Either.left(new UsageError({ reason: `invalid port ${JSON.stringify(text.right)}` }))
        }
        options = { ...options, port }
        break
      }
      default:
        return Either.left(new UsageError({ reason: `unknown argument ${JSON.stringify(flag)}` }))
    }
  }
  return Either.right(options)
}

const program = Effect.gen(function*() {
  const options = yield* parseArguments(process.argv.slice(2))
  const controlPlane = yield* start(options)
  const line = JSON.stringify({ url: controlPlane.url, trustFile: controlPlane.trustFile, caFile: controlPlane.caFile })
  yield* Effect.sync(() => process.stdout.write(`${line}\n`))
  return yield* Effect.never
}).pipe(Effect.scoped)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return onExit(0)
    const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
    const message = failure instanceof Error ? failure.message : Cause.pretty(exit.cause)
    process.stderr.write(`dev-control-plane: ${message}\n`)
    onExit(failure instanceof UsageError ? EX_USAGE : 1)
  }
})
