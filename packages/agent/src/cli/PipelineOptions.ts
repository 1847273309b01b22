/**
 * The commands' flags, made from the settings of config/settings.ts: each reads its flag,
 * else its environment variable, else takes its default, and `--help` says what the
 * setting says. How a value the setting cannot use is taken is the command's choice
 * ({@link Strictness}): `activate`, `rollback`, `status` and `export-queue`, run by hand,
 * refuse it (exit 64); `run`, run by systemd, takes the default instead (a unit that exits
 * on a value restarts for ever) and the agent reports it.
 *
 * @internal
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import type { PipelineConfigShape } from "../config/PipelineConfig.js"
import * as Settings from "../config/settings.js"

/**
 * A value given to `run` (by its flag or its environment variable) that the setting cannot
 * use. `run` does not exit on it: the setting takes its default, and the agent says so once
 * at ERROR and in `status` (see `AgentConfig`'s `settingWarnings`).
 *
 * @internal
 */
export interface UnusableValue {
  readonly _tag: "UnusableValue"
  readonly text: string
}

/**
 * How a command takes a value its setting cannot use: as `U`, or by refusing it.
 *
 * @internal
 */
export interface Strictness<U> {
  /** Whether the command line parses the flag as its type first (`--help` then names it: integer, the choices). */
  readonly typed: boolean
  readonly unusable: (
    setting: Settings.Setting<unknown>,
    text: string,
    problem: string
  ) => Effect.Effect<U, ValidationError.ValidationError>
}

/**
 * Refuses the value: exit 64, one line naming the setting, the value and why.
 *
 * @internal
 */
export const strict: Strictness<never> = {
  typed: true,
  unusable: (setting, text, problem) =>
    Effect.fail(ValidationError.invalidValue(HelpDoc.p(Settings.refusal(setting, text, problem))))
}

/**
 * Passes the text on as an {@link UnusableValue}: the setting is its default, and the
 * agent reports it.
 *
 * @internal
 */
export const lenient: Strictness<UnusableValue> = {
  typed: false,
  unusable: (_setting, text) => Effect.succeed({ _tag: "UnusableValue", text })
}

type FlagSetting<A> = Settings.Setting<A, string>

/** The flag as the command line reads it: any text when the setting decides alone. */
const flagOf = (setting: FlagSetting<unknown>, typed: boolean): Options.Options<string | number> => {
  const name = setting.flag.replace(/^--/, "")
  if (!typed || setting.type === "text") return Options.text(name)
  return setting.type === "integer" ? Options.integer(name) : Options.choice(name, setting.type.choices)
}

/** The flag's text, else its environment variable's: the text as given, to be parsed by the setting. */
const flagOrVariable = (setting: FlagSetting<unknown>, typed: boolean) =>
  flagOf(setting, typed).pipe(
    Options.withFallbackConfig(Config.string(setting.key)),
    Options.map(String)
  )

/** The value of `text` for `setting`, through `some`, or what `strictness` makes of it. */
const decide = <A, B, U>(
  setting: FlagSetting<A>,
  strictness: Strictness<U>,
  text: string,
  some: (value: A) => B
): Effect.Effect<B | U, ValidationError.ValidationError> =>
  Either.match(setting.parse(text), {
    onLeft: (problem) => strictness.unusable(setting, text, problem),
    onRight: (value) => Effect.succeed(some(value))
  })

/** The text given, `None` when absent: an empty value is none (as the `Config` readers take it). */
const given = (setting: FlagSetting<unknown>, typed: boolean) =>
  flagOrVariable(setting, typed).pipe(Options.optional, Options.map(Option.filter((text) => text !== "")))

/**
 * The flag of a setting with a default: the value, the default when absent, or what
 * `strictness` makes of a value it cannot use.
 *
 * @internal
 */
export const settingOption = <A, U>(
  rule: Settings.SettingRule<A, string>,
  strictness: Strictness<U>
): Options.Options<A | U> =>
  given(rule, strictness.typed).pipe(
    Options.mapEffect(Option.match({
      onNone: (): Effect.Effect<A | U, ValidationError.ValidationError> => Effect.succeed(rule.fallback),
      onSome: (text) => decide(rule, strictness, text, identity)
    })),
    Options.withDescription(Settings.helpText(rule))
  )

