/**
 * Start-up of the command line as installed (the bin script, run through its shebang, on
 * the bundle), next to `node -e 0` in the same run, interleaved (baseline, then each
 * command, RUNS times) so that the machine's drift affects all alike:
 *
 * - `nixfleet-agent --version` (aim: within 3× `node -e 0`);
 * - `nixfleet-agent status` on a state directory with no agent (exit 3; aim: within 4×);
 * - `nixfleet-agent --help` (the whole command line loaded, no command run).
 *
 * Wall time from spawn to exit, and the peak resident set of each (a second, separate
 * round: the probe that reads it, a one-line `--import`, is not in the timed runs).
 *
 *   npm run build && npm run bench -- startup
 */
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { median } from "./stats.js"

const RUNS = 11
const REPO = Path.resolve(import.meta.dirname, "../..")
const BIN = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")
const BUNDLE = Path.join(REPO, "packages/agent/dist/bundle/nixfleet-agent.mjs")

/** Writes the process's peak RSS (KiB) to file descriptor 3 as it exits. */
const PEAK_PROBE = "data:text/javascript," +
  encodeURIComponent(
    "import { writeSync } from \"node:fs\"\n" +
      "process.on(\"exit\", () => writeSync(3, String(process.resourceUsage().maxRSS)))\n"
  )

interface Candidate {
  readonly name: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly status: number
}

/** The environment without NODE_OPTIONS and `NIXFLEET_AGENT_*` (the commands read both). */
const environment = (extra: Readonly<Record<string, string>> = {}): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && key !== "NODE_OPTIONS" && !key.startsWith("NIXFLEET_AGENT_")) env[key] = value
  }
  return { ...env, ...extra }
}

const timed = (candidate: Candidate): number => {
  const start = performance.now()
  const done = spawnSync(candidate.command, [...candidate.args], { stdio: "ignore", env: environment() })
  const elapsed = performance.now() - start
  if (done.status !== candidate.status) {
    throw new Error(`startup: ${candidate.name} exited ${done.status ?? done.signal}, expected ${candidate.status}`)
  }
  return elapsed
}

const peakRssKiB = (candidate: Candidate): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn(candidate.command, [...candidate.args], {
      stdio: ["ignore", "ignore", "ignore", "pipe"],
      env: environment({ NODE_OPTIONS: `--import=${PEAK_PROBE}` })
    })
    let text = ""
    child.stdio[3]?.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8")
    })
    child.once("error", reject)
    child.once("close", () => {
      const kib = Number(text)
      if (Number.isFinite(kib) && kib > 0) resolve(kib)
      else reject(new Error(`startup: no peak RSS from ${candidate.name}`))
    })
  })

export const benchStartup = async (): Promise<void> => {
  if (!Fs.existsSync(BUNDLE)) {
    throw new Error(`startup: ${Path.relative(REPO, BUNDLE)} is missing; run \`npm run build\` first`)
  }
  const stateDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-bench-startup-"))
  try {
    const candidates: ReadonlyArray<Candidate> = [
      { name: "node -e 0", command: process.execPath, args: ["-e", "0"], status: 0 },
      { name: "--version", command: BIN, args: ["--version"], status: 0 },
      { name: "status", command: BIN, args: ["status", "--state-dir", stateDir], status: 3 },
      { name: "--help", command: BIN, args: ["--help"], status: 0 }
    ]
    const times = new Map(candidates.map((candidate) => [candidate.name, [] as Array<number>]))
    for (const candidate of candidates) timed(candidate)
    for (let run = 0; run < RUNS; run++) {
      for (const candidate of candidates) times.get(candidate.name)?.push(timed(candidate))
    }
    const peaks = new Map<string, number>()
    for (const candidate of candidates) {
      const samples: Array<number> = []
      for (let run = 0; run < 5; run++) samples.push(await peakRssKiB(candidate))
      peaks.set(candidate.name, median(samples))
    }
    const ms = (name: string) => median(times.get(name) ?? [])
    const base = ms("node -e 0")
    const row = (name: string, label: string, aim: string) =>
      `  ${label.padEnd(34)} ${ms(name).toFixed(0).padStart(5)} ms  ${(ms(name) / base).toFixed(1)}× node -e 0` +
      `${aim}  peak RSS ${((peaks.get(name) ?? 0) / 1024).toFixed(0)} MiB`
    process.stdout.write([
      `startup: medians of ${RUNS} interleaved runs of the installed command line (bin script, bundle)`,
      `  ${"node -e 0".padEnd(34)} ${base.toFixed(0).padStart(5)} ms  peak RSS ${
        ((peaks.get("node -e 0") ?? 0) / 1024).toFixed(0)
      } MiB`,
      row("--version", "nixfleet-agent --version", " (aim: <= 3×)"),
      row("status", "nixfleet-agent status (no agent)", " (aim: <= 4×)"),
      row("--help", "nixfleet-agent --help", ""),
      JSON.stringify({
        bench: "startup",
        runs: RUNS,
        nodeMs: base,
        versionMs: ms("--version"),
        statusMs: ms("status"),
        helpMs: ms("--help"),
        peakRssKiB: Object.fromEntries(peaks)
      }),
      ""
    ].join("\n"))
  } finally {
    Fs.rmSync(stateDir, { recursive: true, force: true })
  }
}
