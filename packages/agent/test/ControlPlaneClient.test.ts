import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentConfig } from "../src/config/AgentConfig.js"
import { ControlPlaneClient, ControlPlaneTransport, MAX_BODY_BYTES } from "../src/controlplane/ControlPlaneClient.js"
import { isLoopback } from "../src/controlplane/ControlPlaneHttp.js"
import * as ControlPlaneHttp from "../src/controlplane/ControlPlaneHttp.js"
import { type Answer, fakeControlPlane, type RecordedRequest } from "./support/fakeControlPlane.js"

const withClient = <A, E>(
  script: (request: RecordedRequest, index: number) => Answer,
  body: (fake: { readonly requests: () => ReadonlyArray<RecordedRequest> }) => Effect.Effect<A, E, ControlPlaneClient>
) =>
  Effect.gen(function*() {
    const fake = yield* fakeControlPlane(script)
    return yield* Effect.provide(
      body(fake),
      ControlPlaneClient.layer.pipe(
        Layer.provide(ControlPlaneTransport.layer),
        Layer.provide(AgentConfig.make({ machineId: "web-01", stateDir: "/nonexistent", controlPlaneUrl: fake.url }))
      )
    )
  })

const at = new Date("2026-05-17T12:00:00Z")

describe("ControlPlaneClient", () => {
  it.scopedLive("every request carries X-Nixfleet-Protocol: 1; the heartbeat body is the upstream snake_case", () =>
    withClient(
      () => ({ status: 200, body: "{\"received_at\":\"2026-05-17T12:00:00Z\"}" }),
      (fake) =>
        Effect.gen(function*() {
          const client = yield* ControlPlaneClient
          const answer = yield* client.heartbeat(
            { hostname: "web-01", rolloutId: null, currentClosure: "abc", at },
            "5 seconds"
          )
          expect(answer.response.bootstrapRollouts).toStrictEqual([])
          yield* Effect.either(client.dispatch(0))
          yield* Effect.either(client.fleetResolved)
          for (const request of fake.requests()) expect(request.headers["x-nixfleet-protocol"], request.url).toBe("1")
          expect(JSON.parse(fake.requests()[0]!.body)).toStrictEqual({
            hostname: "web-01",
            current_closure: "abc",
            at: "2026-05-17T12:00:00Z"
          })
        })
    ))

  it.scopedLive("a dispatch answered 204, empty or null is no work; a body decodes the snake_case dispatch", () =>
    withClient((_, index) =>
      [
        { status: 204 },
        { status: 200, body: "" },
        { status: 200, body: "null" },
        {
          status: 200,
          body: JSON.stringify({
            hostname: "web-01",
            rollout_id: "stable@abc",
            target_closure: "x",
            soak_due_at: "2026-05-17T12:20:00Z",
            enqueued_at: "2026-05-17T11:50:00Z"
          })
        }
      ][index] ?? { status: 204 }, () =>
      Effect.gen(function*() {
        const client = yield* ControlPlaneClient
        expect(yield* client.dispatch(0)).toBeNull()
        expect(yield* client.dispatch(0)).toBeNull()
        expect(yield* client.dispatch(0)).toBeNull()
        expect(yield* client.dispatch(0)).toMatchObject({
          hostname: "web-01",
          rolloutId: "stable@abc",
          targetClosure: "x"
        })
      })))

  it.scopedLive("503 carries its Retry-After; garbage and wrong shapes are bad responses, never crashes", () =>
    withClient((_, index) =>
      [
        { status: 503, headers: { "retry-after": "30" }, body: "{\"error\":\"control plane not ready\"}" },
        { status: 200, body: "<html>not json</html>" },
        { status: 200, body: "{\"hostname\":1}" }
      ][index] ?? { status: 500 }, () =>
      Effect.gen(function*() {
        const client = yield* ControlPlaneClient
        const notReady = yield* Effect.flip(client.dispatch(0))
        expect(notReady).toMatchObject({ _tag: "StatusError", status: 503, retryAfterSecs: 30 })
        expect(notReady.message).toContain("control plane not ready")
        expect(yield* Effect.flip(client.dispatch(0))).toMatchObject({
          _tag: "BadResponse",
          detail: "body is not JSON"
        })
        expect(yield* Effect.flip(client.dispatch(0))).toMatchObject({ _tag: "BadResponse" })
      })))

  it.scopedLive("an oversized body is refused after the cap, without reading it all", () =>
    Effect.gen(function*() {
      let sent = 0
      const server = Http.createServer((_, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        const chunk = Buffer.alloc(64 * 1024, " ")
        const pump = () => {
          while (sent < 200 * 1024 * 1024) {
            sent += chunk.length
            if (!res.write(chunk)) return res.once("drain", pump)
          }
          res.end()
        }
        res.on("error", () => undefined)
        pump()
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () => Effect.sync(() => server.closeAllConnections())
      )
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const before = process.memoryUsage().rss
      const result = yield* Effect.provide(
        Effect.flatMap(ControlPlaneClient, (client) => Effect.either(client.dispatch(0))),
        ControlPlaneClient.layer.pipe(
          Layer.provide(ControlPlaneTransport.layer),
          Layer.provide(AgentConfig.make({ machineId: "web-01", stateDir: "/nonexistent", controlPlaneUrl: url }))
        )
      )
      expect(Either.isLeft(result) && result.left).toMatchObject({
        _tag: "BadResponse",
        detail: `body larger than ${MAX_BODY_BYTES} bytes`
      })
      expect(sent).toBeLessThan(100 * 1024 * 1024)
      expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024)
    }))
})

