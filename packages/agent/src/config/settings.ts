/**
 * Every setting of the agent, once: its `NIXFLEET_AGENT_*` key, its flag, what `--help`
 * says of it, its default and what makes a value usable. The `Config` readers
 * (`AgentConfig`, `PipelineConfig`) and the command line's flags (cli/PipelineOptions.ts)
 * are made from these entries, so that they agree on every name, default and fallback.
 *
 * An unusable value of an optional setting is never fatal to the agent (a unit whose
 * agent exits on it restarts for ever): the setting takes its default, and the agent says
 * so once, at ERROR, and in `status`. Commands run by hand refuse it instead.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Record from "effect/Record"
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
 * What the command line's own parser reads a flag as where a bad value is refused (and
 * what `--help` names): any text, an integer, or one of a few words.
 *
 * @internal
 */
export type SettingType = "text" | "integer" | { readonly choices: ReadonlyArray<string> }

/**
 * One setting: `parse` gives the value of a text, or why it cannot be used.
 *
 * @internal
 */
export interface Setting<A, Flag extends string | null = string | null> {
  /** The environment variable / `ConfigProvider` key. */
  readonly key: string
  /** `run`'s flag (and the other commands' that take it), or `null` for a setting read from the environment only. */
  readonly flag: Flag
  /** What `--help` says of it, its default aside. */
  readonly description: string
  readonly type: SettingType
  readonly parse: (text: string) => Either.Either<A, string>
  /** What `--help` says of its default (`default 3600`), or `null` to say nothing. */
  readonly shownDefault: string | null
}

/**
 * A setting that may be left out: the value it then takes, which an unusable value also
 * takes where it is not refused.
 *
 * @internal
 */
