/**
 * Whom the control-plane client trusts, with real handshakes against TLS dev control
 * planes (each with a CA of its own): with `--ca-cert` that CA alone, without it the
 * system store (`SSL_CERT_FILE`, else the system bundle, else Node's roots), and never
 * less because `NODE_TLS_REJECT_UNAUTHORIZED=0` is in the environment.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, start } from "@nixfleet/dev-control-plane"
import { ConfigProvider, Effect, Either, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { Agent, request } from "undici"
import { AgentConfig, type AgentConfigShape } from "../src/config/AgentConfig.js"
import {
  type ClientSetupError,
  controlPlaneTrust,
  SYSTEM_CA_BUNDLES,
  trustOptions
} from "../src/controlplane/ControlPlaneHttp.js"
import * as ControlPlaneHttp from "../src/controlplane/ControlPlaneHttp.js"
import { stateDirectory } from "./support/agentHarness.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"

const TIMEOUT = 30_000

type Transport = Layer.Layer<HttpClient.HttpClient, ClientSetupError, AgentConfig>

const TRANSPORTS: ReadonlyArray<readonly [string, Transport]> = [
  ["ControlPlaneHttp", ControlPlaneHttp.layer],
  ["ControlPlaneHttpAnonymous", ControlPlaneHttp.layerAnonymous]
]

/** Two control planes: the one the agent talks to, and one whose CA did not sign its certificate. */
const controlPlanes = Effect.all({ cp: start({ tls: true }), foreign: start({ tls: true }) })

const caOf = (cp: DevControlPlane) => Fs.readFileSync(cp.caFile ?? "", "utf8")

const configFor = (cp: DevControlPlane, dir: string, overrides: Partial<AgentConfigShape> = {}) =>
  AgentConfig.make({ machineId: "web-01", stateDir: dir, controlPlaneUrl: cp.url, ...overrides })

/** `GET /healthz` through a transport: the status, or the reason the request failed. */
const healthz = (transport: Transport, config: Layer.Layer<AgentConfig>, cp: DevControlPlane) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.get(`${cp.url}/healthz`)
    return response.status
  }).pipe(
    Effect.scoped,
    Effect.provide(transport.pipe(Layer.provide(config))),
    Effect.mapError((error) =>
      error._tag === "ClientSetupError"
        ? error.message
        : String(error.cause instanceof Error ? (error.cause as NodeJS.ErrnoException).code : error.message)
    ),
    Effect.either
  )

/** The handshake error of a client that does not trust the server's CA. */
const UNTRUSTED = Either.left(expect.stringMatching(/^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)$/))

/** `NODE_TLS_REJECT_UNAUTHORIZED=0` for the rest of the scope, then as it was. */
const tlsVerificationDisabledInEnvironment = Effect.acquireRelease(
  Effect.sync(() => {
    const previous = process.env["NODE_TLS_REJECT_UNAUTHORIZED"]
    process.env["NODE_TLS_REJECT_UNAUTHORIZED"] = "0"
    return previous
  }),
  (previous) =>
    Effect.sync(() => {
      if (previous === undefined) delete process.env["NODE_TLS_REJECT_UNAUTHORIZED"]
      else process.env["NODE_TLS_REJECT_UNAUTHORIZED"] = previous
    })
)

const withSettings = (settings: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(settings))))

describe("TLS trust with --ca-cert", () => {
  it("trustOptions trusts exactly the roots it is given, and always verifies", () => {
    expect(trustOptions(["CA PEM"])).toStrictEqual({ ca: ["CA PEM"], rejectUnauthorized: true })
  })

  it.scopedLive("the configured CA is the only root: Node's bundled roots are not added", () =>
    Effect.gen(function*() {
      const { cp } = yield* controlPlanes
      const dir = yield* stateDirectory
      const trust = yield* controlPlaneTrust.pipe(Effect.provide(configFor(cp, dir, { caCert: cp.caFile })))
      expect(trust).toStrictEqual({
        _tag: "Tls",
        roots: "ca-cert",
        store: cp.caFile,
        options: { ca: [caOf(cp)], rejectUnauthorized: true }
      })
      if (trust._tag === "Tls") {
        for (const root of Tls.rootCertificates) expect(trust.options.ca).not.toContain(root)
      }
    }), TIMEOUT)

  it.scopedLive(
    "a server whose certificate another CA signed is refused; the configured CA's is accepted",
    () =>
      Effect.gen(function*() {
        const { cp, foreign } = yield* controlPlanes
        const dir = yield* stateDirectory
        for (const [name, transport] of TRANSPORTS) {
          expect(yield* healthz(transport, configFor(cp, dir, { caCert: foreign.caFile }), cp), name).toStrictEqual(
            UNTRUSTED
          )
          expect(yield* healthz(transport, configFor(cp, dir, { caCert: cp.caFile }), cp), name).toStrictEqual(
            Either.right(200)
          )
        }
      }),
    TIMEOUT
  )
})

