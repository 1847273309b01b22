/**
 * `nixfleet-agent dev` (what `npm start` runs) as a separate process, to completion: in
 * activation test mode and with real Nix, with HOME, TMPDIR and the XDG directories
 * pointed at an empty directory that must stay empty (everything goes to the sandbox), and
 * with `--keep-running`, poked at through the operator API and stopped with SIGTERM.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describeNix } from "./nix/describeNix.js"
import {
  Accepted,
  AGENT,
  type ControlPlane,
  eventually,
  operator,
  REPO,
  spawnScript,
  tail,
  tempDirectory
} from "./support/processes.js"

const TIMEOUT = 150_000
/** The whole demo is meant to take well under a minute. */
const DEMO_MS = 90_000

/** An empty HOME, TMPDIR and XDG base directories under `dir`: the demo must write none of them. */
const outside = (dir: string) => {
  const home = Path.join(dir, "home")
  const tmp = Path.join(dir, "tmp")
  Fs.mkdirSync(home)
  Fs.mkdirSync(tmp)
  return {
    env: {
      HOME: home,
      TMPDIR: tmp,
      XDG_CACHE_HOME: Path.join(home, ".cache"),
      XDG_CONFIG_HOME: Path.join(home, ".config"),
      XDG_DATA_HOME: Path.join(home, ".local/share"),
      XDG_STATE_HOME: Path.join(home, ".local/state")
    },
    /** Everything now under HOME and TMPDIR. */
    written: () =>
      [home, tmp].flatMap((root) =>
        Fs.readdirSync(root, { recursive: true, encoding: "utf8" }).map((entry) => Path.join(root, entry))
      )
  }
}

/** The repository's changes as git sees them (`--no-optional-locks`: read only). */
const repoChanges = () =>
  new Set(
    ChildProcess.execFileSync("git", ["--no-optional-locks", "status", "--porcelain", "--untracked-files=all"], {
      cwd: REPO,
      encoding: "utf8"
    }).split("\n").filter((line) => line !== "")
  )

const dev = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>) =>
  spawnScript("dev", AGENT, ["dev", ...args], env)

/** Runs `dev` to its end, which must be exit 0; returns its stdout. */
const completed = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>) =>
  Effect.gen(function*() {
    const run = yield* dev(args, env)
    const exit = yield* run.awaitExit(DEMO_MS)
    if (exit === undefined) {
      return yield* Effect.fail(new Error(`dev did not finish in ${DEMO_MS} ms\nstdout:\n${tail(run.stdout(), 60)}`))
    }
    expect(exit, tail(run.stderr(), 40)).toStrictEqual({ code: 0, signal: null })
    return { stdout: run.stdout(), stderr: run.stderr() }
  })

/** A summary row: rollout, rollout id, closure, final state, events delivered, duration, as expected. */
const summaryRow = (stdout: ReadonlyArray<string>, label: string) => {
  const cells = stdout.find((line) => line.startsWith(`${label} `))?.split(/ {2,}/)
  return {
    rolloutId: cells?.[1],
    closure: cells?.[2],
    finalState: cells?.[3],
    events: Number(cells?.[4]),
    asExpected: cells?.[6]
  }
}

/** The `event` lines of one rollout: seq and kind, in the order they were printed. */
const eventLines = (stdout: ReadonlyArray<string>, label: string) =>
  stdout.flatMap((line) => {
    const match = new RegExp(`\\] ${label} +event +seq +(\\d+) (\\w+)`).exec(line)
    return match === null ? [] : [{ seq: Number(match[1]), kind: match[2] }]
  })