export interface SettingRule<A, Flag extends string | null = string | null> extends Setting<A, Flag> {
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

const notBlank = (text: string): Either.Either<string, string> =>
  text.trim() === "" ? Either.left("is blank") : Either.right(text)

interface Entry<Flag extends string | null> {
  readonly key: string
  readonly flag: Flag
  readonly description: string
}

/** A setting whose default is a value, shown by `--help` and used for an unusable one. */
const withDefault = <A, Flag extends string | null>(
  entry: Entry<Flag>,
  type: SettingType,
  parse: (text: string) => Either.Either<A, string>,
  fallback: A
): SettingRule<A, Flag> => ({
  ...entry,
  type,
  parse,
  fallback,
  shownDefault: `default ${fallback}`,
  instead: `the default ${fallback} is used`
})

const seconds = <Flag extends string | null>(entry: Entry<Flag>, fallback: number, max?: number) =>
  withDefault(entry, "integer", integer(1, max), fallback)

const path = <Flag extends string | null>(entry: Entry<Flag>, fallback: string) =>
  withDefault(entry, "text", notBlank, fallback)

const choice = <const A extends string, Flag extends string | null>(
  entry: Entry<Flag>,
  values: ReadonlyArray<A>,
  fallback: A
) =>
  withDefault(entry, { choices: values }, (text): Either.Either<A, string> => {
    const found = values.find((value) => value === text.trim())
    return found === undefined ? Either.left(`is not one of ${values.join(", ")}`) : Either.right(found)
  }, fallback)

/** A file the agent does without when it is not given; any text names one. */
const optionalFile = <Flag extends string>(entry: Entry<Flag>): SettingRule<string | null, Flag> => ({
  ...entry,
  type: "text",
  parse: Either.right,
  fallback: null,
  shownDefault: null,
  instead: "it is not used"
})

/** @internal */
export const controlPlaneUrl: Setting<string, "--control-plane-url"> = {
  key: "NIXFLEET_AGENT_CP_URL",
  flag: "--control-plane-url",
  description: "the control plane, e.g. https://cp.example:8443",
  type: "text",
  parse: (text) => URL.canParse(text) ? Either.right(text) : Either.left("is not a URL"),
  shownDefault: null
}

/** @internal */
export const machineId: Setting<string, "--machine-id"> = {
  key: "NIXFLEET_AGENT_MACHINE_ID",
  flag: "--machine-id",
  description: "this host's name in the fleet (the machine id of its certificate)",
  type: "text",
  parse: (text) =>
    text.trim() === ""
      ? Either.left("is blank")
      : text.trim() !== text
      ? Either.left("starts or ends with white space")
      : Either.right(text),
  shownDefault: null
}

/**
 * Any text: a path that cannot be read stops `run` with its own message (exit 78).
 *
 * @internal
 */
export const trustFile = withDefault(
  { key: "NIXFLEET_AGENT_TRUST_FILE", flag: "--trust-file", description: "trust roots for signed artifacts" },
  "text",
  Either.right,
  "/etc/nixfleet/agent/trust.json"
)

/** @internal */
export const caCert = optionalFile({
  key: "NIXFLEET_AGENT_CA_CERT",
  flag: "--ca-cert",
  description: "extra CA for the control plane"
})

/** @internal */
export const clientCert = optionalFile({
  key: "NIXFLEET_AGENT_CLIENT_CERT",
  flag: "--client-cert",
  description: "mTLS certificate"
})

/** @internal */
export const clientKey = optionalFile({
  key: "NIXFLEET_AGENT_CLIENT_KEY",
  flag: "--client-key",
  description: "mTLS key: PEM, or the host's OpenSSH ed25519 key"
})

/** @internal */
export const bootstrapTokenFile = optionalFile({
  key: "NIXFLEET_AGENT_BOOTSTRAP_TOKEN_FILE",
  flag: "--bootstrap-token-file",
  description: "first-boot enrollment token"
})

/** @internal */
export const manifestFreshnessWindowSecs = seconds({
  key: "NIXFLEET_AGENT_MANIFEST_FRESHNESS_WINDOW_SECS",
  flag: "--manifest-freshness-window-secs",
  description: "how old a signed manifest may be, plus 60 s of clock skew"
}, 3600)

/** @internal */
export const sustainedFailureSecs = seconds({
  key: "NIXFLEET_AGENT_SUSTAINED_FAILURE_SECS",
  flag: "--sustained-failure-secs",
  description: "how long an enforce probe may fail before Soaking → Failed"
}, 120)

/** @internal */
export const outboxNonDurableCap = seconds({
  key: "NIXFLEET_AGENT_OUTBOX_NONDURABLE_CAP",
  flag: null,
  description: "probe chatter (non-durable events) kept in the outbox before the oldest is dropped"
}, 10_000)

/**
 * Unset is no renewal, as upstream; a value outside (0, 1) is also no renewal (upstream's
 * worker logs an error and idles), never an exit.
 *
 * @internal
 */
export const renewalThresholdFraction: SettingRule<number | null, "--renewal-threshold-fraction"> = {
  key: "NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION",
  flag: "--renewal-threshold-fraction",
  description: "renew the certificate when less than this fraction (strictly between 0 and 1) of its validity remains",
  type: "text",
  parse: (text) => {
    const value = text.trim() === "" ? Number.NaN : Number(text)
    return value > 0 && value < 1 ? Either.right(value) : Either.left("must be a number strictly between 0 and 1")
  },
  fallback: null,
  shownDefault: "default: no renewal",
  instead: "certificate renewal is disabled"
}

/** @internal */
export const stateDir = path({
  key: "NIXFLEET_AGENT_STATE_DIR",
  flag: "--state-dir",
  description: "outbox, caches, GC roots and switch logs"
}, "/var/lib/nixfleet-agent")

/** @internal */
export const currentSystemPath = path({
  key: "NIXFLEET_AGENT_CURRENT_SYSTEM_PATH",
  flag: "--current-system-path",
  description: "the link whose basename is the running closure"
}, "/run/current-system")

/** @internal */
export const healthChecksFile = path({
  key: "NIXFLEET_AGENT_HEALTH_CHECKS_FILE",
  flag: "--health-checks-file",
  description: "probe declarations"
}, "/etc/nixfleet/agent/health-checks.json")

/** @internal */
export const sshHostKeyFile = path({
  key: "NIXFLEET_AGENT_SSH_HOST_KEY_FILE",
  flag: "--ssh-host-key-file",
  description: "the host's OpenSSH ed25519 key: renewal CSRs, evidence signatures"
}, "/etc/ssh/ssh_host_ed25519_key")

/** @internal */
export const systemProfile = path({
  key: "NIXFLEET_AGENT_SYSTEM_PROFILE",
  flag: "--system-profile",
  description: "the profile that nix-env --set writes"
}, "/nix/var/nix/profiles/system")

/** @internal */
export const switchLockPath = path({
  key: "NIXFLEET_AGENT_SWITCH_LOCK_PATH",
  flag: "--switch-lock-path",
  description: "held by a switch in progress"
}, "/run/nixos/switch-to-configuration.lock")

/** @internal */
export const storeDir = path({
  key: "NIXFLEET_AGENT_STORE_DIR",
  flag: null,
  description: "the Nix store directory"
}, "/nix/store")

/** @internal */
export const SWITCH_METHODS = ["systemd-run", "direct", "darwin"] as const

/** @internal */
export const switchMethod = choice(
  {
    key: "NIXFLEET_AGENT_SWITCH_METHOD",
    flag: "--switch-method",
    description: "systemd-run, direct (a detached child: hosts without systemd, tests) or darwin"
  },
  SWITCH_METHODS,
  // systemd-run on Linux, darwin on macOS.
  globalThis.process?.platform === "darwin" ? "darwin" : "systemd-run"
)

/**
 * Must stay below the control plane's confirm deadline (360 s): a later answer splits state.
 *
 * @internal
 */
export const verifyTimeoutSecs = seconds(
  {
    key: "NIXFLEET_AGENT_VERIFY_TIMEOUT_SECS",
    flag: "--verify-timeout-secs",
    description: "verify budget, at most 359: below the control plane's confirm deadline"
  },
  300,
  359
)

/** @internal */
export const realiseTimeoutSecs = seconds({
  key: "NIXFLEET_AGENT_REALISE_TIMEOUT_SECS",
  flag: "--realise-timeout-secs",
  description: "budget for nix-store --realise"
}, 3600)

/** @internal */
export const logFormat = choice(
  {
    key: "NIXFLEET_AGENT_LOG_FORMAT",
    flag: "--log-format",
    description: "json (one object per line, for journald) or pretty"
  },
  ["json", "pretty"],
  "json"
)

/**
 * The metrics endpoint: off when absent, and off (with the warning) when unusable.
 *
 * @internal
 */
export const metricsListen: SettingRule<string | null, "--metrics-listen"> = {
  key: "NIXFLEET_AGENT_METRICS_LISTEN",
  flag: "--metrics-listen",
  description: "serve Prometheus metrics on GET /metrics at [host:]port",
  type: "text",
  parse: (text) =>
    parseListen(text) === undefined
      ? Either.left("is not [host:]port (a port between 1 and 65535)")
      : Either.right(text),
  fallback: null,
  shownDefault: "default: off",
  instead: "the metrics endpoint is off"
}

/** @internal */
export const metricsTextfile = optionalFile({
  key: "NIXFLEET_AGENT_METRICS_TEXTFILE",
  flag: "--metrics-textfile",
  description: "also write the metrics to this node_exporter textfile (*.prom), every 15 s"
})

const REFERENCE_ONLY = "accepted for the reference agent's command line; no effect (see the README)"

/**
 * The reference binary's `--poll-interval`: accepted, and warned about, but without effect.
 *
 * @internal
 */
export const pollInterval: Setting<number, "--poll-interval"> = {
  key: "NIXFLEET_AGENT_POLL_INTERVAL",
  flag: "--poll-interval",
  description: REFERENCE_ONLY,
  type: "integer",
  parse: (text) => Either.mapLeft(integer(0)(text), () => "must be seconds (>= 0)"),
  shownDefault: null
}

/** The reference binary's `--compliance-gate-mode` values. */
const COMPLIANCE_GATE_MODES = ["disabled", "permissive", "enforce", "auto"] as const

/**
 * The reference binary's `--compliance-gate-mode`: accepted, and warned about, but without effect.
 *
 * @internal
 */
export const complianceGateMode: Setting<(typeof COMPLIANCE_GATE_MODES)[number], "--compliance-gate-mode"> = {
  key: "NIXFLEET_AGENT_COMPLIANCE_GATE_MODE",
  flag: "--compliance-gate-mode",
  description: REFERENCE_ONLY,
  type: { choices: COMPLIANCE_GATE_MODES },
  parse: (text) => {
    const found = COMPLIANCE_GATE_MODES.find((mode) => mode === text.trim())
    return found === undefined ? Either.left(`is not one of ${COMPLIANCE_GATE_MODES.join(", ")}`) : Either.right(found)
  },
  shownDefault: null
}

/**
 * Every setting that may be left out, for the warnings: the agent's own, the activation
 * pipeline's and the command line's.
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
  metricsListen,
  trustFile,
  caCert,
  clientCert,
  clientKey,
  bootstrapTokenFile,
  metricsTextfile
]

/**
 * What `--help` says of a setting: its description and its default.
 *
 * @internal
 */
export const helpText = (setting: Setting<unknown>): string =>
  setting.shownDefault === null ? setting.description : `${setting.description} (${setting.shownDefault})`

/**
 * The text a setting was given: an empty value is no value, as systemd's `Environment=X=`
 * and the agent's earlier readers took it.
 *
 * @internal
 */
export const givenText = (setting: Setting<unknown>): Config.Config<Option.Option<string>> =>
  Config.option(Config.string(setting.key)).pipe(Config.map(Option.filter((text) => text !== "")))

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
 * The values of a record of settings.
 *
 * @internal
 */
export type SettingValues<R> = { readonly [K in keyof R]: R[K] extends SettingRule<infer A> ? A : never }

/**
 * Each setting of `rules` read leniently (see {@link lenient}), under its name in `rules`.
 *
 * @internal
 */
export const lenientAll = <R extends Record.ReadonlyRecord<string, SettingRule<unknown>>>(
  rules: R
): Config.Config<SettingValues<R>> =>
  // Record.map keeps the keys but not each one's type: the cast gives it back.
  Config.all(Record.map(rules, lenient)) as Config.Config<SettingValues<R>>

/**
 * The fallback of each setting of `rules`, under its name in `rules`.
 *
 * @internal
 */
export const fallbacks = <R extends Record.ReadonlyRecord<string, SettingRule<unknown>>>(rules: R): SettingValues<R> =>
  Record.map(rules, (rule) => rule.fallback) as SettingValues<R>

/**
 * A setting the agent cannot do without: absent, empty or unusable, reading it fails. The
 * error's message names the setting itself (its path is not part of a `ConfigError`'s
 * message, which is all an embedder or `run` shows).
 *
 * @internal
 */
export const required = <A>(setting: Setting<A>): Config.Config<A> =>
  Config.nested(
    Config.string().pipe(Config.mapOrFail((text) =>
      text === ""
        ? Either.left(ConfigError.MissingData([], `${settingName(setting)} is empty`))
        : Either.mapLeft(setting.parse(text), (problem) => ConfigError.InvalidData([], refusal(setting, text, problem)))
    )),
    setting.key
  )

/**
 * The name of a setting as an operator knows it: its flag and its variable.
 *
 * @internal
 */
export const settingName = (setting: Setting<unknown>): string =>
  setting.flag === null ? setting.key : `${setting.flag} (${setting.key})`

const shown = (text: string) => text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE)}…` : text

/**
 * Why a command run by hand refuses `text` for `setting`: `problem`, with the setting and
 * the value named.
 *
 * @internal
 */
export const refusal = (setting: Setting<unknown>, text: string, problem: string): string =>
  `${settingName(setting)} ${JSON.stringify(shown(text))} ${problem}`

/**
 * The warning for `text` given to `rule`, or `undefined` when it is usable.
 *
 * @internal
 */
export const warningFor = (rule: SettingRule<unknown>, text: string): SettingWarning | undefined =>
  Either.match(rule.parse(text), {
    onRight: () => undefined,
    onLeft: (problem) => {
      const value = shown(text)
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
