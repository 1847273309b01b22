import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { HealthChecksError, invalidHealthChecks, loadHealthChecks } from "../src/probes/HealthChecks.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"

const TestLayer = Layer.merge(NodeFileSystem.layer, captureLogs)

const writeChecks = (content: string): string => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "health-checks-"))
  const file = Path.join(dir, "health-checks.json")
  Fs.writeFileSync(file, content)
  return file
}

const invalidCount = Effect.map(Metric.value(invalidHealthChecks), (state) => state.count)

/** Loads `content`; expects a `HealthChecksError`, one more count, and an error log naming the file. */
const expectInvalid = (content: string, reason: RegExp) =>
  Effect.gen(function*() {
    const file = writeChecks(content)
    const before = yield* invalidCount
    const error = yield* Effect.flip(loadHealthChecks(file))
    expect(error).toBeInstanceOf(HealthChecksError)
    expect(error.file).toBe(file)
    expect(error.reason).toMatch(reason)
    expect(yield* invalidCount).toBe(before + 1)
    const lines = yield* CapturedLogs.lines
    expect(lines.some((line) => line.startsWith("ERROR") && line.includes(file))).toBe(true)
  })

describe("health-checks.json", () => {
  it.effect("fills every default of spec §7.1", () =>
    Effect.gen(function*() {
      const file = writeChecks(JSON.stringify({ web: { kind: "http", mode: "enforce" } }))
      expect(yield* loadHealthChecks(file)).toStrictEqual([{
        name: "web",
        kind: "http",
        mode: "enforce",
        intervalSeconds: 30,
        runOnce: false,
        url: null,
        expectStatus: 200,
        host: "127.0.0.1",
        port: null,
        connectTimeoutSecs: 5,
        command: [],
        timeoutSecs: 10,
        framework: null,
        evidencePath: "/var/lib/nixfleet-compliance/evidence.json",
        controlOverrides: {},
        controls: {}
      }])
    }).pipe(Effect.provide(TestLayer)))

  it.effect("keeps declared values, reads null optionals as absent, and ignores unknown keys", () =>
    Effect.gen(function*() {
      const file = writeChecks(JSON.stringify({
        ssh: { kind: "tcp", mode: "observe", port: 22, host: null, colour: "blue", runOnce: true },
        compliance: {
          kind: "evidence",
          mode: "enforce",
          framework: "nis2",
          evidencePath: "/srv/evidence.json",
          controlOverrides: {
            "ssh-hardening": { mode: "observe", reason: "ticket 42", extra: 1 },
            boot: { mode: "disabled" }
          }
        }
      }))
      const [ssh, compliance] = yield* loadHealthChecks(file)
      expect(ssh).toMatchObject({
        name: "ssh",
        kind: "tcp",
        mode: "observe",
        port: 22,
        host: "127.0.0.1",
        runOnce: true
      })
      expect(ssh).not.toHaveProperty("colour")
      expect(compliance).toMatchObject({
        name: "compliance",
        framework: "nis2",
        evidencePath: "/srv/evidence.json",
        controlOverrides: {
          "ssh-hardening": { mode: "observe", reason: "ticket 42" },
          boot: { mode: "disabled", reason: "" }
        }
      })
      expect(compliance?.controlOverrides["ssh-hardening"]).not.toHaveProperty("extra")
    }).pipe(Effect.provide(TestLayer)))

  it.effect("floors intervalSeconds at 5 s", () =>
    Effect.gen(function*() {
      const file = writeChecks(JSON.stringify({
        zero: { kind: "tcp", mode: "enforce", intervalSeconds: 0 },
        one: { kind: "tcp", mode: "enforce", intervalSeconds: 1 },
        five: { kind: "tcp", mode: "enforce", intervalSeconds: 5 },
        minute: { kind: "tcp", mode: "enforce", intervalSeconds: 60 }
      }))
      const probes = yield* loadHealthChecks(file)
      expect(probes.map((p) => [p.name, p.intervalSeconds])).toStrictEqual([
        ["zero", 5],
        ["one", 5],
        ["five", 5],
        ["minute", 60]
      ])
    }).pipe(Effect.provide(TestLayer)))

  it.effect("reads an unknown mode as enforce (fail closed), loudly", () =>
    Effect.gen(function*() {
      const file = writeChecks(JSON.stringify({
        typo: { kind: "http", mode: "observ" },
        upper: { kind: "http", mode: "Observe" },
        observe: { kind: "http", mode: "observe" },
        disabled: { kind: "http", mode: "disabled" },
        evidence: { kind: "evidence", mode: "observe", controls: { boot: { mode: "disable" } } }
      }))
      const probes = yield* loadHealthChecks(file)
      expect(probes.map((p) => p.mode)).toStrictEqual(["enforce", "enforce", "observe", "disabled", "observe"])
      expect(probes[4]?.controls["boot"]?.mode).toBe("enforce")
      const warnings = (yield* CapturedLogs.lines).filter((line) => line.startsWith("WARN"))
      expect(warnings).toHaveLength(3)
      expect(warnings.join("\n")).toContain("typo: \"observ\"")
      expect(warnings.join("\n")).toContain("evidence.controls.boot: \"disable\"")
    }).pipe(Effect.provide(TestLayer)))

  it.effect("keeps a probe of an unknown kind (its runs will fail)", () =>
    Effect.gen(function*() {
      const file = writeChecks(JSON.stringify({ mail: { kind: "smtp", mode: "enforce" } }))
      expect((yield* loadHealthChecks(file)).map((p) => [p.name, p.kind])).toStrictEqual([["mail", "smtp"]])
    }).pipe(Effect.provide(TestLayer)))

  it.effect("a missing file declares no probe (logged at info, not counted)", () =>
    Effect.gen(function*() {
      const file = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "health-checks-")), "absent.json")
      const before = yield* invalidCount
      expect(yield* loadHealthChecks(file)).toStrictEqual([])
      expect(yield* invalidCount).toBe(before)
      const lines = yield* CapturedLogs.lines
      expect(lines.some((line) => line.startsWith("INFO") && line.includes(file))).toBe(true)
    }).pipe(Effect.provide(TestLayer)))

  it.effect("an empty object declares no probe", () =>
    Effect.gen(function*() {
      expect(yield* loadHealthChecks(writeChecks("{}"))).toStrictEqual([])
    }).pipe(Effect.provide(TestLayer)))

  it.effect("invalid JSON is an error, logged and counted", () =>
    expectInvalid("{\"web\": {\"kind\": \"http\",", /^invalid: .*JSON/).pipe(Effect.provide(TestLayer)))

  it.effect("a probe without kind is an error, logged and counted", () =>
    expectInvalid(JSON.stringify({ web: { mode: "enforce" } }), /web\.kind: is missing/).pipe(
      Effect.provide(TestLayer)
    ))

  it.effect("a port out of range or a non-object file is an error", () =>
    Effect.gen(function*() {
      yield* expectInvalid(
        JSON.stringify({ ssh: { kind: "tcp", mode: "enforce", port: 70000 } }),
        /ssh\.port: Expected a number between 0 and 65535/
      )
      yield* expectInvalid("[]", /^invalid: /)
    }).pipe(Effect.provide(TestLayer)))

  it.effect("an unreadable file (a directory) is an error, logged and counted", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "health-checks-"))
      const before = yield* invalidCount
      const error = yield* Effect.flip(loadHealthChecks(dir))
      expect(error._tag).toBe("HealthChecksError")
      expect(error.reason).toMatch(/^cannot read: /)
      expect(yield* invalidCount).toBe(before + 1)
    }).pipe(Effect.provide(TestLayer)))
})
