/**
 * First-boot enrollment and certificate renewal against the TLS dev control plane, with
 * the host's OpenSSH key: a token and a CSR buy a certificate the agent then runs with;
 * replays, expired tokens and undeclared keys are refused; a cold control plane is waited
 * for; a renewed certificate is used by the next request, without a restart and without
 * cutting a request in flight.
 */
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, start } from "@nixfleet/dev-control-plane"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import * as x509 from "@peculiar/x509"
import { Chunk, Clock, Effect, Either, Fiber, Layer, TestClock } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { AgentConfig, type AgentConfigShape } from "../src/config/AgentConfig.js"
import { ControlPlaneClient, ControlPlaneTransport } from "../src/controlplane/ControlPlaneClient.js"
import { enrollAnonymously, enrollIfNeeded } from "../src/identity/Enrollment.js"
import { writeFileAtomic } from "../src/support/atomicFile.js"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { fingerprintOf, HOST_KEY_FILE, HOST_PUBKEY, HOST_SPKI } from "./support/certificates.js"
import { PRIOR, TARGET } from "./support/fixtures.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"
import { notifySocket } from "./support/notify.js"
import { AGENT, spawnScript, tail } from "./support/processes.js"

const HOST = "web-01"
const TIMEOUT = 60_000
const DAY = 24 * 3600_000
const REPO = Path.resolve(__dirname, "../../..")

