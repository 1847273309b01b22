/**
 * The pipeline's pieces that need no Nix: signature classification, systemd unit state
 * (from recorded `systemctl show` outputs: systemd cannot run here), command construction,
 * deferred-reboot detection and verify on real symlinks, and the CLI result mapping.
 */
import { NodeContext } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import {
  PipelineError,
  RealiseFailed,
  RollbackFailed,
  SignatureMismatch,
  SwitchFailed,
  VerifyMismatch
} from "../src/pipeline/ActivationPipeline.js"
import { activationResult, processStatus, rollbackResult } from "../src/pipeline/ActivationResult.js"
import { parseUnitState, systemdRunArgv, unitEnded, unitExitStatus } from "../src/pipeline/phases/Fire.js"
import { detectInhibitor } from "../src/pipeline/phases/Inhibitors.js"
import { looksLikeSignatureError } from "../src/pipeline/phases/Realise.js"
import { verify } from "../src/pipeline/phases/Verify.js"

const A = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-a"
const B = "1a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-b"
const C = "2a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-c"

const tempDir = Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped({ prefix: "nixfleet-phase-" }))
const flip = (link: string, target: string) => {
  Fs.symlinkSync(target, `${link}.tmp`)
  Fs.renameSync(`${link}.tmp`, link)
}

describe("signature classification (spec §2.3, §9.1)", () => {
  it.each([
    "error: cannot add path '/nix/store/abc-foo' because it lacks a valid signature",
    "error: no signature is trusted by any of these keys: cache.example.com-1",
    "error: path '/nix/store/abc-foo' is not signed by any of the keys in trusted-public-keys",
    "warning: the substitute for '/nix/store/x' from 'file:///c' is not signed by any of the keys in 'trusted-public-keys'",
    "error: no signatures matched any of the configured public keys",
    "warning: signature mismatch for path '/nix/store/abc-foo'",
    "error: untrusted signature on path '/nix/store/abc-foo'",
    "Error: path Lacks A Valid Signature on this host"
  ])("%s is a signature failure", (stderr) => {
    expect(looksLikeSignatureError(stderr)).toBe(true)
  })

  it.each([
    "error: unable to download 'https://cache.example/nar': Couldn't connect to server",
    "error: path '/nix/store/abc-foo' is required, but it has no substitutes and there is no derivation that produces it",
    "don't know how to build these paths:\n  /nix/store/abc-foo"
  ])("%s is not", (stderr) => {
    expect(looksLikeSignatureError(stderr)).toBe(false)
  })
})

describe("systemd-run (command construction and recorded unit states)", () => {
  it("fires a named transient service, collected, waited for by the client, never a scope", () => {
    expect(systemdRunArgv("nixfleet-switch", `/nix/store/${A}`)).toStrictEqual([
      "systemd-run",
      "--unit=nixfleet-switch",
      "--collect",
      "--wait",
      "--",
      `/nix/store/${A}/bin/switch-to-configuration`,
      "switch"
    ])
    const rollback = systemdRunArgv("nixfleet-rollback", `/nix/store/${B}`)
    expect(rollback).toContain("--unit=nixfleet-rollback")
    expect(rollback).toContain(`/nix/store/${B}/bin/switch-to-configuration`)
    expect(rollback.join(" ")).not.toMatch(/--scope|--pipe|current-system/)
  })

  it("a running unit has not ended", () => {
    const state = parseUnitState(
      "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nExecMainStatus=0\n"
    )
    expect(state).toStrictEqual({
      loadState: "loaded",
      activeState: "active",
      subState: "running",
      result: "success",
      execMainStatus: 0
    })
    expect(unitEnded(state)).toBe(false)
    expect(unitEnded(parseUnitState("LoadState=loaded\nActiveState=activating\nSubState=start\n"))).toBe(false)
  })

  it("a failed unit has ended with its main process's status", () => {
    const state = parseUnitState(
      "LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainStatus=7\n"
    )
    expect(unitEnded(state)).toBe(true)
    expect(unitExitStatus(state)).toBe(7)
  })

  it("a collected unit has ended with an unknown status, never a made-up 0", () => {
    const state = parseUnitState(
      "LoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\nExecMainStatus=0\n"
    )
    expect(unitEnded(state)).toBe(true)
    expect(unitExitStatus(state)).toBeNull()
  })

  it("garbage parses to an unknown state that has not ended", () => {
    const state = parseUnitState("Failed to connect to bus: No such file or directory")
    expect(unitEnded(state)).toBe(false)
    expect(state.execMainStatus).toBeNull()
  })
})