describe("ControlPlaneHttp", () => {
  const build = (fields: Parameters<typeof AgentConfig.make>[0]) =>
    Effect.either(Layer.build(ControlPlaneHttp.layer.pipe(Layer.provide(AgentConfig.make(fields)))))

  it("plain http is only for loopback", () => {
    expect(["127.0.0.1", "127.3.4.5", "localhost", "[::1]"].every(isLoopback)).toBe(true)
    expect(["10.0.0.1", "example.com", "::ffff:10.0.0.1", "128.0.0.1"].some(isLoopback)).toBe(false)
  })

  it.scoped("refuses http:// to another host, unreadable files and a key that is not the certificate's", () =>
    Effect.gen(function*() {
      const base = { machineId: "web-01", stateDir: "/nonexistent" }
      expect(yield* build({ ...base, controlPlaneUrl: "http://cp.example.com" })).toMatchObject({
        _tag: "Left",
        left: { _tag: "ClientSetupError", detail: expect.stringContaining("refusing plain http://") }
      })
      expect(yield* build({ ...base, controlPlaneUrl: "ftp://x" })).toMatchObject({ _tag: "Left" })
      expect(yield* build({ ...base, controlPlaneUrl: "https://cp.example.com", caCert: "/nonexistent/ca.pem" }))
        .toMatchObject({
          _tag: "Left",
          left: { detail: expect.stringContaining("cannot read the CA certificate") }
        })
      expect(
        yield* build({ ...base, controlPlaneUrl: "https://cp.example.com", clientCert: "/x.pem", clientKey: null })
      )
        .toMatchObject({ _tag: "Left", left: { detail: "--client-cert and --client-key go together" } })
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-tls-"))
      Fs.writeFileSync(Path.join(dir, "garbage.pem"), "not a certificate")
      expect(
        yield* build({ ...base, controlPlaneUrl: "https://cp.example.com", caCert: Path.join(dir, "garbage.pem") })
      )
        .toMatchObject({ _tag: "Left", left: { detail: expect.stringContaining("invalid CA certificate") } })
      Fs.rmSync(dir, { recursive: true })
      expect(yield* build({ ...base, controlPlaneUrl: "http://127.0.0.1:1" })).toMatchObject({ _tag: "Right" })
    }))
})
