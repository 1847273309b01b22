/**
 * The real-Nix fixtures do what they say: closures built with the host's Nix, their switch
 * scripts run directly, profiles, a signed binary cache and the switch lock.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  boot,
  bootRuns,
  buildClosure,
  type ClosureSpec,
  currentClosure,
  deleteFromStore,
  generations,
  holdSwitchLock,
  isCi,
  makeBinaryCache,
  makeSandbox,
  type NixSandbox,
  nixSuiteMode,
  profileClosure,
  runProcess,
  switchRuns
} from "@nixfleet/dev/NixFixtures"
import { Cause, Duration, Effect, Exit, Schedule } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { describeNix } from "./describeNix.js"

const NAME = "nixos-system-web-01"
const TIMEOUT = 30_000

const store = (basename: string) => `/nix/store/${basename}`
const script = (basename: string) => `${store(basename)}/bin/switch-to-configuration`
const realpath = (file: string) => Effect.promise(() => fsp.realpath(file))

/** Runs a closure's switch script directly, as the pipeline would, and times it. */
const runScript = (basename: string, action: string) =>
  Effect.gen(function*() {
    const started = Date.now()
    const result = yield* runProcess(script(basename), [action])
    return { ...result, elapsedMs: Date.now() - started }
  })

/** A sandbox booted into a prior closure (which flips to itself), plus a closure built from `spec`. */
const bootedWith = (spec: ClosureSpec) =>
  Effect.gen(function*() {
    const sandbox = yield* makeSandbox
    const prior = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "prior" })
    yield* boot(sandbox, prior)
    const closure = yield* buildClosure(sandbox, spec)
    return { sandbox, prior, closure }
  })

/** What is left in `run/` besides the lock: no temporary links from the atomic flip. */
const runDirEntries = (sandbox: NixSandbox) => Effect.promise(() => fsp.readdir(path.dirname(sandbox.currentSystem)))

describe("describeNix's decision", () => {
  it("runs with Nix, skips without it, fails without it on CI", () => {
    expect(nixSuiteMode(true, false)).toBe("run")
    expect(nixSuiteMode(true, true)).toBe("run")
    expect(nixSuiteMode(false, false)).toBe("skip")
    expect(nixSuiteMode(false, true)).toBe("fail")
    expect(isCi({ CI: "true" })).toBe(true)
    expect(isCi({ CI: "1" })).toBe(true)
    expect(isCi({})).toBe(false)
    expect(isCi({ CI: "" })).toBe(false)
    expect(isCi({ CI: "false" })).toBe(false)
  })
})