describe("deferred-reboot detection (spec §3, §9.2)", () => {
  /** A system tree whose inhibitor paths link to per-version component files. */
  const tree = (root: string, name: string, versions: Readonly<Record<string, string | null>>) => {
    const system = Path.join(root, name)
    const rel = {
      dbus: "etc/systemd/system/dbus.service",
      systemd: "sw/lib/systemd/systemd",
      kernel: "kernel",
      init: "init"
    }
    for (const [component, version] of Object.entries(versions)) {
      if (version === null) continue
      const file = Path.join(root, "components", `${component}-${version}`)
      Fs.mkdirSync(Path.dirname(file), { recursive: true })
      Fs.writeFileSync(file, version)
      const link = Path.join(system, rel[component as keyof typeof rel])
      Fs.mkdirSync(Path.dirname(link), { recursive: true })
      Fs.symlinkSync(file, link)
    }
    return system
  }
  const same = { dbus: "1", systemd: "1", kernel: "1" }

  it.scoped("identical systems need no reboot", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      expect(yield* detectInhibitor(tree(root, "cur", same), tree(root, "new", same))).toBeNull()
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("a different dbus, systemd or kernel defers, first match first", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const current = tree(root, "cur", same)
      expect(yield* detectInhibitor(current, tree(root, "d", { ...same, dbus: "2" }))).toBe("dbus")
      expect(yield* detectInhibitor(current, tree(root, "s", { ...same, systemd: "2" }))).toBe("systemd")
      expect(yield* detectInhibitor(current, tree(root, "k", { ...same, kernel: "2" }))).toBe("kernel")
      expect(yield* detectInhibitor(current, tree(root, "all", { dbus: "2", systemd: "2", kernel: "2" }))).toBe("dbus")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("a component missing on one side is not a swap; init never defers", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const current = tree(root, "cur", { ...same, init: "1" })
      expect(yield* detectInhibitor(current, tree(root, "empty", {}))).toBeNull()
      expect(yield* detectInhibitor(current, tree(root, "init", { ...same, init: "2" }))).toBeNull()
    }).pipe(Effect.provide(NodeContext.layer)))
})

