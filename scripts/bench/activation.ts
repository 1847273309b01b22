/**
 * Activation pipeline overhead against real Nix, in one run:
 *
 * 1. The same Nix commands in a plain shell script (realise a present path, `nix-env
 *    --set`, a switch that flips at once) next to the pipeline in process (the daemon path)
 *    and through the built CLI (`node packages/agent/bin/nixfleet-agent.js activate`):
 *    medians of several alternating runs. Aim: the daemon path within 30 ms of the script.
 * 2. Time from the switch's flip to the pipeline's success, and from a failing switch's
 *    exit to the pipeline's failure (the reference agent polls every 2 s, and waits its
 *    whole 300 s budget for a switch that died).
 *
 *   npm run build && npm run bench -- activation
 */
import { NodeContext } from "@effect/platform-node"
import { ActivationPipeline, NixActivationPipeline, PipelineConfig } from "@nixfleet/agent"
import { boot, buildClosure, makeSandbox, type NixSandbox, runProcess } from "@nixfleet/dev/NixFixtures"
import { Effect, Layer } from "effect"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { median } from "./stats.js"

const RUNS = 9
const REPO = Path.resolve(import.meta.dirname, "../..")
const CLI = Path.join(REPO, "packages/agent/bin/nixfleet-agent.js")

const SCRIPT = `set -e
nix-store --realise "/nix/store/$1" >/dev/null
nix-env --profile "$2" --set "/nix/store/$1"
"/nix/store/$1/bin/switch-to-configuration" switch
`

const config = (sandbox: NixSandbox) => ({
  currentSystemPath: sandbox.currentSystem,
  systemProfile: sandbox.profile,
  switchMethod: "direct" as const,
  switchLockPath: sandbox.lockPath,
  stateDir: sandbox.stateDir,
  verifyTimeoutSecs: 300,
  realiseTimeoutSecs: 120,
  storeDir: "/nix/store"
})

const cliFlags = (sandbox: NixSandbox) => [
  "--current-system-path",
  sandbox.currentSystem,
  "--system-profile",
  sandbox.profile,
  "--switch-lock-path",
  sandbox.lockPath,
  "--state-dir",
  sandbox.stateDir,
  "--switch-method",
  "direct"
]

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6

const bench = Effect.gen(function*() {
  if (!Fs.existsSync(Path.join(REPO, "packages/agent/dist/bundle/nixfleet-agent.mjs"))) {
    return yield* Effect.dieMessage("run `npm run build` first: the CLI is measured as installed, from the bundle")
  }
  const sandbox = yield* makeSandbox
  Object.assign(process.env, sandbox.env)
  const a = yield* buildClosure(sandbox, { name: "nixos-system-a", switch: { _tag: "Flip" } })
  const b = yield* buildClosure(sandbox, { name: "nixos-system-b", switch: { _tag: "Flip" } })
  const failing = yield* buildClosure(sandbox, { name: "nixos-system-fail", switch: { _tag: "Exit", code: 7 } })
  yield* boot(sandbox, a)
  const pipeline = yield* Effect.provide(
    ActivationPipeline.ActivationPipeline,
    NixActivationPipeline.layer.pipe(
      Layer.provide(PipelineConfig.make(config(sandbox))),
      Layer.provide(NodeContext.layer)
    )
  )

  const script: Array<number> = []
  const daemon: Array<number> = []
  const cli: Array<number> = []
  const flipToSuccess: Array<number> = []
  let next = b
  const toggle = () => {
    const target = next
    next = next === a ? b : a
    return target
  }
  for (let i = 0; i < RUNS; i++) {
    let start = process.hrtime.bigint()
    execFileSync("/bin/sh", ["-c", SCRIPT, "sh", toggle(), sandbox.profile], { stdio: "ignore" })
    script.push(ms(start))

    const target = toggle()
    start = process.hrtime.bigint()
    yield* pipeline.activate(target)
    const done = Date.now()
    daemon.push(ms(start))
    flipToSuccess.push(done - Fs.lstatSync(sandbox.currentSystem).mtimeMs)

    start = process.hrtime.bigint()
    // As installed: the bin script through its shebang (its node flags), on the bundle.
    const result = yield* runProcess(CLI, ["activate", toggle(), ...cliFlags(sandbox)])
    if (result.code !== 0) return yield* Effect.dieMessage(`CLI activation failed: ${result.stdout}${result.stderr}`)
    cli.push(ms(start))
  }

  const exitToFailure: Array<number> = []
  for (let i = 0; i < RUNS; i++) {
    const marker = Path.join(sandbox.root, "markers", `switch-${failing}`)
    Fs.rmSync(marker, { force: true })
    yield* Effect.either(pipeline.activate(failing))
    const done = Date.now()
    exitToFailure.push(done - Fs.statSync(marker).mtimeMs)
  }

  const s = median(script)
  const d = median(daemon)
  const c = median(cli)
  process.stdout.write([
    `activation: medians of ${RUNS} alternating runs against real Nix (direct switch method)`,
    `  plain shell script:        ${s.toFixed(1)} ms`,
    `  pipeline, daemon path:     ${d.toFixed(1)} ms (+${(d - s).toFixed(1)} ms; aim: within 30 ms)`,
    `  pipeline, through the CLI: ${c.toFixed(1)} ms (+${(c - s).toFixed(1)} ms, process start included)`,
    `  switch flip → success:     ${median(flipToSuccess).toFixed(0)} ms (reference agent: up to 2000 ms)`,
    `  switch exit → failure:     ${median(exitToFailure).toFixed(0)} ms (reference agent: the whole 300 s budget)`,
    JSON.stringify({
      bench: "activation",
      scriptMs: s,
      daemonMs: d,
      cliMs: c,
      flipToSuccessMs: median(flipToSuccess),
      exitToFailureMs: median(exitToFailure)
    }),
    ""
  ].join("\n"))
})

export const benchActivation = (): Promise<void> => Effect.runPromise(Effect.scoped(bench))