describeNix("nix fixtures (real Nix)", () => {
  it.live("makeSandbox lays out the directories and removes them when the scope closes", () =>
    Effect.gen(function*() {
      const root = yield* Effect.scoped(Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        expect(sandbox.currentSystem).toBe(`${sandbox.root}/run/current-system`)
        expect(sandbox.profile).toBe(`${sandbox.root}/profiles/system`)
        expect(sandbox.lockPath).toBe(`${sandbox.root}/run/switch-to-configuration.lock`)
        expect(sandbox.stateDir).toBe(`${sandbox.root}/state`)
        expect(fs.statSync(sandbox.stateDir).isDirectory()).toBe(true)
        expect(fs.statSync(path.dirname(sandbox.profile)).isDirectory()).toBe(true)
        expect(fs.existsSync(sandbox.lockPath)).toBe(false)
        expect(fs.existsSync(sandbox.currentSystem)).toBe(false)
        expect(sandbox.env["NIX_CONFIG"]).toMatch(/^substituters =$/m)
        expect(yield* currentClosure(sandbox)).toBeUndefined()
        expect(yield* profileClosure(sandbox)).toBeUndefined()
        expect(yield* generations(sandbox)).toEqual([])
        expect(yield* switchRuns(sandbox)).toEqual([])
        return sandbox.root
      }))
      expect(fs.existsSync(root)).toBe(false)
    }), TIMEOUT)

  it.scopedLive(
    "component labels decide the canonical component paths; builds are deterministic",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const a = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" } })
        const b = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, components: { systemd: "2" } })
        expect(a).toMatch(/^[0-9a-df-np-sv-z]{32}-nixos-system-web-01$/)
        expect(b).not.toBe(a)

        const started = Date.now()
        expect(yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" } })).toBe(a)
        expect(Date.now() - started).toBeLessThan(5_000)
        const salted = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "x" })
        expect(salted).not.toBe(a)
        const explicitDefaults = yield* buildClosure(sandbox, {
          name: NAME,
          switch: { _tag: "Flip" },
          components: { dbus: "1", systemd: "1", kernel: "1" }
        })
        expect(explicitDefaults).toBe(a)

        const resolved = (closure: string) =>
          Effect.all({
            dbus: realpath(`${store(closure)}/etc/systemd/system/dbus.service`),
            systemd: realpath(`${store(closure)}/sw/lib/systemd/systemd`),
            kernel: realpath(`${store(closure)}/kernel`)
          })
        const ra = yield* resolved(a)
        const rb = yield* resolved(b)
        expect(rb.systemd).not.toBe(ra.systemd)
        expect(rb.dbus).toBe(ra.dbus)
        expect(rb.kernel).toBe(ra.kernel)
        for (const file of [...Object.values(ra), ...Object.values(rb)]) {
          // Each resolves into a component store path of its own, not into the closure.
          expect(file).toMatch(/^\/nix\/store\/[0-9a-z]{32}-nixfleet-fixture-(dbus|systemd|kernel)-[12]\//)
        }

        // A component is shared across sandboxes; the closure (its script bakes the paths in) is not.
        const rc = yield* Effect.scoped(Effect.gen(function*() {
          const other = yield* makeSandbox
          const c = yield* buildClosure(other, { name: NAME, switch: { _tag: "Flip" } })
          expect(c).not.toBe(a)
          return yield* resolved(c)
        }))
        expect(rc).toEqual(ra)

        const stat = yield* Effect.promise(() => fsp.stat(script(a)))
        expect(stat.mode & 0o111).not.toBe(0)
        const text = yield* Effect.promise(() => fsp.readFile(script(a), "utf8"))
        expect(text.startsWith(`#!/bin/sh\nself=${store(a)}\n`)).toBe(true)
        expect(text).toContain(sandbox.currentSystem)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "Flip points the link at its own closure after delayMs, atomically, and exits 0",
    () =>
      Effect.gen(function*() {
        const { closure, prior, sandbox } = yield* bootedWith({ name: NAME, switch: { _tag: "Flip", delayMs: 300 } })
        expect(yield* currentClosure(sandbox)).toBe(prior)
        const result = yield* runScript(closure, "switch")
        expect(result.code).toBe(0)
        expect(result.elapsedMs).toBeGreaterThanOrEqual(300)
        expect(yield* currentClosure(sandbox)).toBe(closure)
        expect(yield* Effect.promise(() => fsp.readlink(sandbox.currentSystem))).toBe(store(closure))
        expect(yield* runDirEntries(sandbox)).toEqual(["current-system"])
        expect(yield* switchRuns(sandbox)).toEqual([closure])
        expect(yield* bootRuns(sandbox)).toEqual([])
        // The switch does not touch the profile (the pipeline sets it before switching).
        expect(yield* profileClosure(sandbox)).toBe(prior)
        expect(fs.existsSync(path.join(sandbox.root, "markers", `switch-${closure}`))).toBe(true)

        // Flipping again (e.g. a rollback target switched to twice) is idempotent; runs are kept in order.
        const again = yield* runScript(prior, "switch")
        expect(again.code).toBe(0)
        expect(yield* currentClosure(sandbox)).toBe(prior)
        expect(yield* switchRuns(sandbox)).toEqual([closure, prior])
      }),
    TIMEOUT
  )

  it.scopedLive("Exit exits with its code and leaves the link", () =>
    Effect.gen(function*() {
      const { closure, prior, sandbox } = yield* bootedWith({ name: NAME, switch: { _tag: "Exit", code: 3 } })
      const result = yield* runScript(closure, "switch")
      expect(result.code).toBe(3)
      expect(yield* currentClosure(sandbox)).toBe(prior)
      expect(yield* switchRuns(sandbox)).toEqual([closure])
    }), TIMEOUT)

  it.scopedLive("FlipTo points the link at another closure and exits 0", () =>
    Effect.gen(function*() {
      const sandbox = yield* makeSandbox
      const prior = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "prior" })
      const elsewhere = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "elsewhere" })
      yield* boot(sandbox, prior)
      const closure = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "FlipTo", closure: elsewhere } })
      const result = yield* runScript(closure, "switch")
      expect(result.code).toBe(0)
      expect(yield* currentClosure(sandbox)).toBe(elsewhere)
      expect(yield* switchRuns(sandbox)).toEqual([closure])
    }), TIMEOUT)

  it.scopedLive("FlipThenExit flips to itself, then exits with its code", () =>
    Effect.gen(function*() {
      const { closure, sandbox } = yield* bootedWith({ name: NAME, switch: { _tag: "FlipThenExit", code: 2 } })
      const result = yield* runScript(closure, "switch")
      expect(result.code).toBe(2)
      expect(yield* currentClosure(sandbox)).toBe(closure)
      expect(yield* runDirEntries(sandbox)).toEqual(["current-system"])
    }), TIMEOUT)

  it.scopedLive(
    "Hang keeps running with the link untouched, until the sandbox's scope closes",
    () =>
      Effect.gen(function*() {
        // A safety net in case the sandbox does not stop it.
        const children: Array<ChildProcess> = []
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const child of children) {
              if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
            }
          })
        )
        const child = yield* Effect.scoped(Effect.gen(function*() {
          const { closure, prior, sandbox } = yield* bootedWith({ name: NAME, switch: { _tag: "Hang" } })
          const child = spawn(script(closure), ["switch"], { stdio: "ignore" })
          children.push(child)
          yield* switchRuns(sandbox).pipe(
            Effect.filterOrFail((runs) => runs.includes(closure), () => "no switch marker yet"),
            Effect.retry(Schedule.spaced(Duration.millis(20))),
            Effect.timeout(Duration.seconds(5)),
            Effect.orDie
          )
          yield* Effect.sleep(Duration.millis(300))
          expect(child.exitCode).toBeNull()
          expect(child.signalCode).toBeNull()
          expect(yield* currentClosure(sandbox)).toBe(prior)
          // `exec`: the script's pid is the sleep's, so killing the child stops the hang.
          const cmdline = yield* Effect.promise(() => fsp.readFile(`/proc/${child.pid}/cmdline`, "utf8"))
          expect(cmdline.split("\0")).toEqual(["/bin/sleep", "3600", ""])
          return child
        }))
        const signal = yield* Effect.async<NodeJS.Signals | null>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) resume(Effect.succeed(child.signalCode))
          else child.once("exit", (_code, signal) => resume(Effect.succeed(signal)))
        }).pipe(Effect.timeout(Duration.seconds(5)), Effect.orDie)
        expect(signal).toBe("SIGKILL")
      }),
    TIMEOUT
  )

  it.scopedLive("boot records its run and exits bootExitCode; other actions are refused", () =>
    Effect.gen(function*() {
      const { closure, prior, sandbox } = yield* bootedWith({
        name: NAME,
        switch: { _tag: "Flip" },
        bootExitCode: 4
      })
      const result = yield* runScript(closure, "boot")
      expect(result.code).toBe(4)
      expect(yield* bootRuns(sandbox)).toEqual([closure])
      expect(yield* switchRuns(sandbox)).toEqual([])
      expect(yield* currentClosure(sandbox)).toBe(prior)

      expect((yield* runScript(prior, "boot")).code).toBe(0)
      expect(yield* bootRuns(sandbox)).toEqual([closure, prior])

      const refused = yield* runScript(closure, "test")
      expect(refused.code).toBe(1)
      expect(refused.stderr).toContain("unsupported action 'test'")
      expect(yield* switchRuns(sandbox)).toEqual([])
      expect(yield* currentClosure(sandbox)).toBe(prior)
    }), TIMEOUT)

  it.scopedLive("boot sets the link and a new profile generation each time", () =>
    Effect.gen(function*() {
      const sandbox = yield* makeSandbox
      const a = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "a" })
      const b = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "b" })
      yield* boot(sandbox, a)
      expect(yield* currentClosure(sandbox)).toBe(a)
      expect(yield* profileClosure(sandbox)).toBe(a)
      expect(yield* generations(sandbox)).toEqual(["system-1-link"])
      yield* boot(sandbox, b)
      expect(yield* currentClosure(sandbox)).toBe(b)
      expect(yield* profileClosure(sandbox)).toBe(b)
      expect(yield* generations(sandbox)).toEqual(["system-1-link", "system-2-link"])
      expect(yield* Effect.promise(() => fsp.readlink(sandbox.profile))).toBe("system-2-link")

      // Generations sort by number, not by name.
      for (let i = 0; i < 9; i++) yield* boot(sandbox, i % 2 === 0 ? a : b)
      const gens = yield* generations(sandbox)
      expect(gens).toHaveLength(11)
      expect(gens.slice(-3)).toEqual(["system-9-link", "system-10-link", "system-11-link"])
      expect(yield* profileClosure(sandbox)).toBe(a)
    }), TIMEOUT)

  it.scopedLive(
    "a signed binary cache substitutes with the trusted key and refuses another key",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const closure = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "cached" })
        const cache = yield* makeBinaryCache(sandbox, closure)
        expect(cache.url).toMatch(/^file:\/\//)
        expect(fs.existsSync(store(closure))).toBe(false)

        const untrusted = yield* runProcess("nix-store", ["--realise", store(closure)], { env: cache.untrustedEnv })
        expect(untrusted.code).not.toBe(0)
        expect(untrusted.stderr).toContain("is not signed by any of the keys in 'trusted-public-keys'")
        expect(fs.existsSync(store(closure))).toBe(false)

        const gcroot = path.join(sandbox.stateDir, "gcroots", closure)
        yield* Effect.promise(() => fsp.mkdir(path.dirname(gcroot)))
        const trusted = yield* runProcess(
          "nix-store",
          ["--realise", store(closure), "--add-root", gcroot, "--indirect"],
          { env: cache.trustedEnv }
        )
        // Compared as an object so that a failure shows Nix's stderr.
        expect({ code: trusted.code, stderr: trusted.stderr }).toMatchObject({ code: 0 })
        expect(fs.existsSync(script(closure))).toBe(true)
        expect(yield* Effect.promise(() => fsp.readlink(gcroot))).toBe(store(closure))
      }),
    TIMEOUT
  )

  it.scopedLive(
    "deleteFromStore removes an unreferenced closure and dies on a rooted one",
    () =>
      Effect.gen(function*() {
        const sandbox = yield* makeSandbox
        const loose = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "loose" })
        yield* deleteFromStore(loose)
        expect(fs.existsSync(store(loose))).toBe(false)
        const missing = yield* Effect.exit(deleteFromStore(loose))
        expect(Exit.isFailure(missing) && Cause.pretty(missing.cause)).toContain("is not in the local store")

        const booted = yield* buildClosure(sandbox, { name: NAME, switch: { _tag: "Flip" }, salt: "booted" })
        yield* boot(sandbox, booted)
        const rooted = yield* Effect.exit(deleteFromStore(booted))
        expect(Exit.isFailure(rooted) && Cause.isDie(rooted.cause)).toBe(true)
        expect(Exit.isFailure(rooted) && Cause.pretty(rooted.cause)).toContain("still referenced or rooted")
        expect(Exit.isFailure(rooted) && Cause.pretty(rooted.cause)).toContain(`${sandbox.profile}-1-link`)
        expect(fs.existsSync(store(booted))).toBe(true)
      }),
    TIMEOUT
  )

  it.live("holdSwitchLock holds the lock exclusively until its scope closes", () =>
    Effect.gen(function*() {
      const sandbox = yield* makeSandbox
      const tryShared = runProcess("flock", ["--nonblock", "--shared", sandbox.lockPath, "true"])
      yield* Effect.scoped(Effect.gen(function*() {
        yield* holdSwitchLock(sandbox)
        expect((yield* tryShared).code).not.toBe(0)
        expect((yield* tryShared).code).not.toBe(0)
      }))
      expect((yield* tryShared).code).toBe(0)
    }).pipe(Effect.scoped), TIMEOUT)
})
