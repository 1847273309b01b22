/**
 * One definition per setting: `activate`'s flags (which refuse a value they cannot use),
 * `run`'s (which take the default and let the agent report it) and the `Config` reader
 * agree on every setting's default, on which values are usable and on what they mean; and
 * `--help` says the default wherever the flag is.
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, HashMap } from "effect"
import { pipelineOptions, runPipelineOptions } from "../src/cli/PipelineOptions.js"
import { pipelineConfig } from "../src/config/PipelineConfig.js"
import * as Settings from "../src/config/settings.js"

/** `options` given `flags` on the command line and `env` as the environment. */
const parse = <A>(
  options: Options.Options<A>,
  { env = {}, flags = {} }: {
    readonly flags?: Readonly<Record<string, string>>
    readonly env?: Readonly<Record<string, string>>
  }
) =>
  Options.parse(
    options,
    HashMap.fromIterable(Object.entries(flags).map(([flag, value]) => [flag, [value]] as const)),
    CliConfig.defaultConfig
  ).pipe(
    Effect.mapError((error) => HelpDoc.toAnsiText(error.error)),
    Effect.either,
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
    Effect.provide(NodeFileSystem.layer)
  )

/** Each of the pipeline's flags, a value its setting cannot use and one it can. */
const CASES = [
  { field: "currentSystemPath", bad: " ", good: "/sandbox/current" },
  { field: "systemProfile", bad: " ", good: "/sandbox/profile" },
  { field: "switchMethod", bad: "teleport", good: "direct" },
  { field: "switchLockPath", bad: " ", good: "/sandbox/lock" },
  { field: "healthChecksFile", bad: " ", good: "/sandbox/checks.json" },
  { field: "sustainedFailureSecs", bad: "0", good: "5" },
  { field: "verifyTimeoutSecs", bad: "360", good: "359" },
  { field: "realiseTimeoutSecs", bad: "0", good: "60" },
  { field: "stateDir", bad: " ", good: "/sandbox/state" },
  { field: "logFormat", bad: "xml", good: "pretty" }
] as const

const RULES: { readonly [K in (typeof CASES)[number]["field"]]: Settings.SettingRule<unknown, string> } = {
  currentSystemPath: Settings.currentSystemPath,
  systemProfile: Settings.systemProfile,
  switchMethod: Settings.switchMethod,
  switchLockPath: Settings.switchLockPath,
  healthChecksFile: Settings.healthChecksFile,
  sustainedFailureSecs: Settings.sustainedFailureSecs,
  verifyTimeoutSecs: Settings.verifyTimeoutSecs,
  realiseTimeoutSecs: Settings.realiseTimeoutSecs,
  stateDir: Settings.stateDir,
  logFormat: Settings.logFormat
}

describe("a setting's flags, strict and lenient, and its Config reader", () => {
  it.effect("agree on the default, on the usable values and on the unusable ones", () =>
    Effect.gen(function*() {
      for (const { bad, field, good } of CASES) {
        const rule = RULES[field]
        const strict: Options.Options<unknown> = pipelineOptions[field]
        const lenient: Options.Options<unknown> = runPipelineOptions[field]
        const expected = Either.getOrThrow(rule.parse(good))

        // Absent (and empty, as systemd's `Environment=X=`): the default everywhere.
        for (const env of [{}, { [rule.key]: "" }]) {
          expect(yield* parse(strict, { env }), `${field} strict absent`).toStrictEqual(Either.right(rule.fallback))
          expect(yield* parse(lenient, { env }), `${field} lenient absent`).toStrictEqual(Either.right(rule.fallback))
        }

        for (const source of ["flag", "variable"] as const) {
          const given = (text: string) =>
            source === "flag" ? { flags: { [rule.flag]: text } } : { env: { [rule.key]: text } }
          const what = `${field} by its ${source}`

          expect(yield* parse(strict, given(good)), what).toStrictEqual(Either.right(expected))
          expect(yield* parse(lenient, given(good)), what).toStrictEqual(Either.right(expected))

          // Refused by the commands run by hand; run's passes the text on, for the agent to report.
          const refused = yield* parse(strict, given(bad))
          expect(Either.isLeft(refused), what).toBe(true)
          // A word that is not one of a flag's choices is refused by the parser first, in its own words.
          if (source === "variable" || typeof rule.type !== "object") {
            expect(Either.merge(refused), what).toContain(`${Settings.settingName(rule)} ${JSON.stringify(bad)}`)
          }
          expect(yield* parse(lenient, given(bad)), what).toStrictEqual(
            Either.right({ _tag: "UnusableValue", text: bad })
          )
        }
      }
    }))

  it.effect("the Config reader takes what the flags take, and the default for what they cannot use", () =>
    Effect.gen(function*() {
      const read = (env: Readonly<Record<string, string>>) =>
        Effect.orDie(Effect.withConfigProvider(pipelineConfig, ConfigProvider.fromMap(new Map(Object.entries(env)))))
      const defaults = yield* read({})
      for (const { bad, field, good } of CASES) {
        if (!(field in defaults)) continue
        const rule = RULES[field]
        const key = field as keyof typeof defaults
        expect(defaults[key], field).toStrictEqual(rule.fallback)
        expect((yield* read({ [rule.key]: good }))[key], field).toStrictEqual(Either.getOrThrow(rule.parse(good)))
        expect((yield* read({ [rule.key]: bad }))[key], field).toStrictEqual(rule.fallback)
      }
    }))
})

describe("--help", () => {
  it("shows each pipeline flag's default, on the commands run by hand as on run", () => {
    for (const { field } of CASES) {
      const rule = RULES[field]
      const both: ReadonlyArray<Options.Options<unknown>> = [pipelineOptions[field], runPipelineOptions[field]]
      for (const options of both) {
        const help = HelpDoc.toAnsiText(Options.getHelp(options))
        expect(help, field).toContain(rule.flag)
        expect(help, field).toContain(`${rule.description} (default ${String(rule.fallback)})`)
      }
    }
  })
})
