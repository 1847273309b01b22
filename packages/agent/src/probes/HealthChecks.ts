/**
 * The probe declarations: `/etc/nixfleet/agent/health-checks.json`, rendered by the NixOS
 * module from the fleet's resolved health checks (trusted: it is part of the closure). A
 * JSON object keyed by probe name; each value is a {@link ProbeDeclaration}.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { JsonRecord, nullWhenAbsent, ProbeMode, U16, U64, withDefault } from "@nixfleet/proto"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import { describeParseError } from "./reason.js"

/**
 * The shortest interval between two runs of a probe. LOADBEARING (anti-DoS): a declared
 * `intervalSeconds` of 0 or 1 would have the agent hammer the host or a backend; shorter
 * declarations are raised to this floor when the file is read.
 *
 * @since 0.1.0
 */
export const MIN_INTERVAL_SECONDS = 5

/**
 * A mode as written by an operator. Anything but `observe` or `disabled` — including a
 * typo — is `enforce`: a misspelt mode must gate (fail closed), never silently stop gating.
 */
const LenientMode = Schema.transform(Schema.String, ProbeMode, {
  strict: true,
  decode: (mode) => mode === "observe" || mode === "disabled" ? mode : "enforce",
  encode: (mode) => mode
})

/** `intervalSeconds`, raised to {@link MIN_INTERVAL_SECONDS}. */
const FlooredInterval = Schema.transform(
  U64,
  Schema.Int.pipe(Schema.greaterThanOrEqualTo(MIN_INTERVAL_SECONDS)),
  { strict: true, decode: (seconds) => Math.max(seconds, MIN_INTERVAL_SECONDS), encode: (seconds) => seconds }
)

/**
 * One entry of an evidence probe's `controlOverrides` or `controls`: the control's mode
 * (lenient, as the probe's) and the operator's audit rationale, `""` when not given.
 *
 * @since 0.1.0
 */
export const ControlModeDeclaration = Schema.Struct({
  mode: LenientMode,
  reason: withDefault(Schema.String, () => "")
}).annotations({ identifier: "ControlModeDeclaration" })
/** @since 0.1.0 */
export type ControlModeDeclaration = typeof ControlModeDeclaration.Type

const ControlModes = JsonRecord(ControlModeDeclaration)

/**
 * One probe. Keys are camelCase in memory as in the file; unknown keys are ignored. Keys
 * that are `Option`s upstream (`url`, `host`, `port`, `framework`) also accept `null`.
 *
 * - `kind` (required): `http`, `tcp`, `exec` or `evidence`. Any other string is kept: the
 *   probe is declared, and every run fails with "unknown probe kind".
 * - `mode` (required): `enforce`, `observe` or `disabled`; any other string is `enforce`.
 * - `intervalSeconds`: 30; raised to at least {@link MIN_INTERVAL_SECONDS}.
 * - `runOnce`: `false`; `true` runs the probe once per reset.
 * - `url` (http): none; a probe without one fails.
 * - `expectStatus` (http): 200, compared exactly.
 * - `host` (tcp): `127.0.0.1`.
 * - `port` (tcp): none; a probe without one fails.
 * - `connectTimeoutSecs` (tcp): 5.
 * - `command` (exec): `[]`, argv; empty fails.
 * - `timeoutSecs` (exec, http): 10.
 * - `framework` (evidence): none; exactly one of `framework` and a non-empty `controls`.
 * - `evidencePath` (evidence): `/var/lib/nixfleet-compliance/evidence.json`.
 * - `controlOverrides` (evidence, framework mode): `{}`, control id → mode and reason.
 * - `controls` (evidence, custom-controls mode): `{}`, control id → mode and reason.
 *
 * @since 0.1.0
 */
