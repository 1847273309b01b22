/**
 * An exec probe's whole process tree ends with its timeout. Elsewhere its process group is
 * killed (a background child goes with it); under systemd the probe runs in a transient
 * scope of its own, so a grandchild that left the group with `setsid` goes too. The systemd
 * case runs the agent's probe runner as a service inside the systemd box
 * (`fixtures/probes/probeOnce.ts` under `systemd-run`), where INVOCATION_ID is set as for
 * the agent's unit, and looks for the grandchild while that service still runs.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { type Box, boxMissing, eventually, startBox, tempDirectory } from "../../../scripts/systemd/box.js"
import { ProbeDeclaration } from "../src/probes/HealthChecks.js"
import { runProbe } from "../src/probes/Runner.js"
import { describeNeeding } from "./support/moduleEval.js"

const REPO = Path.resolve(__dirname, "../../..")
const TSX = Path.join(REPO, "node_modules/tsx/dist/cli.mjs")
const PROBE_ONCE = Path.join(__dirname, "fixtures/probes/probeOnce.ts")

/** A probe that starts `sleep 1000` (through `setsid` when `escape`), records its pid in `pidFile`, then hangs. */
const hangingProbe = (pidFile: string, escape: boolean) => [
  "/bin/sh",
  "-c",
  `${escape ? "setsid " : ""}sleep 1000 & echo $! > ${JSON.stringify(pidFile)}; exec sleep 1000`
]

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const Outcome = Schema.parseJson(Schema.Struct({ status: Schema.String, failureReason: Schema.NullOr(Schema.String) }))

class BoxEnv extends Context.Tag("test/ProbeTreeBox")<BoxEnv, { readonly box: Box; readonly dir: string }>() {}

describe("a probe's process group ends with its timeout (no systemd)", () => {
  it.scopedLive("a background child of the probe is killed with it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory("probe-tree-")
      const pidFile = Path.join(dir, "pid")
      const declaration = Schema.decodeUnknownSync(ProbeDeclaration)({
        kind: "exec",
        mode: "enforce",
        command: hangingProbe(pidFile, false),
        timeoutSecs: 1
      })
      const outcome = yield* runProbe(declaration, { sshHostKeyFile: "/nonexistent", now: new Date() }).pipe(
        Effect.provide(NodeContext.layer)
      )
      expect(outcome).toMatchObject({ status: "fail", failureReason: "exec probe: timed out after 1s" })
      const pid = Number(Fs.readFileSync(pidFile, "utf8"))
      yield* eventually("the background sleep to be gone", Effect.sync(() => !alive(pid)), 5_000)
    }), 20_000)
})

describeNeeding(boxMissing(), "a probe's scope ends with its timeout (under systemd)", () => {
  const boxLayer = Layer.scoped(
    BoxEnv,
    Effect.gen(function*() {
      const dir = yield* tempDirectory("probe-tree-box-")
      return { box: yield* startBox([dir], dir), dir }
    })
  )
  layer(boxLayer, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.scoped(
      "a grandchild that called setsid is killed at the timeout; no scope is left",
      () =>
        Effect.gen(function*() {
          const { box, dir } = yield* BoxEnv
          const pidFile = Path.join(dir, "pid")
          const outcomeFile = Path.join(dir, "outcome.json")
          yield* box.run([
            "systemd-run",
            "--quiet",
            "--unit=probe-once",
            "--collect",
            `--working-directory=${REPO}`,
            "--",
            process.execPath,
            TSX,
            PROBE_ONCE,
            outcomeFile,
            ...hangingProbe(pidFile, true)
          ])
          yield* Effect.addFinalizer(() => Effect.ignore(box.exec(["systemctl", "stop", "probe-once.service"])))
          yield* eventually("the probe's outcome", Effect.sync(() => Fs.existsSync(outcomeFile)), 30_000)
          const outcome = Schema.decodeUnknownSync(Outcome)(Fs.readFileSync(outcomeFile, "utf8"))
          expect(outcome).toMatchObject({ status: "fail", failureReason: "exec probe: timed out after 1s" })
          // The runner still runs (its end would take its cgroup's processes with it).
          expect((yield* box.show("probe-once.service", ["ActiveState"]))["ActiveState"]).toBe("active")
          const pid = Fs.readFileSync(pidFile, "utf8").trim()
          // The pid is the box's (its own PID namespace): asked there.
          const gone = Effect.map(box.exec(["kill", "-0", pid]), (result) => result.code !== 0)
          yield* eventually(`the setsid sleep (pid ${pid}) to be gone`, gone, 5_000)
          const scopes = yield* box.run([
            "systemctl",
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "nixfleet-probe-*"
          ])
          expect(scopes.trim()).toBe("")
        }),
      60_000
    )
  })
})
