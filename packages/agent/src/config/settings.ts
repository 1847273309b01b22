/**
 * The agent's settings that have a default or may be left out, each with its key, its flag
 * and what makes a value usable. An unusable value is never fatal (a unit whose agent exits
 * on it restarts for ever): the setting takes its default, and the agent says so once, at
 * ERROR, and in `status`. `run`'s flags and the `Config` readers (`AgentConfig`,
 * `PipelineConfig`) settle a value with the same rule, so that they agree on the fallback.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { parseListen } from "../support/listen.js"

/**
 * A setting given a value the agent cannot use: it runs with the default instead.
 *
 * @since 0.1.0
 */
export const SettingWarning = Schema.Struct({
  /** The flag and its environment variable, e.g. `--renewal-threshold-fraction (NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION)`. */
  setting: Schema.String,
  /** The value given (cut at 200 characters). */
  value: Schema.String,
  /** Why it cannot be used and what the agent does instead. */
  message: Schema.String
})

/**
 * @since 0.1.0
 */
export type SettingWarning = typeof SettingWarning.Type

/**
 * One setting: `parse` gives the value of a text, or why it cannot be used.
 *
 * @internal
 */
export interface SettingRule<A> {
  /** The environment variable / `ConfigProvider` key. */
  readonly key: string
  /** `run`'s flag, or `null` for a setting read from the environment only. */
  readonly flag: string | null
  readonly parse: (text: string) => Either.Either<A, string>
  /** The value when the setting is absent or unusable. */
  readonly fallback: A
  /** What the agent does with an unusable value, for the warning. */
  readonly instead: string
}

const MAX_VALUE = 200

const integer = (min: number, max = Number.MAX_SAFE_INTEGER) => (text: string): Either.Either<number, string> => {
  const trimmed = text.trim()
  if (!/^[+-]?\d+$/.test(trimmed)) return Either.left("is not an integer")
  const value = Number(trimmed)
  return value >= min && value <= max
    ? Either.right(value)
    : Either.left(max === Number.MAX_SAFE_INTEGER ? `must be at least ${min}` : `must be between ${min} and ${max}`)
}

const seconds = (key: string, flag: string | null, fallback: number, max?: number): SettingRule<number> => ({
  key,
  flag,
  parse: integer(1, max),
  fallback,
  instead: `the default ${fallback} is used`
})

const path = (key: string, flag: string | null, fallback: string): SettingRule<string> => ({
  key,
  flag,
  parse: (text) => text.trim() === "" ? Either.left("is blank") : Either.right(text),
  fallback,
  instead: `the default ${fallback} is used`
})

const choice = <const A extends string>(
  key: string,
  flag: string,
  values: ReadonlyArray<A>,
  fallback: A
): SettingRule<A> => ({
  key,
  flag,
  parse: (text) => {
    const found = values.find((value) => value === text.trim())
    return found === undefined ? Either.left(`is not one of ${values.join(", ")}`) : Either.right(found)
  },
  fallback,
  instead: `the default ${fallback} is used`
})

/** @internal */
export const manifestFreshnessWindowSecs = seconds(
  "NIXFLEET_AGENT_MANIFEST_FRESHNESS_WINDOW_SECS",
  "--manifest-freshness-window-secs",
  3600
)

/** @internal */
export const sustainedFailureSecs = seconds(
  "NIXFLEET_AGENT_SUSTAINED_FAILURE_SECS",
  "--sustained-failure-secs",
  120
)

/** @internal */
export const outboxNonDurableCap = seconds("NIXFLEET_AGENT_OUTBOX_NONDURABLE_CAP", null, 10_000)

/**
 * Unset is no renewal, as upstream; a value outside (0, 1) is also no renewal (upstream's
 * worker logs an error and idles), never an exit.
 *
 * @internal
 */
export const renewalThresholdFraction: SettingRule<number | null> = {
  key: "NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION",
  flag: "--renewal-threshold-fraction",
  parse: (text) => {
    const value = text.trim() === "" ? Number.NaN : Number(text)
    return value > 0 && value < 1 ? Either.right(value) : Either.left("must be a number strictly between 0 and 1")
  },
  fallback: null,
  instead: "certificate renewal is disabled"
}

/** @internal */
export const stateDir = path("NIXFLEET_AGENT_STATE_DIR", "--state-dir", "/var/lib/nixfleet-agent")
/** @internal */
export const currentSystemPath = path(
  "NIXFLEET_AGENT_CURRENT_SYSTEM_PATH",
  "--current-system-path",
  "/run/current-system"
)
/** @internal */
export const healthChecksFile = path(
  "NIXFLEET_AGENT_HEALTH_CHECKS_FILE",
  "--health-checks-file",
  "/etc/nixfleet/agent/health-checks.json"
)
/** @internal */
export const sshHostKeyFile = path(
  "NIXFLEET_AGENT_SSH_HOST_KEY_FILE",
  "--ssh-host-key-file",
  "/etc/ssh/ssh_host_ed25519_key"
)
/** @internal */
export const systemProfile = path("NIXFLEET_AGENT_SYSTEM_PROFILE", "--system-profile", "/nix/var/nix/profiles/system")
/** @internal */
export const switchLockPath = path(
  "NIXFLEET_AGENT_SWITCH_LOCK_PATH",
  "--switch-lock-path",
  "/run/nixos/switch-to-configuration.lock"
)
/** @internal */
export const storeDir = path("NIXFLEET_AGENT_STORE_DIR", null, "/nix/store")