/** Both rollouts as expected: rows, and every event shown once, in seq order, the right ones first and last. */
const expectBothAsExpected = (stdout: ReadonlyArray<string>) => {
  const context = tail(stdout, 80)
  const good = summaryRow(stdout, "good")
  const bad = summaryRow(stdout, "bad")
  expect(good, context).toMatchObject({ finalState: "Converged", asExpected: "yes" })
  expect(bad, context).toMatchObject({ finalState: "Reverted", asExpected: "yes" })
  expect(stdout, context).toContain("both rollouts ended as expected")

  const goodEvents = eventLines(stdout, "good")
  const badEvents = eventLines(stdout, "bad")
  for (const [events, row] of [[goodEvents, good], [badEvents, bad]] as const) {
    expect(events.map((event) => event.seq), context).toStrictEqual(events.map((_, i) => i + 1))
    expect(events.length, context).toBe(row.events)
  }
  expect(goodEvents.slice(0, 4).map((event) => event.kind)).toStrictEqual([
    "DispatchAck",
    "ActivationStarted",
    "ActivationCompleted",
    "ProbeTopologyDeclared"
  ])
  expect(goodEvents.at(-1)?.kind).toBe("Converged")
  expect(badEvents.slice(-2).map((event) => event.kind)).toStrictEqual(["Failed", "RollbackComplete"])
  expect(stdout.some((line) => /\] bad +state +Failed → Reverted/.test(line)), context).toBe(true)
  return { good, bad }
}

const readLink = (link: string) => Fs.readlinkSync(link)

// Each demo runs in its own sandbox, with its own control plane: the demos run concurrently.
describe("nixfleet-agent dev", { concurrent: true }, () => {
  it.scopedLive(
    "--test-mode runs both rollouts to completion, exit 0, writing nothing outside its sandbox",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const sandbox = Path.join(dir, "sandbox")
        const world = outside(dir)
        const before = repoChanges()
        const { stderr, stdout } = yield* completed(["--test-mode", "--sandbox", sandbox], world.env)
        expect(stdout[1]).toBe(`sandbox: ${sandbox} (everything the demo writes goes here, and it is kept)`)
        expect(stdout).toContain(
          "activation test mode (--test-mode): nothing is built or switched, every activation and rollback " +
            "reports success, closures are made-up names"
        )
        expectBothAsExpected(stdout)
        // Plain lines when stdout is not a terminal.
        expect(stdout.join("\n")).not.toContain("\u001b[")
        // Nothing switched: the link still names the base closure.
        expect(readLink(Path.join(sandbox, "run/current-system"))).toMatch(/-nixos-system-web-01-base$/)
        for (const file of ["state/outbox.sqlite", "control-plane/trust.json", "health-checks.json"]) {
          expect(Fs.existsSync(Path.join(sandbox, file)), file).toBe(true)
        }
        // Only warnings and errors on stderr by default.
        expect(stderr.join("\n")).not.toMatch(/\bINFO\b/)

        expect(world.written()).toStrictEqual([])
        expect([...repoChanges()].filter((change) => !before.has(change))).toStrictEqual([])
      }),
    TIMEOUT
  )

  it.scopedLive("--keep-running stays up for the operator API, and exits 0 on SIGTERM", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      const sandbox = Path.join(dir, "sandbox")
      const run = yield* dev(["--test-mode", "--keep-running", "--sandbox", sandbox], outside(dir).env)
      yield* eventually(
        "the demo to stay up",
        Effect.sync(() => run.stdout().some((line) => line.startsWith("still running")) || run.exited() !== undefined),
        DEMO_MS,
        Effect.sync(() => tail(run.stdout(), 60))
      )
      expect(run.exited()).toBeUndefined()
      const stdout = run.stdout()
      const { good } = expectBothAsExpected(stdout)
      expect(stdout).toContain(`  npx nixfleet-agent status --state-dir ${Path.join(sandbox, "state")}`)
      const url = /control plane (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout.find((l) => l.startsWith("still")) ?? "")?.[1]
      expect(url).toBeDefined()
      const cp: ControlPlane = { url: url ?? "", trustFile: "", process: run }

      const Hosts = Schema.Record({ key: Schema.String, value: Schema.Struct({ state: Schema.String }) })
      const states = yield* operator(cp, "/v1/operator/hosts", Hosts)
      expect(Object.values(states).map((record) => record.state).sort()).toStrictEqual(["Converged", "Reverted"])
      expect(states[`${good.rolloutId}/web-01`]?.state).toBe("Converged")
      const accepted = yield* operator(cp, "/v1/operator/events", Accepted)
      expect(accepted.filter((entry) => !entry.duplicate)).toHaveLength(good.events + summaryRow(stdout, "bad").events)

      // The agent still works: the printed publish line, as given, converges (health checks pass again).
      const curl = stdout.find((line) => line.includes("-X POST")) ?? ""
      const body: unknown = JSON.parse(/-d '(.*)'$/.exec(curl)?.[1] ?? "null")
      const { rolloutId } = yield* operator(
        cp,
        "/v1/operator/rollouts",
        Schema.Struct({ rolloutId: Schema.String }),
        body
      )
      yield* eventually(
        "the poked rollout to converge",
        Effect.map(operator(cp, "/v1/operator/hosts", Hosts), (hosts) =>
          hosts[`${rolloutId}/web-01`]?.state === "Converged"),
        45_000,
        Effect.sync(() =>
          tail(run.stdout())
        )
      )

      run.signal("SIGTERM")
      expect(yield* run.awaitExit(30_000), tail(run.stderr())).toStrictEqual({ code: 0, signal: null })
      expect(run.stdout().at(-1)).toMatch(/^stopped\. The sandbox is kept: /)
    }), TIMEOUT)

  it.scopedLive("bad flags, and a sandbox that is not empty, exit 64 with one line", () =>
    Effect.gen(function*() {
      const dir = yield* tempDirectory
      Fs.writeFileSync(Path.join(dir, "previous-run"), "")
      for (const args of [["--bogus"], ["--log-format", "xml"], ["--sandbox", dir]]) {
        const run = yield* dev(args, {})
        expect(yield* run.awaitExit(30_000), args.join(" ")).toStrictEqual({ code: 64, signal: null })
        expect(run.stderr(), args.join(" ")).toHaveLength(1)
        expect(run.stderr()[0], args.join(" ")).toMatch(/^nixfleet-agent: /)
        expect(run.stdout(), args.join(" ")).toStrictEqual([])
      }
    }), TIMEOUT)
})

