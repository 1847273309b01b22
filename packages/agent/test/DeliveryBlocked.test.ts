/**
 * Delivery blocked by the control plane's refusal of the agent itself (401): the agent and
 * the dev control plane in one process, over real HTTP. Events are held in order, `status`
 * and the gauge say so, the journal has one line when the block starts and one when it
 * clears, and then every event is delivered once, in order, with its stored body.
 */
import { describe, expect, it } from "@effect/vitest"
import { start } from "@nixfleet/dev-control-plane"
import { Context, Effect, Metric } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { renderStatus } from "../src/cli/StatusTable.js"
import { deliveryBlocked } from "../src/controlplane/OutboundSender.js"
import { labelEffect } from "../src/observability/Metrics.js"
import { Outbox } from "../src/outbox/Outbox.js"
import { AgentStatus } from "../src/status/AgentStatus.js"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { PRIOR, TARGET } from "./support/fixtures.js"

const HOST = "web-01"

interface Envelope {
  readonly rolloutId: string
  readonly event: { readonly kind: string; readonly seq: number }
}

// The agent's series carry its machine id.
const gauge = (status: number) =>
  Effect.map(Metric.value(Metric.tagged(deliveryBlocked, "status", String(status))), (state) => state.value).pipe(
    labelEffect(HOST)
  )

describe("delivery blocked by a 401", () => {
  it.scopedLive(
    "holds every event in order, says so once, and delivers them all once it clears",
    () =>
      Effect.gen(function*() {
        const cp = yield* start()
        const dir = yield* stateDirectory
        Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
        yield* cp.setFault("events", { _tag: "Status", status: 401, body: "{\"error\":\"certificate revoked\"}" })
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        const agent = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        const status = Context.get(agent.context, AgentStatus)
        const outbox = Context.get(agent.context, Outbox)
        const eventTries = Effect.map(
          cp.requests,
          (requests) => requests.filter((r) => r.path === "/v1/agent/events" && r.status === 401).length
        )

        // The rollout goes on locally (test mode) while nothing reaches the control plane.
        yield* eventually(
          "the rollout's events to queue up behind the block, tried a few times",
          Effect.gen(function*() {
            const report = yield* status.report
            return report.deliveryBlocked !== undefined && (report.outbox?.depth ?? 0) >= 4 &&
              (yield* eventTries) >= 3
          }),
          30_000
        )
        const held = yield* Effect.orDie(outbox.head(100))
        const report = yield* status.report
        const url = `${cp.url}/v1/agent/events`
        expect(report.deliveryBlocked).toMatchObject({
          status: 401,
          url,
          reason: "{\"error\":\"certificate revoked\"}"
        })
        expect(renderStatus(report, []).split("\n")[1]).toMatch(
          new RegExp(
            `^delivery blocked: 401 from ${url} since \\S+ \\(\\{"error":"certificate revoked"\\}\\); events are held`
          )
        )
        expect(yield* gauge(401)).toBe(1)
        expect(report.outbox?.deadLetters).toBe(0)
        expect(yield* cp.events).toStrictEqual([])
        const blockedLines = (yield* agent.logs).filter((line) => line.includes("delivery blocked"))
        expect(blockedLines).toHaveLength(1)
        expect(blockedLines[0]).toMatch(new RegExp(`^ERROR delivery blocked: 401 from ${url} `))

        yield* cp.setFault("events", undefined)
        yield* eventually(
          "the held events to be delivered",
          Effect.map(Effect.orDie(outbox.pendingCount()), (n) => n === 0),
          90_000
        )
        const accepted = yield* cp.events
        const sent = accepted.map((a) => a.envelope as Envelope)
        expect(accepted.map((a) => a.duplicate)).toStrictEqual(sent.map(() => false))
        // In order, once per (rolloutId, seq): 1, 2, 3, … with no gap and no repeat.
        expect(sent.map((e) => e.rolloutId)).toStrictEqual(sent.map(() => rolloutId))
        expect(sent.map((e) => e.event.seq)).toStrictEqual(sent.map((_, i) => i + 1))
        // Every held event went out with the body it was stored with.
        for (const row of held) {
          expect(sent.find((e) => e.event.seq === row.seq)?.event, `seq ${row.seq}`).toStrictEqual(
            JSON.parse(row.body)
          )
        }
        const after = yield* status.report
        expect(after.deliveryBlocked).toBeUndefined()
        // The headline line is gone (the last error still names the block, with its time).
        expect(renderStatus(after, [])).not.toMatch(/^delivery blocked/m)
        expect(yield* gauge(401)).toBe(0)
        const lines = yield* agent.logs
        expect(lines.filter((line) => line.includes("delivery blocked"))).toHaveLength(1)
        expect(lines.filter((line) => line.includes("delivery unblocked"))).toHaveLength(1)
        expect(lines.filter((line) => line.startsWith("WARN event delivery failed"))).toStrictEqual([])
      }),
    150_000
  )
})