/** @internal */
export const SWITCH_METHODS = ["systemd-run", "direct", "darwin"] as const

/** @internal */
export const switchMethod = choice(
  "NIXFLEET_AGENT_SWITCH_METHOD",
  "--switch-method",
  SWITCH_METHODS,
  // systemd-run on Linux, darwin on macOS.
  globalThis.process?.platform === "darwin" ? "darwin" : "systemd-run"
)

/**
 * Must stay below the control plane's confirm deadline (360 s): a later answer splits state.
 *
 * @internal
 */
export const verifyTimeoutSecs = seconds("NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS", "--verify-timeout-secs", 300, 359)

/** @internal */
export const realiseTimeoutSecs = seconds("NIXFLEET_AGENT_REALISE_TIMEOUT_SECS", "--realise-timeout-secs", 3600)

/** @internal */
export const logFormat = choice("NIXFLEET_AGENT_LOG_FORMAT", "--log-format", ["json", "pretty"], "json")

/**
 * The metrics endpoint: off when absent, and off (with the warning) when unusable.
 *
 * @internal
 */
export const metricsListen: SettingRule<string | null> = {
  key: "NIXFLEET_AGENT_METRICS_LISTEN",
  flag: "--metrics-listen",
  parse: (text) =>
    parseListen(text) === undefined
      ? Either.left("is not [host:]port (a port between 1 and 65535)")
      : Either.right(text),
  fallback: null,
  instead: "the metrics endpoint is off"
}

/**
 * Every rule, for the warnings: the agent's own, the activation pipeline's and the
 * command line's.
 *
 * @internal
 */
export const allRules: ReadonlyArray<SettingRule<unknown>> = [
  manifestFreshnessWindowSecs,
  sustainedFailureSecs,
  outboxNonDurableCap,
  renewalThresholdFraction,
  stateDir,
  currentSystemPath,
  healthChecksFile,
  sshHostKeyFile,
  systemProfile,
  switchLockPath,
  storeDir,
  switchMethod,
  verifyTimeoutSecs,
  realiseTimeoutSecs,
  logFormat,
  metricsListen
]

/**
 * The text a setting was given: an empty value is no value, as systemd's `Environment=X=`
 * and the agent's earlier readers took it.
 *
 * @internal
 */
export const givenText = (rule: SettingRule<unknown>): Config.Config<Option.Option<string>> =>
  Config.option(Config.string(rule.key)).pipe(Config.map(Option.filter((text) => text !== "")))

/**
 * The value of `text` for `rule`, or its fallback when the text is absent or unusable.
 *
 * @internal
 */
export const settle = <A>(rule: SettingRule<A>, text: Option.Option<string>): A =>
  Option.match(text, {
    onNone: () => rule.fallback,
    onSome: (given) => Either.getOrElse(rule.parse(given), () => rule.fallback)
  })

/**
 * The setting read leniently from the current `ConfigProvider`: absent or unusable, it is
 * the fallback. (Its warning comes from {@link warningsConfig}.)
 *
 * @internal
 */
export const lenient = <A>(rule: SettingRule<A>): Config.Config<A> =>
  givenText(rule).pipe(Config.map((text) => settle(rule, text)))

/**
 * The name of a rule's setting as an operator knows it: its flag and its variable.
 *
 * @internal
 */
export const settingName = (rule: SettingRule<unknown>): string =>
  rule.flag === null ? rule.key : `${rule.flag} (${rule.key})`

/**
 * The warning for `text` given to `rule`, or `undefined` when it is usable.
 *
 * @internal
 */
export const warningFor = (rule: SettingRule<unknown>, text: string): SettingWarning | undefined =>
  Either.match(rule.parse(text), {
    onRight: () => undefined,
    onLeft: (problem) => {
      const value = text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE)}…` : text
      return {
        setting: settingName(rule),
        value,
        message: `${rule.flag ?? rule.key} ${JSON.stringify(value)} ${problem}; ${rule.instead}`
      }
    }
  })

/**
 * A warning for every unusable value in the current `ConfigProvider`, in {@link allRules}'
 * order.
 *
 * @internal
 */
export const warningsConfig: Config.Config<ReadonlyArray<SettingWarning>> = Config.all(
  allRules.map((rule) =>
    givenText(rule).pipe(Config.map((text) => Option.isNone(text) ? undefined : warningFor(rule, text.value)))
  )
).pipe(Config.map((found) => found.filter((warning) => warning !== undefined)))
