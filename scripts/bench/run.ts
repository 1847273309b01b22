/**
 * Runs the named benchmarks (all when none is named): `npm run bench -- state-machine`,
 * `npm run bench -- outbox-enqueue outbox-drain`.
 */
import { benchActivation } from "./activation.js"
import { benchAgentFigures } from "./agent-figures.js"
import { benchNodeFlags } from "./node-flags.js"
import { benchOutboxDrain, benchOutboxEnqueue } from "./outbox.js"
import { benchStartup } from "./startup.js"
import { benchStateMachine } from "./state-machine.js"
import { benchSystemd } from "./systemd.js"

const benches: Record<string, () => void | Promise<void>> = {
  "state-machine": benchStateMachine,
  "outbox-enqueue": benchOutboxEnqueue,
  "outbox-drain": benchOutboxDrain,
  activation: benchActivation,
  "agent-figures": benchAgentFigures,
  startup: benchStartup,
  "node-flags": benchNodeFlags,
  systemd: benchSystemd
}

const requested = process.argv.slice(2)
const unknown = requested.filter((name) => !(name in benches))
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(", ")}; known: ${Object.keys(benches).join(", ")}\n`)
  process.exit(64)
}
for (const name of requested.length > 0 ? requested : Object.keys(benches)) {
  await benches[name]!()
}
