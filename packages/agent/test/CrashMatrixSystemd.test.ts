/**
 * The crash matrix under a real systemd (`shared/tools/systemd-box`), with the production
 * switch method: the agent's whole control group is SIGKILLed (as a crash, or `KillMode=
 * control-group` on a stop) while `switch-to-configuration` runs in its `systemd-run`
 * transient unit. The switch survives in its own unit; systemd restarts the agent, which
 * waits for that unit to end, sees the host on the target and reports the completion
 * itself: one switch, every event once. Behind the fault-matrix tag, like
 * CrashMatrixNix.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { boot, buildClosure, makeSandbox, type SwitchBehaviour, switchRuns } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import {
  agentPackage,
  agentUnit,
  boxMissing,
  installCli,
  startBox,
  tempDirectory
} from "../../../scripts/systemd/box.js"
import { faultMatrixEnabled, faultMatrixSkipped } from "./support/faultMatrix.js"
import { describeNeeding } from "./support/moduleEval.js"
import { events, eventually, HOST, hostRecord, publish, startControlPlane } from "./support/processes.js"

const UNIT = "nixfleet-agent"

const describeMatrix = (name: string, body: () => void) =>
  faultMatrixEnabled() ? describeNeeding(boxMissing(), name, body) : describe.skip(faultMatrixSkipped(name), body)

/**
 * A host under the box: the sandbox booted on `booted`, a control plane, the module's unit
 * with the production switch method (and the test drop-in: RestartSec=1, each end of the
 * agent's run appended to `exits`). Nothing started yet.
 */
const systemdHost = (closures: {
  readonly booted: SwitchBehaviour
  /** `"landsOnThird"`: the switch points the link at a third closure (verify fails). */
  readonly target: SwitchBehaviour | "landsOnThird"
  readonly switchMethod?: "systemd-run" | "direct"
  /** False: systemd does not restart the killed agent (the test starts it). */
  readonly restart?: boolean
}) =>
  Effect.gen(function*() {
    const dir = yield* tempDirectory("nixfleet-crash-systemd-")
    const cli = yield* installCli(dir)
    const sandbox = yield* makeSandbox
    const booted = yield* buildClosure(sandbox, { name: "nixos-system-web-01-booted", switch: closures.booted })
    const third = yield* buildClosure(sandbox, { name: "nixos-system-web-01-third", switch: { _tag: "Flip" } })
    const target = yield* buildClosure(sandbox, {
      name: "nixos-system-web-01-target",
      switch: closures.target === "landsOnThird" ? { _tag: "FlipTo", closure: third } : closures.target
    })
    yield* boot(sandbox, booted)
    const root = Path.join(dir, "host")
    Fs.mkdirSync(root)
    const cp = yield* startControlPlane(Path.join(root, "cp")).pipe(Effect.orDie)
    const stateDir = Path.join(root, "state")
    Fs.mkdirSync(stateDir)
    const exits = Path.join(root, "exits")
    const unit = yield* agentUnit({
      controlPlaneUrl: cp.url,
      machineId: HOST,
      trustFile: cp.trustFile,
      tls: { clientCert: null, clientKey: null },
      stateDir,
      sshHostKeyFile: Path.join(root, "no-ssh-host-key"),
      switchMethod: closures.switchMethod ?? "systemd-run",
      verifyTimeoutSecs: 30,
      environment: { NIXFLEET_AGENT_PROBE_TEST_MODE: "1", NIX_CONFIG: "substituters =", HOME: sandbox.home },
      extraArgs: [
        "--current-system-path",
        sandbox.currentSystem,
        "--system-profile",
        sandbox.profile,
        "--switch-lock-path",
        sandbox.lockPath
      ]
    }, agentPackage(dir, cli))
    const box = yield* startBox([dir, sandbox.root], dir)
    yield* box.run(["systemctl", "start", "nix-daemon.socket"])
    yield* box.install(
      `${UNIT}.service`,
      unit,
      `[Service]\nRestartSec=1\n${closures.restart === false ? "Restart=no\n" : ""}` +
        `ExecStopPost=/bin/sh -c 'echo "$$SERVICE_RESULT $$EXIT_CODE $$EXIT_STATUS" >> ${exits}'\n` +
        `BindPaths=${dir} ${sandbox.root}\n`
    )
    yield* Effect.addFinalizer(() =>
      Effect.asVoid(
        box.exec(["systemctl", "stop", `${UNIT}.service`, "nixfleet-switch.service", "nixfleet-rollback.service"])
      )
    )
    const diagnostics = Effect.map(
      box.exec(["journalctl", "-u", `${UNIT}.service`, "--no-pager", "-n", "40", "-o", "cat"]),
      (journal) => journal.stdout
    )
    const running = (unit: string) =>
      Effect.map(box.show(`${unit}.service`, ["ActiveState"]), (p) => p["ActiveState"] === "active")
    /** SIGKILLs every process of the agent's control group, and waits until systemd saw it die. */
    const killAgent = Effect.gen(function*() {
      // systemd may report a scope of the agent's it could not signal (EIO in the box): what
      // matters is that the agent's run ended killed, and systemd then stops the rest of its cgroup.
      yield* box.exec(["systemctl", "kill", "--signal=SIGKILL", "--kill-whom=all", `${UNIT}.service`])
      yield* eventually(
        "the agent's run to end (killed)",
        Effect.sync(() => Fs.existsSync(exits) && Fs.readFileSync(exits, "utf8").includes("killed")),
        10_000,
        diagnostics
      )
    })
    const awaitState = (rolloutId: string, state: string) =>
      eventually(
        `${rolloutId} to be ${state}`,
        Effect.map(Effect.orDie(hostRecord(cp, rolloutId)), (record) => record?.state === state),
        120_000,
        diagnostics
      )
    /** Each seq once, with one body; the kinds accepted for the first time, in order. */
    const freshKinds = (rolloutId: string) =>
      Effect.gen(function*() {
        const accepted = (yield* events(cp).pipe(Effect.orDie)).filter((entry) =>
          entry.envelope.rolloutId === rolloutId
        )
        const fresh = accepted.filter((entry) => !entry.duplicate).map((entry) => entry.envelope.event)
        expect(fresh.map((event) => event.seq)).toStrictEqual(fresh.map((_, i) => i + 1))
        for (const { duplicate, envelope } of accepted) {
          if (duplicate) {
            expect(JSON.stringify(envelope.event)).toBe(
              JSON.stringify(fresh.find((event) => event.seq === envelope.event.seq))
            )
          }
        }
        return fresh.map((event) => event.kind)
      })
    const journalSays = (text: string) =>
      Effect.map(box.journal(UNIT), (lines) => lines.some((line) => line.includes(text)))
    return { box, cp, sandbox, booted, target, third, running, killAgent, awaitState, freshKinds, journalSays }
  })