/**
 * The flag of a setting that may be left out: `None` when absent.
 *
 * @internal
 */
export const optionalSettingOption = <A, U>(
  setting: FlagSetting<A>,
  strictness: Strictness<U>,
  description: string = Settings.helpText(setting)
): Options.Options<Option.Option<NonNullable<A>> | U> =>
  given(setting, strictness.typed).pipe(
    Options.mapEffect(Option.match({
      onNone: (): Effect.Effect<Option.Option<NonNullable<A>> | U, ValidationError.ValidationError> =>
        Effect.succeed(Option.none()),
      onSome: (text) => decide(setting, strictness, text, (value) => Option.fromNullable(value))
    })),
    Options.withDescription(description)
  )

/**
 * The flag of a setting without which the command cannot run: absent, it is refused, as is
 * a value it cannot use.
 *
 * @internal
 */
export const requiredOption = <A>(setting: FlagSetting<A>): Options.Options<A> =>
  flagOrVariable(setting, true).pipe(
    Options.mapEffect((text) => decide(setting, strict, text, identity)),
    Options.withDescription(Settings.helpText(setting))
  )

/**
 * The value `run` itself uses (before the configuration is read): the default for an
 * unusable text.
 *
 * @internal
 */
export const usable = <A>(rule: Settings.SettingRule<A>, value: A | UnusableValue): A =>
  isUnusable(value) ? rule.fallback : value

/** @internal */
export const isUnusable = (value: unknown): value is UnusableValue =>
  typeof value === "object" && value !== null && "_tag" in value && value._tag === "UnusableValue"

/** The activation pipeline's flags (and the probes' and the log's), taken as `strictness` says. */
const pipelineOptionsWith = <U>(strictness: Strictness<U>) => ({
  currentSystemPath: settingOption(Settings.currentSystemPath, strictness),
  systemProfile: settingOption(Settings.systemProfile, strictness),
  switchMethod: settingOption(Settings.switchMethod, strictness),
  switchLockPath: settingOption(Settings.switchLockPath, strictness),
  healthChecksFile: settingOption(Settings.healthChecksFile, strictness),
  sustainedFailureSecs: settingOption(Settings.sustainedFailureSecs, strictness),
  verifyTimeoutSecs: settingOption(Settings.verifyTimeoutSecs, strictness),
  realiseTimeoutSecs: settingOption(Settings.realiseTimeoutSecs, strictness),
  stateDir: settingOption(Settings.stateDir, strictness),
  logFormat: settingOption(Settings.logFormat, strictness)
})

/**
 * The options `run`, `activate` and `rollback` share, as the commands run by hand read
 * them: a value a setting cannot use is refused.
 *
 * @internal
 */
export const pipelineOptions = pipelineOptionsWith(strict)

/**
 * The same as `run` reads them: a value a setting cannot use is not an exit but the default.
 *
 * @internal
 */
export const runPipelineOptions = pipelineOptionsWith(lenient)

type OptionValue<O> = O extends Options.Options<infer A> ? A : never

/** @internal */
export type RunPipelineOptions = {
  readonly [K in keyof typeof runPipelineOptions]: OptionValue<(typeof runPipelineOptions)[K]>
}

/** @internal */
export type PipelineOptions = {
  readonly [K in keyof typeof pipelineOptions]: OptionValue<(typeof pipelineOptions)[K]>
}

/** @internal */
export const toPipelineConfig = (options: PipelineOptions): PipelineConfigShape => ({
  currentSystemPath: options.currentSystemPath,
  systemProfile: options.systemProfile,
  switchMethod: options.switchMethod,
  switchLockPath: options.switchLockPath,
  stateDir: options.stateDir,
  verifyTimeoutSecs: options.verifyTimeoutSecs,
  realiseTimeoutSecs: options.realiseTimeoutSecs,
  // No flag sets it: activate and rollback work on the default store.
  storeDir: Settings.storeDir.fallback
})