export const ProbeDeclaration = Schema.Struct({
  kind: Schema.String,
  mode: LenientMode,
  intervalSeconds: withDefault(FlooredInterval, () => 30),
  runOnce: withDefault(Schema.Boolean, () => false),
  url: nullWhenAbsent(Schema.String),
  expectStatus: withDefault(U16, () => 200),
  host: Schema.optionalWith(Schema.String, { nullable: true, default: () => "127.0.0.1" }),
  port: nullWhenAbsent(U16),
  connectTimeoutSecs: withDefault(U64, () => 5),
  command: withDefault(Schema.Array(Schema.String), () => []),
  timeoutSecs: withDefault(U64, () => 10),
  framework: nullWhenAbsent(Schema.String),
  evidencePath: withDefault(Schema.String, () => "/var/lib/nixfleet-compliance/evidence.json"),
  controlOverrides: withDefault(ControlModes, (): typeof ControlModes.Type => ({})),
  controls: withDefault(ControlModes, (): typeof ControlModes.Type => ({}))
}).annotations({ identifier: "ProbeDeclaration" })
/** @since 0.1.0 */
export type ProbeDeclaration = typeof ProbeDeclaration.Type

/**
 * The whole file: probe name → declaration.
 *
 * @since 0.1.0
 */
export const HealthChecks = JsonRecord(ProbeDeclaration).annotations({ identifier: "HealthChecks" })
/** @since 0.1.0 */
export type HealthChecks = typeof HealthChecks.Type

/**
 * The declarations file exists but cannot be used: unreadable, not JSON, or not a valid
 * declaration set (a probe without `kind`, a port out of range…).
 *
 * @since 0.1.0
 */
export class HealthChecksError extends Data.TaggedError("HealthChecksError")<{
  readonly file: string
  readonly reason: string
}> {
  override get message(): string {
    return `health checks ${this.file}: ${this.reason}`
  }
}

/**
 * Declaration files that could not be used (each failed read counts once).
 *
 * @since 0.1.0
 */
export const invalidHealthChecks = Metric.counter("nixfleet_agent_health_checks_invalid_total", {
  description: "Reads of the health-checks file that failed (unreadable or invalid)",
  incremental: true
})

const decode = Schema.decodeUnknown(Schema.parseJson(HealthChecks))

const KNOWN_MODES = new Set<unknown>(["enforce", "observe", "disabled"])

/** Where an operator wrote a mode that is read as `enforce`, so that the typo is loud. */
const unknownModes = (text: string): ReadonlyArray<string> => {
  const found: Array<string> = []
  const visit = (where: string, entry: unknown) => {
    if (typeof entry === "object" && entry !== null && "mode" in entry && !KNOWN_MODES.has(entry.mode)) {
      found.push(`${where}: ${JSON.stringify(entry.mode)}`)
    }
  }
  const probes: unknown = JSON.parse(text)
  if (typeof probes !== "object" || probes === null) return found
  for (const [name, probe] of Object.entries(probes)) {
    visit(name, probe)
    if (typeof probe !== "object" || probe === null) continue
    for (const key of ["controlOverrides", "controls"] as const) {
      const map: unknown = (probe as Record<string, unknown>)[key]
      if (typeof map !== "object" || map === null) continue
      for (const [control, entry] of Object.entries(map)) visit(`${name}.${key}.${control}`, entry)
    }
  }
  return found
}

/**
 * Reads the declarations, in the file's order. A missing file declares no probe (logged at
 * info). An unreadable or invalid file is a `HealthChecksError`, logged and counted: the
 * caller must not keep a previous declaration in its place.
 *
 * @since 0.1.0
 */
export const loadHealthChecks: (
  file: string
) => Effect.Effect<
  ReadonlyArray<{ readonly name: string } & ProbeDeclaration>,
  HealthChecksError,
  FileSystem.FileSystem
> = Effect.fn("loadHealthChecks")(
  function*(file: string) {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file).pipe(
      Effect.map((text): string | null => text),
      Effect.catchIf(
        (error) => error._tag === "SystemError" && error.reason === "NotFound",
        () => Effect.as(Effect.logInfo(`no health checks file at ${file}: no probes`), null)
      ),
      Effect.mapError((error) => new HealthChecksError({ file, reason: `cannot read: ${error.message}` }))
    )
    if (text === null) return []
    const declarations = yield* decode(text).pipe(
      Effect.mapError((error) => new HealthChecksError({ file, reason: `invalid: ${describeParseError(error)}` }))
    )
    for (const where of unknownModes(text)) {
      yield* Effect.logWarning(`health checks ${file}: unknown mode at ${where}, read as "enforce"`)
    }
    return Object.entries(declarations).map(([name, declaration]) => ({ name, ...declaration }))
  },
  Effect.tapError((error) => Effect.zipRight(Effect.logError(error.message), Metric.increment(invalidHealthChecks)))
)
