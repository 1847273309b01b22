/**
 * The test gates: environment switches that make the agent lie about what it does
 * (activations reported without running, no probe run, a reducer that stops answering, a
 * worker that dies).
 * A gate is on only for a documented true value (`1`, `true`, `yes`, any case) and off for
 * a false one (`0`, `false`, `no`, empty, or unset); anything else is a configuration error
 * naming the key, so that a typo never silently turns a gate on (upstream's gates turn on
 * for any value, `=0` included). While one is on, the agent says so at start and every
 * hour (WARN), in `status` and as `nixfleet_agent_test_mode{gate="<key>"} 1`.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"

/**
 * A test gate that is on: the agent does not really do what it reports.
 *
 * @since 0.1.0
 */
export const TestGateOn = Schema.Struct({
  /** The environment variable, e.g. `NIXFLEET_AGENT_ACTIVATION_TEST_MODE`. */
  gate: Schema.String,
  value: Schema.String,
  /** What the agent does not do while it is on. */
  effect: Schema.String
})

/** @internal */
export const ACTIVATION_TEST_MODE = "NIXFLEET_AGENT_ACTIVATION_TEST_MODE"
/** @internal */
export const PROBE_TEST_MODE = "NIXFLEET_AGENT_PROBE_TEST_MODE"
/**
 * Not a switch but a number of seconds (the reducer stops answering that long after start);
 * `0`, `false`, `no` or empty leave it off like the others.
 *
 * @internal
 */
export const WEDGE_REDUCER = "NIXFLEET_AGENT_TEST_WEDGE_REDUCER_AFTER_SECS"
/**
 * Not a switch but `<worker>[:<seconds>]`: the named supervised worker dies that many
 * seconds after the process started (at once without them), in every run of the process;
 * `0`, `false`, `no` or empty leave it off like the others.
 *
 * @internal
 */
export const FAIL_WORKER = "NIXFLEET_AGENT_TEST_FAIL_WORKER"

/**
 * The supervised workers' names, as the runtime forks them (`forkWorker`): what
 * {@link FAIL_WORKER} may name. Renewal and the metrics workers run only when configured.
 *
 * @internal
 */
export const WORKER_NAMES: ReadonlyArray<string> = [
  "Reducer",
  "ActivationWorker",
  "OutboundSender",
  "Longpoll",
  "Heartbeat",
  "ManifestPoll",
  "ProbeScheduler",
  "AdvanceTicker",
  "AgentStatus.lifecycle",
  "AgentStatus.writer",
  "CertificateRenewal",
  "MetricsExporter.bind",
  "MetricsExporter.textfile"
]

/** @internal */
export const TRUE_VALUES: ReadonlyArray<string> = ["1", "true", "yes"]
/** @internal */
export const FALSE_VALUES: ReadonlyArray<string> = ["0", "false", "no", ""]

const MAX_SHOWN = 40

