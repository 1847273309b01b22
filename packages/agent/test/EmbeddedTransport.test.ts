/**
 * An embedded agent keeps its own transport: an `HttpClient` in the embedding program's
 * context (which would drop the CA, the client certificate and the loopback-only rule for
 * plain http) is never used to talk to the control plane.
 */
import { HttpClient, HttpClientError } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { start } from "@nixfleet/dev-control-plane"
import { Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { PRIOR, TARGET } from "./support/fixtures.js"

const HOST = "web-01"

describe("an embedded agent's transport", () => {
  it.scopedLive(
    "an ambient HttpClient sees no request; the agent converges over its own",
    () =>
      Effect.gen(function*() {
        const cp = yield* start()
        const dir = yield* stateDirectory
        Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
        const seen: Array<string> = []
        // The embedder's client records every request and refuses it.
        const ambient = Layer.succeed(
          HttpClient.HttpClient,
          HttpClient.make((request) =>
            Effect.suspend(() => {
              seen.push(`${request.method} ${request.url}`)
              return Effect.fail(
                new HttpClientError.RequestError({ request, reason: "Transport", description: "the embedder's client" })
              )
            })
          )
        )
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        yield* startAgent(
          { machineId: HOST, stateDir: dir, controlPlaneUrl: cp.url, trustFile: cp.trustFile },
          { ambientHttpClient: ambient }
        )
        yield* eventually(
          "Converged",
          Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state === "Converged"),
          30_000
        )
        expect(seen).toStrictEqual([])
      }),
    60_000
  )
})
