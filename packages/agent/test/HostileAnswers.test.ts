/**
 * A hostile control plane: every answer the agent reads (heartbeat, dispatch, fleet.resolved
 * and rollout manifests with their signatures, events, enroll, renew) served nested 10,000
 * levels deep, as a 500,000-element array, with 2^53 where an integer goes, with the wrong
 * types, with NUL and terminal escapes in strings, and with raw control bytes. Each is one
 * typed error with a short, escaped detail; the workers log it on one line and go on, and
 * the same agent completes a rollout once the control plane behaves.
 */
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, type Route, start } from "@nixfleet/dev-control-plane"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { TrustConfig, verifyArtifact } from "@nixfleet/proto"
import { Context, Effect, Either, Layer, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { AgentConfig } from "../src/config/AgentConfig.js"
import {
  ControlPlaneClient,
  type ControlPlaneClientService,
  ControlPlaneTransport
} from "../src/controlplane/ControlPlaneClient.js"
import { enrollAnonymously } from "../src/identity/Enrollment.js"
import { eventually, type RunningAgent, startAgent, stateDirectory } from "./support/agentHarness.js"
import { HOST_KEY_FILE, HOST_PUBKEY, HOST_SPKI } from "./support/certificates.js"
import { PRIOR, TARGET } from "./support/fixtures.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"
import { AGENT } from "./support/processes.js"

const REPO = Path.resolve(__dirname, "../../..")
const DAY = 24 * 3600_000
const AT = "2026-05-17T12:00:00Z"

// ---------------------------------------------------------------------------------------
// Hostile bodies
// ---------------------------------------------------------------------------------------

/** 10,000 nested arrays: what overflowed the stack of the error formatter. */
const DEEP = `${"[".repeat(10_000)}${"]".repeat(10_000)}`
/** 500,000 elements, about 1 MB: within the 4 MiB body cap. */
const HUGE = `[${new Array<string>(500_000).fill("0").join(",")}]`
/** 2^53: one past what a JavaScript number holds exactly. */
const TWO_POW_53 = "9007199254740992"
/** NUL, a clear-screen sequence and an OSC 52 clipboard write, as JSON string escapes. */
const ESCAPES = "\"web-01\\u0000\\u001b[2J\\u001b]52;c;ZXZpbA==\\u0007\""
/** The same bytes raw: not JSON. */
const RAW = "{\"hostname\":\"web-01\u0000\u001b[2J\u001b]52;c;ZXZpbA==\u0007\"}"

type Variant = "deep" | "huge" | "2^53" | "wrong types" | "escapes" | "raw bytes"

const snapshot = (fields: Readonly<Record<string, string>> = {}) => {
  const base: Record<string, string> = {
    rolloutId: "\"stable@abc123\"",
    hostname: "\"web-01\"",
    channel: "\"stable\"",
    state: "\"Pending\"",
    targetClosure: JSON.stringify(TARGET),
    dispatchedAt: JSON.stringify(AT),
    lastEventSeq: "0",
    ...fields
  }
  return `{${Object.entries(base).map(([key, value]) => `"${key}":${value}`).join(",")}}`
}

const heartbeatBodies: Record<Variant, string> = {
  deep: `{"received_at":"${AT}","bootstrap_rollouts":[${snapshot({ hostname: DEEP })}]}`,
  huge: `{"received_at":"${AT}","bootstrap_rollouts":${HUGE}}`,
  "2^53": `{"received_at":"${AT}","bootstrap_rollouts":[${snapshot({ lastEventSeq: TWO_POW_53 })}]}`,
  "wrong types": `{"received_at":"${AT}","bootstrap_rollouts":[${snapshot({ lastEventSeq: "\"7\"" })}]}`,
  escapes: `{"received_at":"${AT}","bootstrap_rollouts":[${snapshot({ hostname: ESCAPES })}]}`,
  "raw bytes": RAW
}

const dispatch = (fields: Readonly<Record<string, string>>) => {
  const base: Record<string, string> = {
    hostname: "\"web-01\"",
    rollout_id: "\"stable@abc123\"",
    target_closure: JSON.stringify(TARGET),
    soak_due_at: JSON.stringify(AT),
    enqueued_at: JSON.stringify(AT),
    ...fields
  }
  return `{${Object.entries(base).map(([key, value]) => `"${key}":${value}`).join(",")}}`
}

const dispatchBodies: Record<Variant, string> = {
  deep: dispatch({ hostname: DEEP }),
  huge: dispatch({ hostname: HUGE }),
  // No integer in a dispatch: 2^53 where a string goes.
  "2^53": dispatch({ rollout_id: TWO_POW_53 }),
  "wrong types": dispatch({ soak_due_at: "true" }),
  escapes: dispatch({ hostname: ESCAPES }),
  "raw bytes": RAW
}

const certificate = (fields: Readonly<Record<string, string>>) => {
  const base: Record<string, string> = {
    certPem: JSON.stringify("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    notAfter: JSON.stringify(AT),
    ...fields
  }
  return `{${Object.entries(base).map(([key, value]) => `"${key}":${value}`).join(",")}}`
}

const certificateBodies: Record<Variant, string> = {
  deep: certificate({ certPem: DEEP }),
  huge: certificate({ certPem: HUGE }),
  "2^53": certificate({ notAfter: TWO_POW_53 }),
  "wrong types": certificate({ certPem: "null" }),
  escapes: certificate({ certPem: ESCAPES }),
  "raw bytes": RAW
}

/** Served for an artifact and for its signature alike (a fault covers both). */
const artifactBodies: Record<Variant, string> = {
  deep: `{"schemaVersion":1,"meta":{"signedAt":"${AT}"},"hosts":${DEEP}}`,
  huge: `{"schemaVersion":1,"meta":{"signedAt":"${AT}"},"hosts":${HUGE}}`,
  "2^53": `{"schemaVersion":${TWO_POW_53},"meta":{"signedAt":"${AT}"}}`,
  "wrong types": `{"schemaVersion":"1","meta":[]}`,
  escapes: `{"schemaVersion":1,"meta":{"signedAt":"${AT}"},"channel":${ESCAPES}}`,
  "raw bytes": RAW
}

const VARIANTS: ReadonlyArray<Variant> = ["deep", "huge", "2^53", "wrong types", "escapes", "raw bytes"]

/** What the client answers for each body of a decoded route. */
const expectedDetail: Record<Variant, RegExp> = {
  deep: /body refused: nested deeper than 64 levels/,
  huge: /body refused: an array or object with more than 10000 entries/,
  "2^53": /Expected/,
  "wrong types": /Expected/,
  escapes: /body refused: a string holds the control character U\+0000/,
  // A raw NUL inside a string: refused by the pre-scan before the parser sees it.
  "raw bytes": /body refused: a string holds the control character U\+0000/
}

/** C0, DEL and C1: nothing of the kind may reach a log line raw. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

/** A message fit for one log line: short, one line, no raw control character. */
const expectSafe = (text: string, max = 1024) => {
  expect(text.length, text.slice(0, 200)).toBeLessThanOrEqual(max)
  expect(CONTROL.test(text), JSON.stringify(text.slice(0, 200))).toBe(false)
}

/** Log lines must be safe too: every captured line (one per log call, annotations included). */
const expectSafeLogs = (lines: ReadonlyArray<string>) => {
  for (const line of lines) expectSafe(line, 2048)
}

const stateOf = (cp: DevControlPlane, host: string, rolloutId: string) =>
  Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${host}`)?.state)

const logged = (agent: RunningAgent, ...parts: ReadonlyArray<string>) =>
  Effect.map(agent.logs, (lines) => lines.some((line) => parts.every((part) => line.includes(part))))

/**
 * Dispatches a rollout published (undispatched) before the agent started, so that its
 * policy is already cached, and waits for the agent to complete it.
 */
const converges = (
  cp: DevControlPlane,
  host: string,
  published: { readonly rolloutId: string; readonly soakDueAt: Date }
) =>
  Effect.gen(function*() {
    yield* cp.queueDispatch(host, {
      hostname: host,
      rollout_id: published.rolloutId,
      target_closure: TARGET,
      soak_due_at: published.soakDueAt.toISOString(),
      enqueued_at: new Date().toISOString()
    })
    yield* eventually(
      `${host} converged`,
      Effect.map(stateOf(cp, host, published.rolloutId), (state) => state === "Converged"),
      30_000
    )
  })

const agentHome = Effect.gen(function*() {
  const dir = yield* stateDirectory
  Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
  return dir
})

// ---------------------------------------------------------------------------------------
// The client: one typed error per answer
// ---------------------------------------------------------------------------------------

describe("ControlPlaneClient against hostile answers", () => {
  const withClient = <A, E>(
    body: (cp: DevControlPlane, client: ControlPlaneClientService) => Effect.Effect<A, E>
  ) =>
    Effect.gen(function*() {
      const cp = yield* start()
      yield* cp.setReady(true)
      const context = yield* Layer.build(ControlPlaneClient.layer.pipe(
        Layer.provide(ControlPlaneTransport.layer),
        Layer.provide(AgentConfig.make({ machineId: "web-01", stateDir: "/nonexistent", controlPlaneUrl: cp.url }))
      ))
      return yield* body(cp, Context.get(context, ControlPlaneClient))
    })

  const decodedRoutes: ReadonlyArray<
    readonly [Route, Record<Variant, string>, (client: ControlPlaneClientService) => Effect.Effect<unknown, unknown>]
  > = [
    [
      "heartbeat",
      heartbeatBodies,
      (client) =>
        client.heartbeat({ hostname: "web-01", rolloutId: null, currentClosure: PRIOR, at: new Date() }, "5 seconds")
    ],
    ["dispatch", dispatchBodies, (client) => client.dispatch(0)],
    ["enroll", certificateBodies, (client) =>
      client.enroll({
        token: {
          version: 1,
          claims: { hostname: "web-01", expectedPubkeyFingerprint: "x", issuedAt: AT, expiresAt: AT, nonce: "n" },
          signature: "AAAA"
        },
        csrPem: "csr"
      })],
    ["renew", certificateBodies, (client) => client.renew({ csrPem: "csr" })]
  ]

  it.scopedLive(
    "heartbeat, dispatch, enroll and renew: one BadResponse each, with a short escaped detail",
    () =>
      withClient((cp, client) =>
        Effect.gen(function*() {
          for (const [route, bodies, call] of decodedRoutes) {
            for (const variant of VARIANTS) {
              yield* cp.setFault(route, { _tag: "Status", status: 200, body: bodies[variant] })
              const result = yield* Effect.either(call(client))
              const context = `${route}, ${variant}`
              expect(Either.isLeft(result), context).toBe(true)
              if (Either.isLeft(result)) {
                const error = result.left as {
                  readonly _tag: string
                  readonly detail: string
                  readonly message: string
                }
                expect(error._tag, context).toBe("BadResponse")
                expect(error.detail, context).toMatch(expectedDetail[variant])
                expectSafe(error.message, 600)
              }
            }
            yield* cp.setFault(route, undefined)
          }
        })
      ),
    30_000
  )

  it.scopedLive("integers: 2^53 and beyond, negative, fractional or a string are refused where a u64 goes", () =>
    withClient((cp, client) =>
      Effect.gen(function*() {
        for (const seq of [TWO_POW_53, "9007199254740993", "1e300", "-1", "1.5", "\"NaN\"", "\"1\"", "null"]) {
          yield* cp.setFault("heartbeat", {
            _tag: "Status",
            status: 200,
            body: `{"bootstrap_rollouts":[${snapshot({ lastEventSeq: seq })}]}`
          })
          const error = yield* Effect.flip(
            client.heartbeat({ hostname: "web-01", rolloutId: null, currentClosure: null, at: new Date() }, "5 seconds")
          )
          expect(error, seq).toMatchObject({ _tag: "BadResponse" })
          expect(error.message, seq).toContain("$.bootstrap_rollouts[0].lastEventSeq")
        }
        // The largest exact integer is a valid seq.
        yield* cp.setFault("heartbeat", {
          _tag: "Status",
          status: 200,
          body: `{"bootstrap_rollouts":[${snapshot({ lastEventSeq: "9007199254740991" })}]}`
        })
        const answer = yield* client.heartbeat(
          { hostname: "web-01", rolloutId: null, currentClosure: null, at: new Date() },
          "5 seconds"
        )
        expect(answer.response.bootstrapRollouts[0]?.lastEventSeq).toBe(Number.MAX_SAFE_INTEGER)
      })
    ))

  it.scopedLive("a replay header beyond 2^53 is ignored rather than rounded", () =>
    withClient((cp, client) =>
      Effect.gen(function*() {
        yield* cp.setFault("heartbeat", {
          _tag: "Status",
          status: 200,
          body: "{}",
          headers: { "x-nixfleet-replay-from": "18446744073709551615" }
        })
        const answer = yield* client.heartbeat(
          { hostname: "web-01", rolloutId: null, currentClosure: null, at: new Date() },
          "5 seconds"
        )
        expect(answer.replayFrom).toBeNull()
      })
    ))

  it.scopedLive("fleet.resolved and rollout manifests (+sig): the bytes come back as served, verification refuses them typed", () =>
    withClient((cp, client) =>
      Effect.gen(function*() {
        const trust = yield* Schema.decodeUnknown(TrustConfig)(JSON.parse(Fs.readFileSync(cp.trustFile, "utf8")))
        const expected: Record<Variant, string> = {
          deep: "Parse",
          huge: "BadSignature",
          "2^53": "Parse",
          "wrong types": "BadSignature",
          escapes: "BadSignature",
          "raw bytes": "Parse"
        }
        const fetches: ReadonlyArray<readonly [Route, Effect.Effect<unknown, unknown>]> = [
          ["fleet", client.fleetResolved],
          ["rollout", client.rolloutManifest("stable@abc123")]
        ]
        for (const [route, fetch] of fetches) {
          for (const variant of VARIANTS) {
            const body = artifactBodies[variant]
            yield* cp.setFault(route, { _tag: "Status", status: 200, body })
            const served = (yield* fetch) as { readonly bytes: Uint8Array; readonly signature: Uint8Array }
            expect(new TextDecoder().decode(served.bytes)).toBe(body)
            const refused = yield* Effect.flip(
              verifyArtifact({ ...served, trust: trust.ciReleaseKey, now: new Date(AT), freshnessWindowSecs: 3600 })
            )
            expect(refused._tag, `${route}, ${variant}`).toBe(expected[variant])
            expectSafe(refused.message)
          }
          yield* cp.setFault(route, undefined)
        }
      })
    ))

  it.scopedLive("events: any 2xx is delivered unread; a refusal's body comes back short and escaped", () =>
    withClient((cp, client) =>
      Effect.gen(function*() {
        for (const variant of VARIANTS) {
          yield* cp.setFault("events", { _tag: "Status", status: 200, body: heartbeatBodies[variant] })
          const event = { hostname: "web-01", rolloutId: "stable@abc123", eventJson: "{}" }
          expect(yield* client.postEvent(event)).toStrictEqual({ status: 200, body: "" })
          yield* cp.setFault("events", { _tag: "Status", status: 400, body: heartbeatBodies[variant] })
          const refused = yield* client.postEvent(event)
          expect(refused.status).toBe(400)
          expectSafe(refused.body, 512)
        }
      })
    ))
})

// ---------------------------------------------------------------------------------------
// The workers: one logged line, and the agent goes on
// ---------------------------------------------------------------------------------------

// Each test runs its own control plane and agent, and mostly waits: they run concurrently.
describe("the agent's workers against hostile answers", { concurrent: true }, () => {
  it.scopedLive(
    "long-poll, boot recovery, heartbeat, manifest poll, dispatch checks and sender: one warning each, and the agent goes on",
    () =>
      Effect.gen(function*() {
        const cp = yield* start()
        yield* cp.setReady(true)
        const host = "web-11"
        yield* cp.setFault("heartbeat", { _tag: "Status", status: 200, body: heartbeatBodies.deep })
        yield* cp.setFault("dispatch", { _tag: "Status", status: 200, body: dispatchBodies.deep })
        yield* cp.setFault("fleet", { _tag: "Status", status: 200, body: artifactBodies.deep })
        const agent = yield* startAgent({
          machineId: host,
          stateDir: yield* agentHome,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        // What killed the long-poll fiber for good, and made boot recovery exit.
        yield* eventually("boot recovery refused", logged(agent, "boot-recovery heartbeat failed", "nested deeper"))
        yield* eventually("the long-poll refused", logged(agent, "dispatch long-poll failed", "nested deeper"))
        yield* eventually("the manifest poll refused", logged(agent, "fleet.resolved refused", "Parse: "))
        // The same workers, still there, with the next hostile answers.
        yield* cp.setFault("heartbeat", { _tag: "Status", status: 200, body: heartbeatBodies.escapes })
        yield* cp.setFault("dispatch", { _tag: "Status", status: 200, body: dispatchBodies.huge })
        yield* eventually("the heartbeat refused", logged(agent, "heartbeat failed; will retry", "control character"))
        yield* eventually("the long-poll refused", logged(agent, "dispatch long-poll failed", "10000 entries"))
        yield* cp.setFault("heartbeat", undefined)
        yield* cp.setFault("dispatch", undefined)
        yield* cp.setFault("fleet", undefined)
        const cleared = Date.now()
        yield* eventually(
          "a heartbeat answered after the faults",
          Effect.map(cp.requests, (requests) =>
            requests.some((r) =>
              r.path === "/v1/agent/heartbeat" && r.status === 200 && r.at.getTime() >= cleared
            ))
        )

        // A hostile manifest: the dispatch is refused, nothing runs.
        yield* cp.setFault("rollout", { _tag: "Status", status: 200, body: artifactBodies.escapes })
        const refused = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: host, targetClosure: TARGET }]
        })
        yield* eventually("the dispatch refused", logged(agent, "dispatch refused (manifest)", "BadSignature"))
        expect(yield* stateOf(cp, host, refused.rolloutId)).toBe("Pending")
        yield* cp.setFault("rollout", undefined)

        // A hostile refusal of events: retried, logged escaped; delivered once the control plane behaves.
        yield* cp.setFault("events", { _tag: "Status", status: 503, body: heartbeatBodies.escapes })
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: host, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        // The rollout's policy arrives with the next manifest poll (every 30 s).
        yield* eventually("a refused delivery", logged(agent, "event delivery failed", "HTTP 503", "\\u0000"), 45_000)
        yield* cp.setFault("events", undefined)
        yield* eventually(
          "Converged once the control plane behaves",
          Effect.map(stateOf(cp, host, rolloutId), (state) => state === "Converged"),
          30_000
        )
        expectSafeLogs(yield* agent.logs)
      }),
    120_000
  )

  it.scopedLive(
    "certificate renewal: a hostile renew answer is one warning; the agent keeps its certificate and runs",
    () =>
      Effect.gen(function*() {
        const cp = yield* start({ tls: true })
        const host = "web-01"
        const dir = yield* agentHome
        const certFile = Path.join(dir, "agent-cert.pem")
        // Issued 29 of its 30 days ago: due for renewal at once.
        const old = yield* cp.issueClientCertificate(host, HOST_SPKI, { issuedAt: new Date(Date.now() - 29 * DAY) })
        Fs.writeFileSync(certFile, old, { mode: 0o600 })
        const published = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: host, targetClosure: TARGET, pubkey: HOST_PUBKEY }],
          soakMinutes: 0.02,
          dispatch: false
        })
        yield* cp.setFault("renew", { _tag: "Status", status: 200, body: certificateBodies.deep })
        const agent = yield* startAgent({
          machineId: host,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile,
          caCert: cp.caFile,
          clientCert: certFile,
          clientKey: HOST_KEY_FILE,
          sshHostKeyFile: HOST_KEY_FILE,
          renewalThresholdFraction: 0.5
        })
        yield* eventually("the renewal refused", logged(agent, "renewal failed", "nested deeper"))
        expect(Fs.readFileSync(certFile, "utf8")).toBe(old)
        yield* cp.setFault("renew", undefined)
        yield* converges(cp, host, published)
        expectSafeLogs(yield* agent.logs)
      }),
    60_000
  )
})

// ---------------------------------------------------------------------------------------
// Enrollment: a clean refusal, and `run` exits 78
// ---------------------------------------------------------------------------------------

describe("enrollment against hostile answers", () => {
  const setup = (cp: DevControlPlane) =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const tokenFile = Path.join(dir, "bootstrap-token.json")
      const certFile = Path.join(dir, "agent-cert.pem")
      yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: "web-01", targetClosure: TARGET, pubkey: HOST_PUBKEY }],
        dispatch: false
      })
      Fs.writeFileSync(
        tokenFile,
        JSON.stringify(yield* cp.mintBootstrapToken({ hostname: "web-01", pubkey: HOST_PUBKEY }))
      )
      return { dir, tokenFile, certFile }
    })

  it.scopedLive("each hostile enroll answer is an EnrollmentError with a short escaped detail; nothing is written", () =>
    Effect.gen(function*() {
      const cp = yield* start()
      const { certFile, dir, tokenFile } = yield* setup(cp)
      const config = AgentConfig.make({
        machineId: "web-01",
        stateDir: dir,
        controlPlaneUrl: cp.url,
        clientCert: certFile,
        clientKey: HOST_KEY_FILE,
        bootstrapTokenFile: tokenFile
      })
      for (const variant of VARIANTS) {
        yield* cp.setFault("enroll", { _tag: "Status", status: 200, body: certificateBodies[variant] })
        const [error, lines] = yield* Effect.all([
          Effect.flip(enrollAnonymously({ tokenFile, keyFile: HOST_KEY_FILE, certFile })),
          CapturedLogs.lines
        ]).pipe(Effect.provide(Layer.merge(config, captureLogs)))
        expect(error._tag, variant).toBe("EnrollmentError")
        expect(error.message, variant).toMatch(expectedDetail[variant])
        expectSafe(error.message, 700)
        expectSafeLogs(lines)
        expect(Fs.existsSync(certFile)).toBe(false)
      }
    }))

  it.scopedLive(
    "`run` exits 78 with one line for an enroll answer nested 10,000 levels deep",
    () =>
      Effect.gen(function*() {
        const cp = yield* start()
        const { certFile, dir, tokenFile } = yield* setup(cp)
        yield* cp.setFault("enroll", { _tag: "Status", status: 200, body: certificateBodies.deep })
        const done = yield* runProcess(process.execPath, [
          AGENT,
          "run",
          ...["--control-plane-url", cp.url, "--machine-id", "web-01", "--state-dir", dir],
          ...["--trust-file", cp.trustFile],
          ...["--client-cert", certFile, "--client-key", HOST_KEY_FILE],
          ...["--bootstrap-token-file", tokenFile]
        ], { cwd: REPO })
        expect(done.code, done.stderr).toBe(78)
        const errors = done.stderr.trim().split("\n").filter((line) => line.startsWith("nixfleet-agent:"))
        expect(errors).toHaveLength(1)
        expect(errors[0]).toMatch(/enrollment failed: POST \/v1\/enroll: body refused: nested deeper than 64 levels/)
        expectSafe(errors[0]!, 700)
        expect(Fs.existsSync(certFile)).toBe(false)
      }),
    60_000
  )
})