const shown = (text: string) => JSON.stringify(text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}…` : text)

/**
 * Whether `text` turns a switch gate on, or why it is not a gate value.
 *
 * @internal
 */
export const parseSwitch = (key: string, text: string): Either.Either<boolean, string> => {
  const value = text.trim().toLowerCase()
  if (TRUE_VALUES.includes(value)) return Either.right(true)
  if (FALSE_VALUES.includes(value)) return Either.right(false)
  return Either.left(
    `${key}=${shown(text)} is not a test gate value: 1, true or yes turn it on; 0, false, no or empty leave it off`
  )
}

/**
 * The seconds of the reducer wedge, `null` when off, or why the value is not one.
 *
 * @internal
 */
export const parseWedge = (text: string): Either.Either<number | null, string> => {
  const value = text.trim().toLowerCase()
  if (FALSE_VALUES.includes(value)) return Either.right(null)
  const seconds = Number(value)
  return /^\d+(\.\d+)?$/.test(value) && seconds > 0
    ? Either.right(seconds)
    : Either.left(
      `${WEDGE_REDUCER}=${shown(text)} is not a number of seconds (> 0); 0, false, no or empty leave it off`
    )
}

/**
 * Which worker {@link FAIL_WORKER} fails and after how many seconds of the process's life.
 *
 * @internal
 */
export interface FailWorker {
  readonly worker: string
  readonly afterSeconds: number
}

/**
 * The worker to fail, `null` when off, or why the value is not one.
 *
 * @internal
 */
export const parseFailWorker = (text: string): Either.Either<FailWorker | null, string> => {
  const value = text.trim()
  if (FALSE_VALUES.includes(value.toLowerCase())) return Either.right(null)
  const [worker = "", seconds, ...rest] = value.split(":")
  const afterSeconds = seconds === undefined ? 0 : Number(seconds)
  if (!WORKER_NAMES.includes(worker)) {
    return Either.left(
      `${FAIL_WORKER}=${shown(text)} does not name a worker: <worker>[:<seconds>] with a worker among ${
        WORKER_NAMES.join(", ")
      }; 0, false, no or empty leave it off`
    )
  }
  return rest.length === 0 && (seconds === undefined || /^\d+(\.\d+)?$/.test(seconds))
    ? Either.right({ worker, afterSeconds })
    : Either.left(`${FAIL_WORKER}=${shown(text)}: the delay after ${worker} is not a number of seconds`)
}

const read = <A>(key: string, parse: (text: string) => Either.Either<A, string>, off: A): Config.Config<A> =>
  Config.option(Config.string(key)).pipe(
    Config.mapOrFail((text) =>
      Option.match(text, {
        onNone: () => Either.right(off),
        onSome: (given) => Either.mapLeft(parse(given), (message) => ConfigError.InvalidData([key], message))
      })
    )
  )

/**
 * A switch gate from the current `ConfigProvider`; fails (naming the key) on a value that
 * is neither true nor false.
 *
 * @internal
 */
export const switchGate = (key: string): Config.Config<boolean> => read(key, (text) => parseSwitch(key, text), false)

/**
 * The reducer wedge's seconds, `null` when off.
 *
 * @internal
 */
export const wedgeGate: Config.Config<number | null> = read(WEDGE_REDUCER, parseWedge, null)

/**
 * The worker {@link FAIL_WORKER} fails, `null` when off.
 *
 * @internal
 */
export const failWorkerGate: Config.Config<FailWorker | null> = read(FAIL_WORKER, parseFailWorker, null)

/**
 * One gate that is on, as `status` shows it.
 *
 * @internal
 */
export interface GateOn {
  readonly gate: string
  readonly value: string
  readonly effect: string
}

const EFFECTS: Readonly<Record<string, string>> = {
  [ACTIVATION_TEST_MODE]: "activations and rollbacks are NOT run, only reported as succeeded",
  [PROBE_TEST_MODE]: "health probes are NOT run",
  [WEDGE_REDUCER]: "the reducer stops answering after the given seconds (the watchdog then restarts the agent)",
  [FAIL_WORKER]: "the named worker dies the given seconds after start (the agent then exits 70), in every run"
}

/**
 * Every gate's key, for the metric's zeroes.
 *
 * @internal
 */
export const GATES: ReadonlyArray<string> = [ACTIVATION_TEST_MODE, PROBE_TEST_MODE, WEDGE_REDUCER, FAIL_WORKER]

/**
 * The gates that are on; fails with a `ConfigError` naming the key of a value that is not
 * a gate value (the agent then does not start: exit 78).
 *
 * @internal
 */
export const gatesOn: Config.Config<ReadonlyArray<GateOn>> = Config.all([
  Config.all([switchGate(ACTIVATION_TEST_MODE), switchGate(PROBE_TEST_MODE), wedgeGate, failWorkerGate]),
  Config.all(GATES.map((key) => Config.option(Config.string(key))))
]).pipe(
  Config.map(([[activation, probe, wedge, failWorker], texts]) =>
    GATES.flatMap((gate, index) => {
      const on = [activation, probe, wedge !== null, failWorker !== null][index] === true
      const text = texts[index]
      return on && text !== undefined && Option.isSome(text)
        ? [{ gate, value: text.value, effect: EFFECTS[gate] ?? "" }]
        : []
    })
  )
)

/**
 * `nixfleet_agent_test_mode{gate}`: 1 while the gate is on, 0 otherwise.
 *
 * @internal
 */
export const testModeGauge = Metric.gauge("nixfleet_agent_test_mode", {
  description: "1 while a test gate is on (the agent does not really activate, probe, …), by gate; 0 otherwise"
})

/** How often a gate that is on is said again. */
export const ANNOUNCE_INTERVAL = "1 hour"

/**
 * Sets the gauge and logs one WARN per gate that is on, now and every hour, in a fiber of
 * the current scope.
 *
 * @internal
 */
export const announceGates = (gates: ReadonlyArray<GateOn>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.forEach(
      GATES,
      (gate) => Metric.set(Metric.tagged(testModeGauge, "gate", gate), gates.some((on) => on.gate === gate) ? 1 : 0)
    )
    if (gates.length === 0) return
    const announce = Effect.forEach(
      gates,
      (on) =>
        Effect.logWarning(`TEST GATE ON: ${on.gate}=${on.value}: ${on.effect}; never set it on a real host`).pipe(
          Effect.annotateLogs({ gate: on.gate, value: on.value })
        ),
      { discard: true }
    )
    yield* announce.pipe(Effect.repeat(Schedule.spaced(ANNOUNCE_INTERVAL)), Effect.forkScoped)
  })
