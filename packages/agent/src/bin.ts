/**
 * The `nixfleet-agent` executable.
 *
 * `--version` alone is answered before the command line is loaded (inventory tools ask
 * every host for it): Effect and @effect/cli, most of the start-up time of any other
 * command, are imported only for the others.
 *
 * @since 0.1.0
 */
import { VERSION } from "./support/version.js"

const args = process.argv.slice(2)
if (args.length === 1 && args[0] === "--version") {
  process.stdout.write(`${VERSION}\n`)
} else {
  const [Effect, { runCli }] = await Promise.all([import("effect/Effect"), import("./cli/Cli.js")])
  Effect.runPromise(runCli(process.argv)).then(
    (status) => process.exit(status),
    () => process.exit(1)
  )
}
