/**
 * The README's embedding example (examples/embedding.ts) as a user runs it: a process of
 * its own, from the sources through tsx. It must log its rollout's transitions up to
 * Converged, find the control plane's record Converged too, and exit 0 on its own: the process ends only once the agent, the control plane and the
 * temporary directory are gone (NodeRuntime.runMain leaves a successful program to the
 * event loop, which any socket or timer left open would keep alive).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { REPO, spawnScript, tail } from "./support/processes.js"

const EXAMPLE = Path.join(REPO, "packages/agent/examples/embedding.ts")
const TARGET = `${"b".repeat(32)}-nixos-system-web-01`

describe("the embedding example", () => {
  it("is the README's, to the letter (from its first import on)", () => {
    const readme = Fs.readFileSync(Path.join(REPO, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("## Embedding\n"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    const source = Fs.readFileSync(EXAMPLE, "utf8")
    expect(block?.trim()).toBe(source.slice(source.indexOf("import ")).trim())
  })

  it.scopedLive(
    "converges a rollout against the dev control plane in test mode, logs it and exits",
    () =>
      Effect.gen(function*() {
        const example = yield* spawnScript("example", EXAMPLE, [], {})
        const exit = yield* example.awaitExit(150_000)
        const output = [...example.stdout(), ...example.stderr()]
        expect(exit, tail(output, 60)).toStrictEqual({ code: 0, signal: null })

        // What it saw: the transitions to Converged, then its last line, with the control
        // plane's record (the events were delivered before the agent stopped).
        const saw = (pattern: RegExp) => output.findIndex((line) => pattern.test(line))
        const soaking = saw(/\): stable@[0-9a-f]{40}: Activating → Soaking \(LocalActivationCompleted\)$/)
        const convergedStep = saw(/\): stable@[0-9a-f]{40}: Soaking → Converged \(LocalConvergedReached\)$/)
        const converged = saw(/\): stable@[0-9a-f]{40} converged$/)
        expect([soaking, convergedStep, converged].every((index) => index > -1), tail(output, 60)).toBe(true)
        expect(soaking).toBeLessThan(convergedStep)
        expect(convergedStep).toBeLessThan(converged)
        expect(output.slice(converged + 1, converged + 3).map((line) => line.trim())).toStrictEqual([
          expect.stringMatching(/^at: \d{4}-\d\d-\d\dT[\d:.]+Z$/),
          "controlPlane: Converged"
        ])
        // The agent did it itself, in test mode.
        expect(output.some((line) => line.includes(`closure: ${TARGET}`))).toBe(true)
        expect(output.some((line) => line.includes("NIXFLEET_AGENT_ACTIVATION_TEST_MODE is set"))).toBe(true)
        // Its temporary directory (the agent's state directory) went with the program's scope.
        const dir = output.map((line) => /no health checks file at (\S+)\/health-checks\.json/.exec(line)?.[1]).find(
          (found) => found !== undefined
        )
        expect(dir, tail(output, 60)).toBeDefined()
        expect(Fs.existsSync(dir ?? "")).toBe(false)
      }),
    180_000
  )
})
