/**
 * What each kind of child process sees of the agent's environment: only the allow-list of
 * `support/childEnvironment` (PATH, locale, time zone, Nix's own variables for Nix...),
 * never a secret such as OTEL_EXPORTER_OTLP_HEADERS. Real processes each time: an exec
 * probe, `nix-store --realise` and `nix-env --set` (stand-ins on PATH), the `direct` switch
 * and `switch-to-configuration boot` (a fixture closure), and the systemd-run client; each
 * writes its whole environment (`env -0`) to a file, which is read back.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Schema } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fire, installBootEntry } from "../src/pipeline/phases/Fire.js"
import { setProfile } from "../src/pipeline/phases/Profile.js"
import { realise } from "../src/pipeline/phases/Realise.js"
import { ProbeDeclaration } from "../src/probes/HealthChecks.js"
import { runProbe } from "../src/probes/Runner.js"
import { allowed, childEnvironment } from "../src/support/childEnvironment.js"

const SECRET = "OTEL_EXPORTER_OTLP_HEADERS"
const SECRET_VALUE = "authorization=Bearer do-not-leak"

/** A directory with `env-dump` scripts, removed after the test. */
const workspace = Effect.acquireRelease(
  Effect.sync(() => Fs.realpathSync(Fs.mkdtempSync(Path.join(Os.tmpdir(), "child-env-")))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** An executable at `path` that writes its environment to `out` (NUL-separated), then runs `tail`. */
const dumper = (path: string, out: string, tail = "exit 0") => {
  Fs.mkdirSync(Path.dirname(path), { recursive: true })
  Fs.writeFileSync(path, `#!/bin/sh\n/usr/bin/env -0 > ${JSON.stringify(out)}\n${tail}\n`)
  Fs.chmodSync(path, 0o755)
}

const readEnv = (out: string): Record<string, string> =>
  Object.fromEntries(
    Fs.readFileSync(out, "utf8").split("\0").filter((entry) => entry !== "").map((entry) => {
      const eq = entry.indexOf("=")
      return [entry.slice(0, eq), entry.slice(eq + 1)]
    })
  )

/**
 * Runs `effect` with the agent's environment holding the secret, a Nix setting, a locale
 * and `bin` first on PATH (as the unit's `path` puts its tools there); restored after.
 */
const withAgentEnvironment = <A, E, R>(bin: string, effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const saved = { ...process.env }
      process.env[SECRET] = SECRET_VALUE
      process.env["NIXFLEET_AGENT_BOOTSTRAP_TOKEN"] = "one-shot-token"
      process.env["NIX_CONFIG"] = "substituters ="
      process.env["LANG"] = "C.UTF-8"
      process.env["PATH"] = `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}`
      return saved
    }),
    () => effect,
    (saved) =>
      Effect.sync(() => {
        for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name]
        Object.assign(process.env, saved)
      })
  )

/** Nothing but allowed names; the secret and the token absent; PATH the agent's. */
const expectMinimal = (env: Record<string, string>, kind: Parameters<typeof allowed>[0], bin: string) => {
  const { names, prefixes } = allowed(kind)
  // /bin/sh itself adds PWD, SHLVL and `_` to what it was given.
  const shell = new Set(["PWD", "SHLVL", "_"])
  const unexpected = Object.keys(env).filter((name) =>
    !shell.has(name) && !names.includes(name) && !prefixes.some((prefix) => name.startsWith(prefix))
  )
  expect(unexpected, kind).toStrictEqual([])
  expect(env[SECRET], kind).toBeUndefined()
  expect(env["NIXFLEET_AGENT_BOOTSTRAP_TOKEN"], kind).toBeUndefined()
  expect(env["PATH"]?.startsWith(`${bin}:`), kind).toBe(true)
  expect(env["LANG"], kind).toBe("C.UTF-8")
}

describe("childEnvironment", () => {
  it("keeps allowed names that are set, Nix's NIX_* for Nix alone, and the caller's extras", () => {
    const parent = { PATH: "/bin", [SECRET]: SECRET_VALUE, NIX_REMOTE: "daemon", HOME: "/root", TERM: "xterm" }
    expect(childEnvironment("nix", parent)).toStrictEqual({ PATH: "/bin", NIX_REMOTE: "daemon", HOME: "/root" })
    expect(childEnvironment("probe", parent, { EXTRA: "1" })).toStrictEqual({ PATH: "/bin", HOME: "/root", EXTRA: "1" })
    expect(childEnvironment("tool", parent)).toStrictEqual({ PATH: "/bin" })
    expect(childEnvironment("switch", { ...parent, NIXOS_INSTALL_BOOTLOADER: "1" })).toStrictEqual({
      PATH: "/bin",
      HOME: "/root",
      NIXOS_INSTALL_BOOTLOADER: "1"
    })
  })
})