const linkOf = (link: string) => Fs.readlinkSync(link)

describeMatrix("crash matrix under systemd", () => {
  it.scopedLive(
    "SIGKILL of the agent's control group mid-switch: the switch's unit survives, the restarted agent waits for it " +
      "and reports the completion once, without a second switch",
    () =>
      Effect.gen(function*() {
        const host = yield* systemdHost({ booted: { _tag: "Flip" }, target: { _tag: "Flip", delayMs: 8_000 } })
        const { rolloutId } = yield* publish(host.cp, host.target, 0.05).pipe(Effect.orDie)
        yield* host.box.run(["systemctl", "start", `${UNIT}.service`])
        yield* eventually("the switch unit to run", host.running("nixfleet-switch"), 60_000)
        yield* host.killAgent
        // The switch's own unit is not the agent's control group: it still runs.
        expect(yield* host.running("nixfleet-switch")).toBe(true)
        expect(linkOf(host.sandbox.currentSystem)).toBe(`/nix/store/${host.booted}`)

        // systemd restarts the agent (Restart=, RestartSec=1 here).
        yield* host.awaitState(rolloutId, "Converged")
        expect(yield* host.journalSays("resuming after a restart: Complete")).toBe(true)
        expect(linkOf(host.sandbox.currentSystem)).toBe(`/nix/store/${host.target}`)
        expect(yield* switchRuns(host.sandbox)).toStrictEqual([host.target])
        expect(yield* host.freshKinds(rolloutId)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "Converged"
        ])
      }),
    300_000
  )

  it.scopedLive(
    "SIGKILL of the agent's control group mid-rollback: the rollback's unit survives, the restarted agent waits " +
      "for it and records the rollback once, without switching back twice",
    () =>
      Effect.gen(function*() {
        // The target's switch lands on a third closure (verify fails: rollback); the booted
        // closure's own switch runs the rollback, slowly.
        const host = yield* systemdHost({
          booted: { _tag: "Flip", delayMs: 8_000 },
          target: "landsOnThird"
        })
        const { rolloutId } = yield* publish(host.cp, host.target, 0.05).pipe(Effect.orDie)
        yield* host.box.run(["systemctl", "start", `${UNIT}.service`])
        yield* eventually("the rollback unit to run", host.running("nixfleet-rollback"), 60_000)
        yield* host.killAgent
        expect(yield* host.running("nixfleet-rollback")).toBe(true)
        expect(linkOf(host.sandbox.currentSystem)).toBe(`/nix/store/${host.third}`)

        yield* host.awaitState(rolloutId, "Reverted")
        expect(yield* host.journalSays("resuming after a restart: RolledBack")).toBe(true)
        expect(linkOf(host.sandbox.currentSystem)).toBe(`/nix/store/${host.booted}`)
        expect(yield* switchRuns(host.sandbox)).toStrictEqual([host.target, host.booted])
        expect(yield* host.freshKinds(rolloutId)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationFailed",
          "RollbackComplete"
        ])
      }),
    300_000
  )
  it.scopedLive(
    "direct: SIGKILL of the agent's control group mid-switch takes the switch with it; the restarted agent finds " +
      "the host on the closure before and switches again, once, without a second ActivationStarted",
    () =>
      Effect.gen(function*() {
        const host = yield* systemdHost({
          booted: { _tag: "Flip" },
          target: { _tag: "Flip", delayMs: 8_000 },
          switchMethod: "direct",
          // A restarted agent would switch again at once: it starts once the killed switch is shown dead.
          restart: false
        })
        const { rolloutId } = yield* publish(host.cp, host.target, 0.05).pipe(Effect.orDie)
        yield* host.box.run(["systemctl", "start", `${UNIT}.service`])
        yield* eventually(
          "the switch to start",
          Effect.map(switchRuns(host.sandbox), (runs) => runs.length === 1),
          60_000
        )
        yield* host.killAgent
        // Past the switch's 8 s: it never flipped, it died with the agent's control group.
        yield* Effect.sleep("10 seconds")
        expect(linkOf(host.sandbox.currentSystem)).toBe(`/nix/store/${host.booted}`)
        yield* host.box.run(["systemctl", "start", `${UNIT}.service`])
        yield* host.awaitState(rolloutId, "Converged")
        expect(yield* host.journalSays("resuming after a restart: Rerun")).toBe(true)
        expect(linkOf(host.sandbox.currentSystem)).toBe(`/nix/store/${host.target}`)
        expect(yield* switchRuns(host.sandbox)).toStrictEqual([host.target, host.target])
        expect(yield* host.freshKinds(rolloutId)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "Converged"
        ])
      }),
    300_000
  )
})
