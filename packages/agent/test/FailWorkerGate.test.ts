/**
 * `NIXFLEET_AGENT_TEST_FAIL_WORKER=<worker>[:<seconds>]`, the test gate that kills a
 * supervised worker in a separate process: parsed as strictly as the other gates (a value
 * that names no worker is a configuration error naming the key, exit 78), loud while on,
 * and `run` with it exits 70 (EX_SOFTWARE) after one ERROR line naming the worker.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Option, Schema } from "effect"
import * as Path from "node:path"
import { FAIL_WORKER, failWorkerGate, gatesOn, parseFailWorker, WORKER_NAMES } from "../src/config/testGates.js"
import { stateDirectory } from "./support/agentHarness.js"
import { AGENT, spawnScript } from "./support/processes.js"
import { makeSigner, writeTrustFile } from "./support/signing.js"

const withEnv = (entries: Readonly<Record<string, string>>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(entries))))

describe("the fail-worker gate's value", () => {
  it.effect("a documented worker, with an optional delay in seconds; 0, false, no, empty or unset: off", () =>
    Effect.gen(function*() {
      expect(parseFailWorker("OutboundSender")).toStrictEqual(
        Either.right({ worker: "OutboundSender", afterSeconds: 0 })
      )
      expect(parseFailWorker(" AgentStatus.writer:2.5 ")).toStrictEqual(
        Either.right({ worker: "AgentStatus.writer", afterSeconds: 2.5 })
      )
      for (const off of ["0", "false", "No", ""]) expect(parseFailWorker(off), off).toStrictEqual(Either.right(null))
      expect(yield* failWorkerGate.pipe(withEnv({}))).toBeNull()
      const gates = yield* gatesOn.pipe(withEnv({ [FAIL_WORKER]: "Heartbeat:3" }))
      expect(gates).toStrictEqual([{
        gate: FAIL_WORKER,
        value: "Heartbeat:3",
        effect: expect.stringContaining("dies")
      }])
    }))

  it.effect("anything else is a configuration error naming the key", () =>
    Effect.gen(function*() {
      for (
        const bad of [
          "1",
          "Sender",
          "outboundsender",
          "OutboundSender:",
          "OutboundSender:soon",
          "Heartbeat:-1",
          "Heartbeat:1:2"
        ]
      ) {
        const error = yield* Effect.flip(gatesOn.pipe(withEnv({ [FAIL_WORKER]: bad })))
        expect(String(error), bad).toContain(`${FAIL_WORKER}=${JSON.stringify(bad)}`)
      }
      const error = yield* Effect.flip(failWorkerGate.pipe(withEnv({ [FAIL_WORKER]: "Sender" })))
      expect(String(error)).toContain(WORKER_NAMES.join(", "))
    }))
})

const LogLine = Schema.parseJson(Schema.Struct({ message: Schema.String, logLevel: Schema.String }))

/** `run` against a control plane nobody listens on: boot recovery gives up, the workers keep retrying. */
const runAgent = (gate: string) =>
  Effect.gen(function*() {
    const dir = yield* stateDirectory
    const agent = yield* spawnScript("agent", AGENT, [
      "run",
      "--control-plane-url",
      "http://127.0.0.1:1",
      "--machine-id",
      "web-01",
      "--state-dir",
      Path.join(dir, "state"),
      "--trust-file",
      writeTrustFile(dir, makeSigner()),
      "--log-format",
      "json"
    ], { [FAIL_WORKER]: gate })
    const exit = yield* agent.awaitExit(60_000)
    return { exit, stderr: agent.stderr() }
  })

describe("`run` with the fail-worker gate", () => {
  it.scopedLive(
    "the worker dies: one ERROR line naming it, exit 70",
    () =>
      Effect.gen(function*() {
        const { exit, stderr } = yield* runAgent("OutboundSender:1")
        expect(exit, stderr.join("\n")).toStrictEqual({ code: 70, signal: null })
        const lines = stderr.flatMap((line) => Option.toArray(Schema.decodeUnknownOption(LogLine)(line)))
        const errors = lines.filter((line) => line.logLevel === "ERROR")
        expect(errors.map((line) => line.message)).toStrictEqual(["worker OutboundSender failed; the agent stops"])
        expect(
          lines.some((line) => line.logLevel === "WARN" && line.message.startsWith(`TEST GATE ON: ${FAIL_WORKER}=`))
        )
          .toBe(true)
      }),
    90_000
  )

  it.scopedLive(
    "a value that names no worker: exit 78 with one line naming the key",
    () =>
      Effect.gen(function*() {
        const { exit, stderr } = yield* runAgent("Sender")
        expect(exit, stderr.join("\n")).toStrictEqual({ code: 78, signal: null })
        expect(stderr).toHaveLength(1)
        expect(stderr[0]).toContain(`${FAIL_WORKER}="Sender" does not name a worker`)
      }),
    90_000
  )
})