/** A second ed25519 key, as an OpenSSH public key line: a key the fleet may declare instead. */
const otherPubkey = (): string => {
  const raw = Buffer.from(
    Crypto.generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }).x ?? "",
    "base64url"
  )
  const field = (bytes: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, bytes.length]), bytes])
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]).toString("base64")}`
}

/** Publishes a rollout to the host, declaring `pubkey` as its key in `fleet.resolved`. */
const declare = (cp: DevControlPlane, pubkey: string, options: { readonly dispatch?: boolean } = {}) =>
  cp.publishRollout({
    channel: "stable",
    hosts: [{ hostname: HOST, targetClosure: TARGET, pubkey }],
    soakMinutes: 0.02,
    dispatch: options.dispatch ?? false
  })

/** A state directory with a current-system link, and the agent's configuration in it. */
const host = (cp: DevControlPlane, overrides: Partial<AgentConfigShape> = {}) =>
  Effect.gen(function*() {
    const dir = yield* stateDirectory
    Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
    const certFile = Path.join(dir, "agent-cert.pem")
    const tokenFile = Path.join(dir, "bootstrap-token.json")
    const config = {
      machineId: HOST,
      stateDir: dir,
      controlPlaneUrl: cp.url,
      trustFile: cp.trustFile,
      caCert: cp.caFile,
      clientCert: certFile,
      clientKey: HOST_KEY_FILE,
      sshHostKeyFile: HOST_KEY_FILE,
      bootstrapTokenFile: tokenFile,
      ...overrides
    }
    return { dir, config, certFile, tokenFile }
  })

const writeToken = (file: string, token: unknown) => Fs.writeFileSync(file, JSON.stringify(token))

const enrollWith = (config: Parameters<typeof AgentConfig.make>[0]) =>
  enrollIfNeeded.pipe(Effect.provide(AgentConfig.make(config)))

const stateOf = (cp: DevControlPlane, rolloutId: string) =>
  Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state)

const enrollRequests = (cp: DevControlPlane) =>
  Effect.map(cp.requests, (requests) => requests.filter((r) => r.path === "/v1/enroll").map((r) => r.status))

const realSleep = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))

describe("enrollment against the TLS dev control plane", () => {
  it.scopedLive(
    "a minted token enrolls the host; the agent then converges with the certificate it wrote",
    () =>
      Effect.gen(function*() {
        const cp = yield* start({ tls: true })
        const { certFile, config, tokenFile } = yield* host(cp)
        yield* declare(cp, HOST_PUBKEY)
        writeToken(tokenFile, yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: HOST_PUBKEY }))

        expect(yield* enrollWith(config)).toBe(true)
        const certPem = Fs.readFileSync(certFile, "utf8")
        expect(Fs.statSync(certFile).mode & 0o777).toBe(0o600)
        const certificate = new x509.X509Certificate(certPem)
        expect(certificate.subject).toBe("CN=agent-web-01.fleet.lab.internal")
        expect(Crypto.createPublicKey(certPem).export({ format: "pem", type: "spki" })).toBe(HOST_SPKI)
        // The enrollment went out without a client certificate; nothing is due any more.
        expect((yield* cp.requests).map((r) => [r.path, r.status, r.clientCertificate])).toEqual([
          ["/v1/enroll", 200, null]
        ])
        expect(yield* enrollWith(config)).toBe(false)

        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET, pubkey: HOST_PUBKEY }],
          soakMinutes: 0.02
        })
        yield* startAgent(config)
        yield* eventually("Converged", Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"), 30_000)
        const after = (yield* cp.requests).filter((r) => r.path !== "/v1/enroll")
        expect(after.length).toBeGreaterThan(0)
        for (const request of after) expect(request.clientCertificate?.fingerprint256).toBe(fingerprintOf(certPem))
      }),
    TIMEOUT
  )

  it.scopedLive("a replayed token is refused with 409 and nothing is written", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true })
      const { certFile, config, tokenFile } = yield* host(cp)
      yield* declare(cp, HOST_PUBKEY)
      writeToken(tokenFile, yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: HOST_PUBKEY }))
      expect(yield* enrollWith(config)).toBe(true)
      Fs.rmSync(certFile)
      const replay = yield* Effect.either(enrollWith(config))
      expect(replay).toStrictEqual(Either.left(expect.objectContaining({ _tag: "EnrollmentRefused", status: 409 })))
      expect(Either.isLeft(replay) && replay.left.message).toBe(
        "the control plane refused enrollment: HTTP 409: {\"error\":\"bootstrap token already used\"}"
      )
      expect(Fs.existsSync(certFile)).toBe(false)
      expect(yield* enrollRequests(cp)).toEqual([200, 409])
    }), TIMEOUT)

  it.scopedLive("an expired token is refused with 401, at once", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true })
      const { certFile, config, tokenFile } = yield* host(cp)
      yield* declare(cp, HOST_PUBKEY)
      const now = Date.now()
      writeToken(
        tokenFile,
        yield* cp.mintBootstrapToken({
          hostname: HOST,
          pubkey: HOST_PUBKEY,
          issuedAt: new Date(now - 2 * DAY),
          expiresAt: new Date(now - DAY)
        })
      )
      const refused = yield* Effect.either(enrollWith(config))
      expect(refused).toStrictEqual(Either.left(expect.objectContaining({ _tag: "EnrollmentRefused", status: 401 })))
      expect(Either.isLeft(refused) && refused.left.message).toMatch(/bootstrap token expired/)
      expect(Fs.existsSync(certFile)).toBe(false)
      expect(yield* enrollRequests(cp)).toEqual([401])
    }), TIMEOUT)

  it.scopedLive(
    "a host key other than the one fleet.resolved declares is refused with 401",
    () =>
      Effect.gen(function*() {
        const cp = yield* start({ tls: true })
        const { certFile, config, tokenFile } = yield* host(cp)
        yield* declare(cp, otherPubkey())
        writeToken(tokenFile, yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: HOST_PUBKEY }))
        const refused = yield* Effect.either(enrollWith(config))
        expect(refused).toStrictEqual(Either.left(expect.objectContaining({ _tag: "EnrollmentRefused", status: 401 })))
        expect(Either.isLeft(refused) && refused.left.message).toMatch(/not the host key declared in fleet\.resolved/)
        expect(Fs.existsSync(certFile)).toBe(false)
      }),
    TIMEOUT
  )

  it.scoped(
    "a cold control plane (503 not ready) is retried every 10 s until it enrolls the host",
    () =>
      Effect.gen(function*() {
        const cp = yield* start({ tls: true })
        const { certFile, config, tokenFile } = yield* host(cp)
        writeToken(tokenFile, yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: HOST_PUBKEY }))
        const files = { certFile, keyFile: HOST_KEY_FILE, tokenFile }
        const fiber = yield* enrollAnonymously(files).pipe(Effect.provide(AgentConfig.make(config)), Effect.fork)
        // The first attempt meets the readiness gate; the agent then sleeps 10 s (TestClock).
        const startedAt = yield* Clock.currentTimeMillis
        const retryAt = startedAt + 10_000
        for (let i = 0; !Chunk.some(yield* TestClock.sleeps(), (at) => at === retryAt); i++) {
          if (i > 1000) return yield* Effect.dieMessage("the first attempt never happened")
          yield* realSleep(10)
        }
        expect(yield* enrollRequests(cp)).toEqual([503])
        expect(Fs.existsSync(certFile)).toBe(false)
        yield* declare(cp, HOST_PUBKEY)
        yield* TestClock.adjust("10 seconds")
        yield* Fiber.join(fiber)
        expect(yield* enrollRequests(cp)).toEqual([503, 200])
        expect(new x509.X509Certificate(Fs.readFileSync(certFile, "utf8")).subject).toBe(
          "CN=agent-web-01.fleet.lab.internal"
        )
      }),
    TIMEOUT
  )

  it.scopedLive("`run` exits 78 with one line when the control plane refuses the token", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true })
      const { certFile, dir, tokenFile } = yield* host(cp)
      yield* declare(cp, HOST_PUBKEY)
      writeToken(
        tokenFile,
        yield* cp.mintBootstrapToken({
          hostname: HOST,
          pubkey: HOST_PUBKEY,
          issuedAt: new Date(Date.now() - 2 * DAY),
          expiresAt: new Date(Date.now() - DAY)
        })
      )
      const done = yield* runProcess(process.execPath, [
        AGENT,
        "run",
        ...["--control-plane-url", cp.url, "--machine-id", HOST, "--state-dir", dir],
        ...["--trust-file", cp.trustFile, "--ca-cert", cp.caFile ?? ""],
        ...["--client-cert", certFile, "--client-key", HOST_KEY_FILE],
        ...["--bootstrap-token-file", tokenFile]
      ], { cwd: REPO })
      expect(done.code, done.stderr).toBe(78)
      expect(done.stderr.trim().split("\n").filter((line) => line.startsWith("nixfleet-agent:"))).toEqual([
        "nixfleet-agent: the control plane refused enrollment: HTTP 401: {\"error\":\"bootstrap token expired\"}"
      ])
      expect(Fs.existsSync(certFile)).toBe(false)
    }), 120_000)
})

describe("enrollment under systemd", () => {
  it.scopedLive(
    "`run` waiting for a cold control plane extends systemd's start timeout, then enrolls and sends READY=1",
    () =>
      Effect.gen(function*() {
        const cp = yield* start({ tls: true })
        const { certFile, dir, tokenFile } = yield* host(cp)
        writeToken(tokenFile, yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: HOST_PUBKEY }))
        const socket = Path.join(dir, "notify.sock")
        const { received } = yield* notifySocket(socket)
        const agent = yield* spawnScript("agent", AGENT, [
          "run",
          ...["--control-plane-url", cp.url, "--machine-id", HOST, "--state-dir", dir],
          ...["--trust-file", cp.trustFile, "--ca-cert", cp.caFile ?? ""],
          ...["--client-cert", certFile, "--client-key", HOST_KEY_FILE, "--bootstrap-token-file", tokenFile],
          ...["--current-system-path", Path.join(dir, "current-system"), "--health-checks-file", `${dir}/none.json`]
        ], { NOTIFY_SOCKET: socket })
        const lines = () => received.flatMap((r) => r.lines)
        // No fleet published yet: the control plane answers 503 "not ready".
        yield* eventually(
          "an enrollment refused as not ready",
          Effect.map(enrollRequests(cp), (statuses) => statuses.includes(503)),
          30_000
        )
        expect(received[0]!.lines).toStrictEqual([
          "STATUS=enrolling with the control plane",
          "EXTEND_TIMEOUT_USEC=30000000"
        ])
        expect(lines()).not.toContain("READY=1")
        expect(Fs.existsSync(certFile)).toBe(false)

        yield* declare(cp, HOST_PUBKEY)
        // The next attempt, at most 10 s later, enrolls; the agent then starts and is ready.
        yield* eventually("READY=1", Effect.sync(() => lines().includes("READY=1")), 30_000)
        expect(Fs.existsSync(certFile)).toBe(true)
        expect(yield* enrollRequests(cp)).toEqual([503, 200])
        expect(lines().indexOf("READY=1")).toBeGreaterThan(lines().lastIndexOf("EXTEND_TIMEOUT_USEC=30000000"))
        agent.signal("SIGTERM")
        expect((yield* agent.awaitExit(30_000))?.code, tail(agent.stderr())).toBe(0)
      }),
    TIMEOUT
  )
})

describe("renewal against the TLS dev control plane", () => {
  it.scopedLive(
    "a certificate past the threshold is renewed over mTLS and the next requests present the new one",
    () =>
      Effect.gen(function*() {
        const cp = yield* start({ tls: true })
        const { certFile, config } = yield* host(cp, { renewalThresholdFraction: 0.5, bootstrapTokenFile: null })
        yield* declare(cp, HOST_PUBKEY)
        // Issued 29 of its 30 days ago: 1/30 of the validity remains.
        const old = yield* cp.issueClientCertificate(HOST, HOST_SPKI, { issuedAt: new Date(Date.now() - 29 * DAY) })
        Fs.writeFileSync(certFile, old, { mode: 0o600 })
        const agent = yield* startAgent(config)
        yield* eventually("a renewed certificate", Effect.sync(() => Fs.readFileSync(certFile, "utf8") !== old))
        const renewed = Fs.readFileSync(certFile, "utf8")
        const certificate = new x509.X509Certificate(renewed)
        expect(certificate.subject).toBe("CN=agent-web-01.fleet.lab.internal")
        expect(Math.abs(certificate.notBefore.getTime() - Date.now())).toBeLessThan(60_000)
        expect(Crypto.createPublicKey(renewed).export({ format: "pem", type: "spki" })).toBe(HOST_SPKI)
        expect(Fs.statSync(certFile).mode & 0o777).toBe(0o600)

        // A rollout now: its manifest fetch, events and the following polls present the new certificate.
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET, pubkey: HOST_PUBKEY }],
          soakMinutes: 0.02
        })
        yield* eventually("Converged", Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"), 30_000)
        const requests = yield* cp.requests
        const renewal = requests.findIndex((r) => r.path === "/v1/agent/renew")
        expect(requests[renewal]).toMatchObject({
          status: 200,
          clientCertificate: { fingerprint256: fingerprintOf(old) }
        })
        const used = (path: RegExp) =>
          requests.filter((r) => path.test(r.path)).map((r) => r.clientCertificate?.fingerprint256)
        expect(used(/^\/v1\/rollouts\//).length).toBeGreaterThan(0)
        // Each request by path and which certificate it presented, so that a failure says which.
        const which = (fingerprint: string | undefined) =>
          fingerprint === fingerprintOf(renewed) ? "renewed" : fingerprint === fingerprintOf(old) ? "old" : fingerprint
        const afterRenewal = requests
          .filter((r) => /^\/v1\/(rollouts\/|agent\/events)/.test(r.path))
          .map((r) => `${r.path} ${which(r.clientCertificate?.fingerprint256)}`)
        expect(afterRenewal).toStrictEqual(afterRenewal.map((line) => line.replace(/ [^ ]*$/, " renewed")))
        // Nothing after the renewal started with the old certificate but the requests already in flight.
        const stale = requests.slice(renewal + 1).filter((r) =>
          r.clientCertificate?.fingerprint256 === fingerprintOf(old) && r.path !== "/v1/agent/dispatch"
        )
        expect(stale).toEqual([])
        expect((yield* agent.logs).some((line) => line.includes("client certificate renewed"))).toBe(true)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "the transport reloads a changed identity without cutting a request in flight",
    () =>
      Effect.gen(function*() {
        const cp = yield* start({ tls: true })
        const { certFile, config } = yield* host(cp, { bootstrapTokenFile: null })
        const { rolloutId } = yield* declare(cp, HOST_PUBKEY)
        const first = yield* cp.issueClientCertificate(HOST, HOST_SPKI)
        Fs.writeFileSync(certFile, first, { mode: 0o600 })
        const layer = ControlPlaneClient.layer.pipe(
          Layer.provide(ControlPlaneTransport.layer),
          Layer.provideMerge(AgentConfig.make(config)),
          Layer.provideMerge(captureLogs)
        )
        yield* Effect.gen(function*() {
          const client = yield* ControlPlaneClient
          const heartbeat = client.heartbeat(
            { hostname: HOST, rolloutId: null, currentClosure: PRIOR, at: new Date() },
            "10 seconds"
          )
          // A long-poll parks on the first identity's connection.
          const poll = yield* Effect.fork(client.dispatch(20))
          yield* realSleep(500)
          const second = yield* cp.issueClientCertificate(HOST, HOST_SPKI)
          yield* Effect.promise(() => writeFileAtomic(certFile, second, 0o600))
          yield* heartbeat
          // The parked poll is answered on its own connection, with the first identity.
          yield* cp.queueDispatch(HOST, {
            hostname: HOST,
            rollout_id: rolloutId,
            target_closure: TARGET,
            soak_due_at: new Date(Date.now() + 60_000).toISOString(),
            enqueued_at: new Date().toISOString()
          })
          expect(yield* Fiber.join(poll)).toMatchObject({ hostname: HOST, rolloutId })
          const byPath = (path: string) =>
            Effect.map(cp.requests, (requests) =>
              requests.filter((r) =>
                r.path === path
              ).map((r) => [r.status, r.clientCertificate?.fingerprint256]))
          expect(yield* byPath("/v1/agent/dispatch")).toEqual([[200, fingerprintOf(first)]])
          expect(yield* byPath("/v1/agent/heartbeat")).toEqual([[200, fingerprintOf(second)]])

          // A certificate for another key is not taken: the identity in use stays.
          const foreign = yield* cp.issueClientCertificate(
            HOST,
            Crypto.generateKeyPairSync("ed25519").publicKey.export({ format: "pem", type: "spki" }).toString()
          )
          yield* Effect.promise(() => writeFileAtomic(certFile, foreign, 0o600))
          yield* heartbeat
          yield* heartbeat
          expect(yield* byPath("/v1/agent/heartbeat")).toEqual([
            [200, fingerprintOf(second)],
            [200, fingerprintOf(second)],
            [200, fingerprintOf(second)]
          ])
          const warnings = (yield* CapturedLogs.lines).filter((line) => line.startsWith("WARN"))
          expect(warnings).toEqual([
            expect.stringMatching(/client certificate changed on disk but cannot be used; keeping the previous one/)
          ])
        }).pipe(Effect.provide(layer))
      }),
    TIMEOUT
  )
})