describe("NODE_TLS_REJECT_UNAUTHORIZED=0", () => {
  it.scopedLive(
    "does not turn verification off for the control plane, and is reported once per client",
    () =>
      Effect.gen(function*() {
        const { cp, foreign } = yield* controlPlanes
        const dir = yield* stateDirectory
        yield* tlsVerificationDisabledInEnvironment
        // The variable is in force: a client that leaves rejectUnauthorized to Node's default
        // takes the server it cannot verify.
        const lax = new Agent({ connect: { ca: [caOf(foreign)] } })
        yield* Effect.addFinalizer(() => Effect.promise(() => lax.destroy()))
        const answered = yield* Effect.promise(() => request(`${cp.url}/healthz`, { dispatcher: lax }))
        expect(answered.statusCode).toBe(200)
        yield* Effect.promise(() => answered.body.dump())

        for (const [name, transport] of TRANSPORTS) {
          const logs = yield* Effect.gen(function*() {
            expect(yield* healthz(transport, configFor(cp, dir, { caCert: foreign.caFile }), cp), name).toStrictEqual(
              UNTRUSTED
            )
            return yield* CapturedLogs.lines
          }).pipe(Effect.provide(captureLogs))
          expect(logs.filter((line) => line.startsWith("WARN")), name).toStrictEqual([
            "WARN NODE_TLS_REJECT_UNAUTHORIZED=0 is ignored for the control plane: its certificate is always verified"
          ])
        }
      }),
    TIMEOUT
  )

  it.scopedLive("is not reported when it is not 0", () =>
    Effect.gen(function*() {
      const { cp } = yield* controlPlanes
      const dir = yield* stateDirectory
      const logs = yield* Effect.gen(function*() {
        expect(yield* healthz(ControlPlaneHttp.layer, configFor(cp, dir, { caCert: cp.caFile }), cp)).toStrictEqual(
          Either.right(200)
        )
        return yield* CapturedLogs.lines
      }).pipe(Effect.provide(captureLogs), withSettings({ NODE_TLS_REJECT_UNAUTHORIZED: "1" }))
      expect(logs.filter((line) => line.startsWith("WARN"))).toStrictEqual([])
    }), TIMEOUT)
})

describe("TLS trust without --ca-cert: the system store", () => {
  const bundle = (dir: string, name: string, roots: ReadonlyArray<string>) => {
    const file = Path.join(dir, name)
    Fs.writeFileSync(file, roots.join("\n"))
    return file
  }

  it.scopedLive(
    "SSL_CERT_FILE names the bundle: a server its CAs signed is trusted, another is not",
    () =>
      Effect.gen(function*() {
        const { cp, foreign } = yield* controlPlanes
        const dir = yield* stateDirectory
        const system = bundle(dir, "ca-bundle.crt", [...Tls.rootCertificates.slice(0, 5), caOf(cp)])
        for (const [name, transport] of TRANSPORTS) {
          const logs = yield* Effect.gen(function*() {
            expect(yield* healthz(transport, configFor(cp, dir), cp), name).toStrictEqual(Either.right(200))
            expect(yield* healthz(transport, configFor(foreign, dir), foreign), name).toStrictEqual(UNTRUSTED)
            return yield* CapturedLogs.lines
          }).pipe(Effect.provide(captureLogs), withSettings({ SSL_CERT_FILE: system }))
          expect(logs.filter((line) => line.includes("system CA store")), name).toStrictEqual([
            `INFO the control plane's certificate is checked against the system CA store: ${system}`,
            `INFO the control plane's certificate is checked against the system CA store: ${system}`
          ])
        }
        const trust = yield* controlPlaneTrust.pipe(
          Effect.provide(configFor(cp, dir)),
          withSettings({ SSL_CERT_FILE: system })
        )
        expect(trust).toMatchObject({
          roots: "system",
          store: system,
          options: { ca: [Fs.readFileSync(system, "utf8")] }
        })
      }),
    TIMEOUT
  )

  it.scopedLive(
    "SSL_CERT_FILE naming a file that is missing or holds no certificate stops the client",
    () =>
      Effect.gen(function*() {
        const { cp } = yield* controlPlanes
        const dir = yield* stateDirectory
        const empty = bundle(dir, "empty.crt", [])
        const bad: ReadonlyArray<readonly [string, string]> = [
          [Path.join(dir, "missing.crt"), "cannot read the CA bundle"],
          [empty, "no PEM certificate"]
        ]
        for (const [file, reason] of bad) {
          expect(
            yield* healthz(ControlPlaneHttp.layer, configFor(cp, dir), cp).pipe(withSettings({ SSL_CERT_FILE: file }))
          )
            .toStrictEqual(Either.left(expect.stringContaining(reason)))
        }
      }),
    TIMEOUT
  )

  it.scopedLive(
    "without SSL_CERT_FILE, the first system bundle that exists (else Node's roots): the dev CA is not in it",
    () =>
      Effect.gen(function*() {
        const { cp } = yield* controlPlanes
        const dir = yield* stateDirectory
        const expected = SYSTEM_CA_BUNDLES.find((file) => Fs.existsSync(file)) ?? "Node's bundled roots"
        const logs = yield* Effect.gen(function*() {
          expect(yield* healthz(ControlPlaneHttp.layer, configFor(cp, dir), cp)).toStrictEqual(UNTRUSTED)
          return yield* CapturedLogs.lines
        }).pipe(Effect.provide(captureLogs), withSettings({}))
        expect(logs.filter((line) => line.includes("system CA store"))).toStrictEqual([
          `INFO the control plane's certificate is checked against the system CA store: ${expected}`
        ])
        const trust = yield* controlPlaneTrust.pipe(Effect.provide(configFor(cp, dir)), withSettings({}))
        expect(trust).toMatchObject({
          roots: "system",
          store: expected,
          options: {
            ca: expected === "Node's bundled roots" ? Tls.rootCertificates : [Fs.readFileSync(expected, "utf8")]
          }
        })
      }),
    TIMEOUT
  )
})
