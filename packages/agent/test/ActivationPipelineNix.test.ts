/**
 * The activation pipeline against real Nix: tiny system closures built as derivations,
 * a sandbox with its own current-system link, profile, lock and state directory, and a
 * signed file:// binary cache. The switch runs with the `direct` method (a detached child
 * whose exit is watched); `systemd-run` and `darwin` cannot run here (see PipelinePhases).
 */
import { expect, it } from "@effect/vitest"
import {
  boot,
  bootRuns,
  buildClosure,
  currentClosure,
  deleteFromStore,
  generations,
  holdSwitchLock,
  makeBinaryCache,
  makeSandbox,
  type NixSandbox,
  profileClosure,
  switchRuns
} from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { ActivationPipeline } from "../src/pipeline/ActivationPipeline.js"
import { describeNix } from "./nix/describeNix.js"
import { pipeline, withEnv } from "./support/nixPipeline.js"

const activate = (
  sandbox: NixSandbox,
  target: string,
  env: Readonly<Record<string, string>> = sandbox.env,
  verifyTimeoutSecs = 30
) =>
  withEnv(
    env,
    Effect.flatMap(ActivationPipeline, (p) => Effect.either(p.activate(target))).pipe(
      Effect.provide(pipeline(sandbox, verifyTimeoutSecs))
    )
  )

const rollback = (sandbox: NixSandbox, closure: string) =>
  withEnv(
    sandbox.env,
    Effect.flatMap(ActivationPipeline, (p) => Effect.either(p.rollback(closure))).pipe(
      Effect.provide(pipeline(sandbox))
    )
  )

/** A sandbox running a first closure, as a host that booted it. */
const booted = (name = "prior") =>
  Effect.gen(function*() {
    const sandbox = yield* makeSandbox
    const prior = yield* buildClosure(sandbox, { name: `nixos-system-${name}`, switch: { _tag: "Flip" } })
    yield* boot(sandbox, prior)
    return { sandbox, prior }
  })

/** Profile generations and links: what "untouched" means. */
const hostState = (sandbox: NixSandbox) =>
  Effect.all({ current: currentClosure(sandbox), profile: profileClosure(sandbox), generations: generations(sandbox) })

const TIMEOUT = 120_000

