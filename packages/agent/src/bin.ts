/**
 * The `nixfleet-agent` executable.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { runCli } from "./cli/Cli.js"

Effect.runPromise(runCli(process.argv)).then(
  (status) => process.exit(status),
  () => process.exit(1)
)