describe("verify", () => {
  const never = Effect.never
  const setup = (initial: string) =>
    Effect.map(tempDir, (dir) => {
      const link = Path.join(dir, "current-system")
      Fs.symlinkSync(`/nix/store/${initial}`, link)
      return link
    })

  it.scopedLive("sees a flip as it happens, not at the budget (the directory is watched)", () =>
    Effect.gen(function*() {
      const link = yield* setup(A)
      const fiber = yield* Effect.fork(
        verify({ link, expected: B, previous: A, budget: Duration.seconds(30), ended: never })
      )
      yield* Effect.sleep("300 millis")
      const flippedAt = Date.now()
      flip(link, `/nix/store/${B}`)
      expect(yield* Fiber.join(fiber)).toStrictEqual({ _tag: "Settled" })
      // Not at the 30 s budget (room for a loaded machine).
      expect(Date.now() - flippedAt).toBeLessThan(10_000)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scopedLive("a third closure is a mismatch; the previous one means still switching", () =>
    Effect.gen(function*() {
      const link = yield* setup(A)
      const fiber = yield* Effect.fork(
        verify({ link, expected: B, previous: A, budget: Duration.seconds(30), ended: never })
      )
      yield* Effect.sleep("100 millis")
      expect(fiber.unsafePoll()).toBeNull()
      flip(link, `/nix/store/${C}`)
      expect(yield* Fiber.join(fiber)).toStrictEqual({ _tag: "Flipped", observed: C })
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scopedLive("a switch that ends without the flip fails at once, with its exit code", () =>
    Effect.gen(function*() {
      const link = yield* setup(A)
      const ended = yield* Deferred.make<number | null>()
      const fiber = yield* Effect.fork(
        verify({ link, expected: B, previous: A, budget: Duration.seconds(300), ended: Deferred.await(ended) })
      )
      const start = Date.now()
      yield* Deferred.succeed(ended, 7)
      expect(yield* Fiber.join(fiber)).toStrictEqual({ _tag: "Ended", exitCode: 7, lastObserved: A })
      expect(Date.now() - start).toBeLessThan(10_000)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scopedLive("a flip just before the switch ends is a success", () =>
    Effect.gen(function*() {
      const link = yield* setup(A)
      const ended = yield* Deferred.make<number | null>()
      const fiber = yield* Effect.fork(
        verify({ link, expected: B, previous: A, budget: Duration.seconds(30), ended: Deferred.await(ended) })
      )
      flip(link, `/nix/store/${B}`)
      yield* Deferred.succeed(ended, 0)
      expect(yield* Fiber.join(fiber)).toStrictEqual({ _tag: "Settled" })
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scopedLive("times out after the budget, and a missing link is not fatal", () =>
    Effect.gen(function*() {
      const link = yield* setup(A)
      Fs.unlinkSync(link)
      const outcome = yield* verify({ link, expected: B, previous: A, budget: Duration.millis(300), ended: never })
      expect(outcome._tag).toBe("Timeout")
      expect(outcome._tag === "Timeout" && outcome.lastObserved).toMatch(/^<read-error: /)
    }).pipe(Effect.provide(NodeContext.layer)))
})

describe("the CLI's result line", () => {
  it("maps every outcome to its exit code, phase and process status", () => {
    const cases = [
      [activationResult(A, Exit.succeed({ _tag: "FiredAndPolled", closure: A })), "FiredAndPolled", 0, null, 0],
      [
        activationResult(A, Exit.succeed({ _tag: "DeferredPendingReboot", closure: A, component: "kernel" })),
        "DeferredPendingReboot",
        0,
        "defer-bootloader-update",
        10
      ],
      [
        activationResult(A, Exit.fail(new SignatureMismatch({ closure: A, stderrTail: "x" }))),
        "SignatureMismatch",
        -2,
        "realise",
        2
      ],
      [
        activationResult(A, Exit.fail(new VerifyMismatch({ expected: A, actual: C }))),
        "VerifyMismatch",
        -3,
        "verify",
        3
      ],
      [
        activationResult(A, Exit.fail(new RealiseFailed({ phase: "lock", reason: "held" }))),
        "RealiseFailed",
        -1,
        "lock",
        1
      ],
      [
        activationResult(A, Exit.fail(new SwitchFailed({ phase: "switch-exited", subprocessExitCode: 7, detail: "" }))),
        "SwitchFailed",
        7,
        "switch-exited",
        1
      ],
      [
        activationResult(
          A,
          Exit.fail(new SwitchFailed({ phase: "switch-poll-timeout", subprocessExitCode: 0, detail: "" }))
        ),
        "SwitchFailed",
        -1,
        "switch-poll-timeout",
        1
      ],
      [activationResult(A, Exit.fail(new PipelineError({ phase: "x", detail: "y" }))), "PipelineError", -1, "x", 1],
      [activationResult(A, Exit.die(new Error("boom"))), "PipelineError", -1, null, 1],
      [
        rollbackResult(B, Exit.succeed({ _tag: "RolledBack", revertedToClosure: B, fallback: null })),
        "FiredAndPolled",
        0,
        null,
        0
      ],
      [
        rollbackResult(B, Exit.fail(new RollbackFailed({ phase: "nix-env-set", subprocessExitCode: 1, detail: "" }))),
        "Failed",
        1,
        "nix-env-set",
        1
      ]
    ] as const
    for (const [result, outcome, exitCode, phase, status] of cases) {
      expect(result, outcome).toMatchObject({ outcome, exitCode, phase })
      expect(processStatus(result), outcome).toBe(status)
      expect(Object.keys(result)).toStrictEqual(["outcome", "exitCode", "phase", "closure", "detail"])
    }
  })
})