describeNix("ActivationPipeline against real Nix", () => {
  it.scopedLive(
    "activates a closure: the profile and the current-system link point at it",
    () =>
      Effect.gen(function*() {
        const { sandbox } = yield* booted()
        const target = yield* buildClosure(sandbox, {
          name: "nixos-system-next",
          switch: { _tag: "Flip", delayMs: 200 }
        })
        const result = yield* activate(sandbox, target)
        expect(result).toMatchObject({ _tag: "Right", right: { _tag: "FiredAndPolled", closure: target } })
        expect(yield* currentClosure(sandbox)).toBe(target)
        expect(yield* profileClosure(sandbox)).toBe(target)
        expect(yield* switchRuns(sandbox)).toStrictEqual([target])
        // The GC root lasted only until the profile held the closure.
        expect(Fs.readdirSync(Path.join(sandbox.stateDir, "gcroots"))).toStrictEqual([])
      }),
    TIMEOUT
  )

  it.scopedLive("a switch that exits 7 without flipping fails with code 7 at once", () =>
    Effect.gen(function*() {
      const { prior, sandbox } = yield* booted()
      const target = yield* buildClosure(sandbox, { name: "nixos-system-exit7", switch: { _tag: "Exit", code: 7 } })
      const start = Date.now()
      const result = yield* activate(sandbox, target, sandbox.env, 300)
      const elapsed = Date.now() - start
      expect(result).toMatchObject({
        _tag: "Left",
        left: { _tag: "SwitchFailed", phase: "switch-exited", exitCode: 7 }
      })
      // Not the 300 s verify budget (room for a loaded machine).
      expect(elapsed).toBeLessThan(30_000)
      expect(yield* currentClosure(sandbox)).toBe(prior)
    }), TIMEOUT)

  it.scopedLive("a switch that flips to a third closure is a verify mismatch (-3)", () =>
    Effect.gen(function*() {
      const { sandbox } = yield* booted()
      const third = yield* buildClosure(sandbox, { name: "nixos-system-third", switch: { _tag: "Flip" } })
      const target = yield* buildClosure(sandbox, {
        name: "nixos-system-rogue",
        switch: { _tag: "FlipTo", closure: third }
      })
      const result = yield* activate(sandbox, target)
      expect(result).toMatchObject({
        _tag: "Left",
        left: { _tag: "VerifyMismatch", expected: target, actual: third, exitCode: -3 }
      })
    }), TIMEOUT)

  it.scopedLive("a switch that hangs times out in the verify budget", () =>
    Effect.gen(function*() {
      const { prior, sandbox } = yield* booted()
      const target = yield* buildClosure(sandbox, { name: "nixos-system-hang", switch: { _tag: "Hang" } })
      const result = yield* activate(sandbox, target, sandbox.env, 2)
      expect(result).toMatchObject({
        _tag: "Left",
        left: { _tag: "SwitchFailed", phase: "switch-poll-timeout", exitCode: -1 }
      })
      expect(yield* currentClosure(sandbox)).toBe(prior)
    }), TIMEOUT)

  it.scopedLive("an untrusted signature is refused (-2) and the profile is untouched", () =>
    Effect.gen(function*() {
      const { sandbox } = yield* booted()
      const target = yield* buildClosure(sandbox, {
        name: "nixos-system-cached",
        switch: { _tag: "Flip" },
        salt: "untrusted"
      })
      const cache = yield* makeBinaryCache(sandbox, target)
      const before = yield* hostState(sandbox)
      const result = yield* activate(sandbox, target, cache.untrustedEnv)
      expect(result).toMatchObject({
        _tag: "Left",
        left: { _tag: "SignatureMismatch", exitCode: -2, phase: "realise" }
      })
      expect(result._tag === "Left" && result.left.message).toContain("is not signed by any of the keys")
      expect(yield* hostState(sandbox)).toStrictEqual(before)
    }), TIMEOUT)

  it.scopedLive("a closure from a trusted binary cache is substituted and activated", () =>
    Effect.gen(function*() {
      const { sandbox } = yield* booted()
      const target = yield* buildClosure(sandbox, {
        name: "nixos-system-cached",
        switch: { _tag: "Flip" },
        salt: "trusted"
      })
      const cache = yield* makeBinaryCache(sandbox, target)
      expect(Fs.existsSync(`/nix/store/${target}`)).toBe(false)
      const result = yield* activate(sandbox, target, cache.trustedEnv)
      expect(result).toMatchObject({ _tag: "Right", right: { _tag: "FiredAndPolled", closure: target } })
      expect(yield* currentClosure(sandbox)).toBe(target)
    }), TIMEOUT)

  it.scopedLive(
    "a missing closure with no substituter fails (-1) and the profile is untouched",
    () =>
      Effect.gen(function*() {
        const { sandbox } = yield* booted()
        const target = yield* buildClosure(sandbox, {
          name: "nixos-system-gone",
          switch: { _tag: "Flip" },
          salt: "gone"
        })
        yield* deleteFromStore(target)
        const before = yield* hostState(sandbox)
        const result = yield* activate(sandbox, target)
        expect(result).toMatchObject({ _tag: "Left", left: { _tag: "RealiseFailed", phase: "realise", exitCode: -1 } })
        expect(result._tag === "Left" && result.left.message).toContain(
          `nix-store --realise /nix/store/${target} exited Some(1)`
        )
        expect(yield* hostState(sandbox)).toStrictEqual(before)
      }),
    TIMEOUT
  )

  for (const component of ["dbus", "systemd", "kernel"] as const) {
    it.scopedLive(
      `a ${component} change defers to the next reboot: boot entry written, current link untouched`,
      () =>
        Effect.gen(function*() {
          const { prior, sandbox } = yield* booted()
          const target = yield* buildClosure(sandbox, {
            name: `nixos-system-new-${component}`,
            switch: { _tag: "Flip" },
            components: { dbus: "1", systemd: "1", kernel: "1", [component]: "2" }
          })
          const result = yield* activate(sandbox, target)
          expect(result).toMatchObject({
            _tag: "Right",
            right: { _tag: "DeferredPendingReboot", closure: target, component }
          })
          expect(yield* bootRuns(sandbox)).toStrictEqual([target])
          expect(yield* switchRuns(sandbox)).toStrictEqual([])
          expect(yield* currentClosure(sandbox)).toBe(prior)
          expect(yield* profileClosure(sandbox)).toBe(target)
        }),
      TIMEOUT
    )
  }

  it.scopedLive("a failing boot-entry update is a switch failure with its code", () =>
    Effect.gen(function*() {
      const { sandbox } = yield* booted()
      const target = yield* buildClosure(sandbox, {
        name: "nixos-system-badboot",
        switch: { _tag: "Flip" },
        bootExitCode: 4,
        components: { dbus: "1", systemd: "1", kernel: "9" }
      })
      expect(yield* activate(sandbox, target)).toMatchObject({
        _tag: "Left",
        left: { _tag: "SwitchFailed", phase: "defer-bootloader-update", exitCode: 4 }
      })
    }), TIMEOUT)

  it.scopedLive("a switch lock held by another process refuses (-1) and changes nothing", () =>
    Effect.gen(function*() {
      const { sandbox } = yield* booted()
      const target = yield* buildClosure(sandbox, { name: "nixos-system-next", switch: { _tag: "Flip" } })
      yield* holdSwitchLock(sandbox)
      const before = yield* hostState(sandbox)
      const result = yield* activate(sandbox, target)
      expect(result).toMatchObject({
        _tag: "Left",
        left: {
          _tag: "RealiseFailed",
          phase: "lock",
          exitCode: -1,
          reason: "switch-to-configuration lock held by another process; will retry on next tick"
        }
      })
      expect(yield* hostState(sandbox)).toStrictEqual(before)
      expect(yield* switchRuns(sandbox)).toStrictEqual([])
    }), TIMEOUT)

  it.scopedLive("rolls back to the explicit closure, and a second rollback is harmless", () =>
    Effect.gen(function*() {
      const { prior, sandbox } = yield* booted()
      const target = yield* buildClosure(sandbox, { name: "nixos-system-next", switch: { _tag: "Flip" } })
      expect((yield* activate(sandbox, target))._tag).toBe("Right")
      const first = yield* rollback(sandbox, prior)
      expect(first).toMatchObject({
        _tag: "Right",
        right: { _tag: "RolledBack", revertedToClosure: prior, fallback: null }
      })
      expect(yield* currentClosure(sandbox)).toBe(prior)
      expect(yield* profileClosure(sandbox)).toBe(prior)
      const generationsAfterFirst = yield* generations(sandbox)
      const second = yield* rollback(sandbox, prior)
      expect(second).toMatchObject({
        _tag: "Right",
        right: { _tag: "RolledBack", revertedToClosure: prior, fallback: null }
      })
      expect(yield* currentClosure(sandbox)).toBe(prior)
      expect(yield* generations(sandbox)).toStrictEqual(generationsAfterFirst)
      // The rollback ran the target's own switch binary, never the running system's.
      expect(yield* switchRuns(sandbox)).toStrictEqual([target, prior])
    }), TIMEOUT)

  it.scopedLive(
    "a rollback closure gone from the store falls back to the previous generation and says so",
    () =>
      Effect.gen(function*() {
        const { prior, sandbox } = yield* booted()
        const target = yield* buildClosure(sandbox, { name: "nixos-system-next", switch: { _tag: "Flip" } })
        expect((yield* activate(sandbox, target))._tag).toBe("Right")
        const gone = "00000000000000000000000000000000-nixos-system-gone"
        const result = yield* rollback(sandbox, gone)
        expect(result).toMatchObject({
          _tag: "Right",
          right: { _tag: "RolledBack", revertedToClosure: prior, fallback: prior }
        })
        expect(yield* currentClosure(sandbox)).toBe(prior)
      }),
    TIMEOUT
  )
})