describe("children see the allow-list, not the agent's environment", () => {
  it.scoped("an exec probe", () =>
    Effect.gen(function*() {
      const dir = yield* workspace
      const out = Path.join(dir, "probe.env")
      dumper(Path.join(dir, "probe"), out)
      const declaration = Schema.decodeUnknownSync(ProbeDeclaration)({
        kind: "exec",
        mode: "enforce",
        command: [Path.join(dir, "probe")],
        timeoutSecs: 10
      })
      const outcome = yield* withAgentEnvironment(
        dir,
        runProbe(declaration, { sshHostKeyFile: "/nonexistent", now: new Date() })
      ).pipe(Effect.provide(NodeContext.layer))
      expect(outcome.status).toBe("pass")
      expectMinimal(readEnv(out), "probe", dir)
    }))

  it.scoped("nix-store --realise and nix-env --set (Nix's settings kept)", () =>
    Effect.gen(function*() {
      const dir = yield* workspace
      const bin = Path.join(dir, "bin")
      const closure = "0123456789abcdfghijklmnpqrsvwxyz-nixos-system-x"
      // A realise that prints the root it was asked for, as nix-store does.
      dumper(Path.join(bin, "nix-store"), Path.join(dir, "realise.env"), `echo "$4"`)
      dumper(Path.join(bin, "nix-env"), Path.join(dir, "profile.env"))
      Fs.symlinkSync(`/nix/store/${closure}`, Path.join(dir, "root"))
      yield* withAgentEnvironment(
        bin,
        Effect.all([
          realise({
            storePath: `/nix/store/${closure}`,
            closure,
            gcRoot: Path.join(dir, "root"),
            timeout: Duration.seconds(10)
          }),
          setProfile(Path.join(dir, "profile"), `/nix/store/${closure}`)
        ])
      ).pipe(Effect.provide(NodeContext.layer))
      for (const file of ["realise.env", "profile.env"]) {
        const env = readEnv(Path.join(dir, file))
        expectMinimal(env, "nix", bin)
        expect(env["NIX_CONFIG"], file).toBe("substituters =")
      }
    }))

  it.scoped("the direct switch and switch-to-configuration boot", () =>
    Effect.gen(function*() {
      const dir = yield* workspace
      const storePath = Path.join(dir, "closure")
      const script = Path.join(storePath, "bin/switch-to-configuration")
      dumper(
        script,
        Path.join(dir, "switch.env"),
        `cp ${JSON.stringify(Path.join(dir, "switch.env"))} "${dir}/action-$1.env"`
      )
      yield* withAgentEnvironment(
        dir,
        Effect.gen(function*() {
          const fired = yield* fire({ method: "direct", unit: "nixfleet-switch", storePath, stateDir: dir })
          expect(yield* fired.ended).toBe(0)
          yield* installBootEntry(storePath, "direct")
        })
      ).pipe(Effect.provide(NodeContext.layer))
      expectMinimal(readEnv(Path.join(dir, "action-switch.env")), "switch", dir)
      expectMinimal(readEnv(Path.join(dir, "action-boot.env")), "switch", dir)
    }))

  it.scoped("the systemd-run client and systemctl", () =>
    Effect.gen(function*() {
      const dir = yield* workspace
      const bin = Path.join(dir, "bin")
      dumper(
        Path.join(bin, "systemd-run"),
        Path.join(dir, "systemd-run.env"),
        [
          "echo 'Running as unit: nixfleet-switch.service'",
          "echo 'Finished with result: success'",
          "echo 'Main processes terminated with: code=exited/status=0'"
        ].join("\n")
      )
      dumper(Path.join(bin, "systemctl"), Path.join(dir, "systemctl.env"))
      yield* withAgentEnvironment(
        bin,
        Effect.gen(function*() {
          const fired = yield* fire({ method: "systemd-run", unit: "nixfleet-switch", storePath: dir, stateDir: dir })
          expect(yield* fired.ended).toBe(0)
        })
      ).pipe(Effect.provide(NodeContext.layer))
      expectMinimal(readEnv(Path.join(dir, "systemd-run.env")), "tool", bin)
      expectMinimal(readEnv(Path.join(dir, "systemctl.env")), "tool", bin)
    }))
})
