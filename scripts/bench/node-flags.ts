/**
 * What the node flags and environment of the bin script's shebang (the flake's wrapper
 * passes the same) cost and save, each workload with and without them in the same run:
 *
 * 1. the daemon (`agent-figures`): spawn → boot recovery, publish → DispatchAck, idle RSS
 *    after converging, started through the shebang and as `node <bin script>`;
 * 2. throughput: `outbox-enqueue` (durable events through the reducer into SQLite) and
 *    `state-machine` (pure CPU), each run ROUNDS times in a child process with and without
 *    the flags, alternating; medians of the children's own medians.
 *
 *   npm run build && npm run bench -- node-flags
 */
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { shebangSettings } from "../shebang.js"
import { type AgentFigures, agentFigures } from "./agent-figures.js"
import { median } from "./stats.js"

const ROUNDS = 3
const REPO = Path.resolve(import.meta.dirname, "../..")
const BIN = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")

/** One JSON figure line of `npm run bench -- <name>`, run in a child node with `nodeFlags` and `env`. */
const childBench = (
  name: string,
  nodeFlags: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>
): Record<string, number> => {
  const done = spawnSync(process.execPath, [
    ...nodeFlags,
    "--expose-gc",
    "--import",
    "tsx",
    "--conditions=@nixfleet/source",
    Path.join(REPO, "scripts/bench/run.ts"),
    name
  ], { cwd: REPO, env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
  const line = done.stdout.split("\n").find((text) => text.startsWith(`{"bench":"${name}"`))
  if (done.status !== 0 || line === undefined) {
    throw new Error(`node-flags: ${name} failed (${done.status ?? done.signal}): ${done.stderr.slice(-2000)}`)
  }
  return JSON.parse(line) as Record<string, number>
}

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`

export const benchNodeFlags = async (): Promise<void> => {
  const { env, nodeFlags } = shebangSettings(Fs.readFileSync(BIN, "utf8"))
  const settings = [...Object.entries(env).map(([key, value]) => `${key}=${value}`), ...nodeFlags].join(" ")

  const samples = {
    enqueue: { on: [] as Array<number>, off: [] as Array<number> },
    steps: { on: [] as Array<number>, off: [] as Array<number> }
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [on, flags, extra] of [[false, [], {}], [true, nodeFlags, env]] as const) {
      const outbox = childBench("outbox-enqueue", flags, extra)
      const machine = childBench("state-machine", flags, extra)
      samples.enqueue[on ? "on" : "off"].push((outbox["events"] ?? 0) / ((outbox["agentMs"] ?? 1) / 1000))
      samples.steps[on ? "on" : "off"].push((machine["steps"] ?? 0) / ((machine["stepMs"] ?? 1) / 1000))
    }
  }
  const daemon: { readonly plain: AgentFigures; readonly installed: AgentFigures } = {
    plain: await Effect.runPromise(agentFigures("plain")),
    installed: await Effect.runPromise(agentFigures("installed"))
  }
  const rate = (values: ReadonlyArray<number>) => Math.round(median(values)).toLocaleString("en")
  process.stdout.write([
    `node-flags: ${settings}`,
    `  daemon, medians of fresh agents:    without          with`,
    `    spawn → boot recovery done:     ${daemon.plain.spawnToBootMs.toFixed(0).padStart(6)} ms    ${
      daemon.installed.spawnToBootMs.toFixed(0).padStart(6)
    } ms`,
    `    publish → DispatchAck:          ${daemon.plain.publishToAckMs.toFixed(0).padStart(6)} ms    ${
      daemon.installed.publishToAckMs.toFixed(0).padStart(6)
    } ms`,
    `    idle RSS after converging:      ${mib(daemon.plain.idleRssKiB).padStart(9)}    ${
      mib(daemon.installed.idleRssKiB).padStart(9)
    }`,
    `  throughput, medians of ${ROUNDS} alternating child processes:`,
    `    outbox enqueue (events/s):      ${rate(samples.enqueue.off).padStart(9)}    ${
      rate(samples.enqueue.on).padStart(9)
    }`,
    `    state machine (steps/s):        ${rate(samples.steps.off).padStart(9)}    ${
      rate(samples.steps.on).padStart(9)
    }`,
    JSON.stringify({
      bench: "node-flags",
      settings,
      withoutFlags: {
        spawnToBootMs: daemon.plain.spawnToBootMs,
        publishToAckMs: daemon.plain.publishToAckMs,
        idleRssKiB: daemon.plain.idleRssKiB,
        enqueuePerSecond: median(samples.enqueue.off),
        stepsPerSecond: median(samples.steps.off)
      },
      withFlags: {
        spawnToBootMs: daemon.installed.spawnToBootMs,
        publishToAckMs: daemon.installed.publishToAckMs,
        idleRssKiB: daemon.installed.idleRssKiB,
        enqueuePerSecond: median(samples.enqueue.on),
        stepsPerSecond: median(samples.steps.on)
      }
    }),
    ""
  ].join("\n"))
}