describeNix("nixfleet-agent dev with real Nix", () => {
  it.scopedLive(
    "builds the closures, switches the sandbox to the good one, switches back after the bad one, exit 0",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDirectory
        const sandbox = Path.join(dir, "sandbox")
        const world = outside(dir)
        const { stdout } = yield* completed(["--sandbox", sandbox], world.env)
        expect(stdout.some((line) => line.startsWith("real Nix ("))).toBe(true)
        const built = stdout.flatMap((line) => /built \/nix\/store\/(\S+)$/.exec(line)?.[1] ?? [])
        expect(built).toHaveLength(3)
        const [base, goodClosure, badClosure] = built
        const { bad, good } = expectBothAsExpected(stdout)
        expect([good.closure, bad.closure]).toStrictEqual([goodClosure, badClosure])

        // Switched to the good closure, to the bad one, and back: link, profile and the scripts' own record.
        expect(readLink(Path.join(sandbox, "run/current-system"))).toBe(`/nix/store/${goodClosure}`)
        const profiles = Path.join(sandbox, "profiles")
        expect(readLink(Path.join(profiles, "system"))).toBe("system-4-link")
        expect([1, 2, 3, 4].map((n) => readLink(Path.join(profiles, `system-${n}-link`)))).toStrictEqual(
          [base, goodClosure, badClosure, goodClosure].map((closure) => `/nix/store/${closure}`)
        )
        const runs = Fs.readFileSync(Path.join(sandbox, "markers/runs.log"), "utf8").trim().split("\n")
        expect(runs).toStrictEqual([`switch ${goodClosure}`, `switch ${badClosure}`, `switch ${goodClosure}`])

        // Nix's own per-user files (nix-env's ~/.nix-defexpr, ~/.cache/nix) went to the sandbox's HOME.
        expect(world.written()).toStrictEqual([])
        expect(Fs.existsSync(Path.join(sandbox, "home/.nix-defexpr"))).toBe(true)
      }),
    TIMEOUT
  )
})
