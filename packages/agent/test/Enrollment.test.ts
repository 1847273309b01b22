/**
 * Enrollment and renewal without a control plane: the CSR, the validity arithmetic, the
 * enrollment retry schedule and the renewal fiber against a scripted client, on the
 * TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import type { BootstrapToken, EnrollRequest } from "@nixfleet/proto"
import * as x509 from "@peculiar/x509"
import { ConfigProvider, Duration, Effect, Either, Exit, Fiber, Layer, Metric, Queue, Ref, TestClock } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { AgentConfig, config as agentConfig } from "../src/config/AgentConfig.js"
import {
  ControlPlaneClient,
  type ControlPlaneClientService,
  type ControlPlaneError,
  StatusError,
  TransportError
} from "../src/controlplane/ControlPlaneClient.js"
import { certificateRenewals, remainingFraction } from "../src/identity/CertificateRenewal.js"
import * as CertificateRenewal from "../src/identity/CertificateRenewal.js"
import { enroll, pendingEnrollment } from "../src/identity/Enrollment.js"
import { certificateRequest, certifiesKey, hostKeyFrom, publicKeyFingerprint } from "../src/identity/hostIdentity.js"
import { Shutdown } from "../src/runtime/Shutdown.js"
import { stateDirectory } from "./support/agentHarness.js"
import { HOST_KEY, HOST_KEY_FILE, HOST_PUBKEY, HOST_SPKI, selfSigned } from "./support/certificates.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"

const HOST = "web-01"
const NOT_READY = "{\"error\":\"control plane not ready\",\"reason\":\"awaiting first signed artifact\"}"

const rawOf = (openSsh: string) => {
  const blob = Buffer.from(openSsh.split(/\s+/)[1] ?? "", "base64")
  return blob.subarray(blob.length - 32)
}

const tokenFor = (hostname: string, fingerprint: string): BootstrapToken => ({
  version: 1,
  claims: {
    hostname,
    expectedPubkeyFingerprint: fingerprint,
    issuedAt: "2026-05-01T00:00:00Z",
    expiresAt: "2026-05-02T00:00:00Z",
    nonce: "00112233445566778899aabbccddeeff"
  },
  signature: "AAAA"
})

const HOST_FINGERPRINT = Crypto.createHash("sha256").update(rawOf(HOST_PUBKEY)).digest("base64")

const unused = (name: string) => () => Effect.dieMessage(`${name} is not part of this test`)

/** A client whose `enroll` and `renew` answer from a script and report each call on a queue. */
const scriptedClient = (
  calls: Queue.Queue<unknown>,
  answers: {
    readonly enroll?: (index: number) => Effect.Effect<{ certPem: string; notAfter: Date }, ControlPlaneError>
    readonly renew?: (index: number) => Effect.Effect<{ certPem: string; notAfter: Date }, ControlPlaneError>
  }
) => {
  let enrolls = 0
  let renewals = 0
  const service: ControlPlaneClientService = {
    postEvent: unused("postEvent"),
    heartbeat: unused("heartbeat"),
    dispatch: unused("dispatch"),
    fleetResolved: Effect.dieMessage("fleetResolved is not part of this test"),
    rolloutManifest: unused("rolloutManifest"),
    enroll: (request) =>
      Effect.zipRight(
        Queue.offer(calls, request),
        Effect.suspend(() => (answers.enroll ?? unused("enroll"))(enrolls++))
      ),
    renew: (request) =>
      Effect.zipRight(
        Queue.offer(calls, request),
        Effect.suspend(() => (answers.renew ?? unused("renew"))(renewals++))
      )
  }
  return Layer.succeed(ControlPlaneClient, service)
}

const notReady = new StatusError({ request: "POST /v1/enroll", status: 503, retryAfterSecs: 30, body: NOT_READY })

/** Lets the forked fiber reach its next sleep (everything it does before is synchronous or fast I/O). */
const untilSleeping = Effect.gen(function*() {
  for (let i = 0; i < 10_000; i++) {
    if ((yield* TestClock.sleeps()).length > 0) return
    yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1)))
  }
  return yield* Effect.dieMessage("the fiber never slept")
})

describe("certificate request", () => {
  it.effect("a PKCS#10 CSR for the host's OpenSSH key: CN = machine id, self-signed, the host key's public half", () =>
    Effect.gen(function*() {
      const key = hostKeyFrom(HOST_KEY)
      const pem = yield* Effect.promise(() => certificateRequest(HOST, key))
      expect(pem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/)
      const csr = new x509.Pkcs10CertificateRequest(pem)
      expect(csr.subjectName.getField("CN")).toEqual([HOST])
      expect(csr.publicKey.algorithm.name).toBe("Ed25519")
      expect(yield* Effect.promise(() => csr.verify(Crypto.webcrypto))).toBe(true)
      const spki = Crypto.createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: "der", type: "spki" })
      expect(spki.export({ format: "pem", type: "spki" })).toBe(HOST_SPKI)
      expect(Buffer.from(key.publicKeyRaw)).toStrictEqual(rawOf(HOST_PUBKEY))
      // No escaping surprises: the machine id is the CN, whatever it contains.
      for (const odd of ["web,01+x=\"y\"", "#abc", "a\\b"]) {
        const csrOdd = new x509.Pkcs10CertificateRequest(yield* Effect.promise(() => certificateRequest(odd, key)))
        expect(csrOdd.subjectName.getField("CN")).toEqual([odd])
      }
    }))

  it("the fingerprint is base64(SHA-256(raw public key)), as a bootstrap token names it", () => {
    expect(publicKeyFingerprint(hostKeyFrom(HOST_KEY).publicKeyRaw)).toBe(HOST_FINGERPRINT)
    // Spec §8.2 V4: the fingerprint of the CI test key.
    const ciKey = Buffer.from("XGEGLc7caQGxOHt9EcWsRyhKk2fj6v5OVdDd+BFO8KY=", "base64")
    expect(publicKeyFingerprint(ciKey)).toBe("WI7OI6P7PqLDRBMNdVCBK9KGq6DoOcmi93AruaLOq3o=")
  })

  it("only an ed25519 key can be the certificate key", () => {
    const rsa = Fs.readFileSync(Path.join(__dirname, "fixtures/ssh/ssh_host_rsa_key"), "utf8")
    expect(() => hostKeyFrom(rsa)).toThrow(/ssh-ed25519/)
    const ec = Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey
    expect(() => hostKeyFrom(ec.export({ format: "pem", type: "pkcs8" }).toString())).toThrow(/expected an ed25519 key/)
  })

  it.effect("an issued certificate is checked to certify the host key", () =>
    Effect.gen(function*() {
      const key = hostKeyFrom(HOST_KEY)
      const now = new Date()
      const ours = yield* Effect.promise(() => selfSigned(HOST_KEY, now, new Date(now.getTime() + 3600_000)))
      const other = Crypto.generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString()
      const theirs = yield* Effect.promise(() => selfSigned(other, now, new Date(now.getTime() + 3600_000)))
      expect(certifiesKey(ours, key)).toBe(true)
      expect(certifiesKey(theirs, key)).toBe(false)
      expect(certifiesKey("not a certificate", key)).toBe(false)
    }))
})

describe("remaining validity", () => {
  const notBefore = new Date("2026-05-01T00:00:00Z")
  const notAfter = new Date("2026-05-31T00:00:00Z")
  const at = (days: number) => new Date(notBefore.getTime() + days * 24 * 3600_000)

  it("is the fraction of the validity still ahead, clamped to [0, 1]", () => {
    expect(remainingFraction({ notBefore, notAfter }, at(0))).toBe(1)
    expect(remainingFraction({ notBefore, notAfter }, at(15))).toBe(0.5)
    expect(remainingFraction({ notBefore, notAfter }, at(27))).toBeCloseTo(0.1, 12)
    expect(remainingFraction({ notBefore, notAfter }, at(30))).toBe(0)
    expect(remainingFraction({ notBefore, notAfter }, at(31))).toBe(0)
    expect(remainingFraction({ notBefore, notAfter }, at(-1))).toBe(1)
    // An empty or inverted validity is as good as expired.
    expect(remainingFraction({ notBefore, notAfter: notBefore }, at(0))).toBe(0)
    expect(remainingFraction({ notBefore: notAfter, notAfter: notBefore }, at(0))).toBe(0)
  })

  it("--renewal-threshold-fraction strictly between 0 and 1 renews; absent or out of range, no renewal (and a warning)", () => {
    const read = (value: string | undefined) =>
      Effect.runSync(
        Effect.either(agentConfig).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(
            new Map([
              ["NIXFLEET_AGENT_MACHINE_ID", HOST],
              ["NIXFLEET_AGENT_CP_URL", "https://cp.example"],
              ...(value === undefined ? [] : [["NIXFLEET_AGENT_RENEWAL_THRESHOLD_FRACTION", value] as const])
            ])
          ))
        )
      )
    expect(Either.map(read(undefined), (c) => c.renewalThresholdFraction)).toStrictEqual(Either.right(null))
    expect(Either.map(read("0.5"), (c) => c.renewalThresholdFraction)).toStrictEqual(Either.right(0.5))
    expect(Either.map(read("0.5"), (c) => c.settingWarnings)).toStrictEqual(Either.right([]))
    for (const bad of ["0", "1", "1.5", "-0.1", "half", "NaN", " "]) {
      const config = read(bad)
      expect(Either.map(config, (c) => c.renewalThresholdFraction), bad).toStrictEqual(Either.right(null))
      expect(Either.map(config, (c) => c.settingWarnings.map((w) => w.message)), bad).toStrictEqual(Either.right([
        `--renewal-threshold-fraction ${
          JSON.stringify(bad)
        } must be a number strictly between 0 and 1; certificate renewal is disabled`
      ]))
    }
  })
})

describe("enrollment, against a scripted control plane", () => {
  const setup = (token: BootstrapToken | string) =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const tokenFile = Path.join(dir, "token.json")
      Fs.writeFileSync(tokenFile, typeof token === "string" ? token : JSON.stringify(token))
      const certFile = Path.join(dir, "tls", "agent-cert.pem")
      const config = AgentConfig.make({
        machineId: HOST,
        stateDir: dir,
        controlPlaneUrl: "https://cp.example",
        clientCert: certFile,
        clientKey: HOST_KEY_FILE,
        bootstrapTokenFile: tokenFile
      })
      return { dir, certFile, files: { tokenFile, keyFile: HOST_KEY_FILE, certFile }, config }
    })

  const issued = Effect.promise(() =>
    selfSigned(HOST_KEY, new Date("2026-05-01T00:00:00Z"), new Date("2026-05-31T00:00:00Z"))
  )

  it.scoped("retries every 10 s while the control plane is not ready or unreachable, then writes the certificate 0600", () =>
    Effect.gen(function*() {
      const { certFile, config, dir, files } = yield* setup(tokenFor(HOST, HOST_FINGERPRINT))
      const certPem = yield* issued
      const calls = yield* Queue.unbounded<unknown>()
      const answers: ReadonlyArray<Effect.Effect<{ certPem: string; notAfter: Date }, ControlPlaneError>> = [
        Effect.fail(notReady),
        Effect.fail(new TransportError({ request: "POST /v1/enroll", detail: "connect ECONNREFUSED" })),
        Effect.succeed({ certPem, notAfter: new Date("2026-05-31T00:00:00Z") })
      ]
      const fiber = yield* enroll(files).pipe(
        Effect.provide(Layer.merge(config, scriptedClient(calls, { enroll: (i) => answers[i]! }))),
        Effect.fork
      )
      const first = (yield* Queue.take(calls)) as EnrollRequest
      expect(first.token.claims.hostname).toBe(HOST)
      const csr = new x509.Pkcs10CertificateRequest(first.csrPem)
      expect(csr.subjectName.getField("CN")).toEqual([HOST])
      for (let attempt = 2; attempt <= 3; attempt++) {
        yield* untilSleeping
        yield* TestClock.adjust(Duration.millis(9_999))
        expect(yield* Queue.size(calls), `attempt ${attempt} is not due yet`).toBe(0)
        yield* TestClock.adjust(Duration.millis(1))
        yield* Queue.take(calls)
      }
      yield* Fiber.join(fiber)
      expect(Fs.readFileSync(certFile, "utf8")).toBe(certPem)
      expect(Fs.statSync(certFile).mode & 0o777).toBe(0o600)
      // Only the certificate is written: no key, no CSR, no temporary file left behind.
      expect(Fs.readdirSync(Path.dirname(certFile))).toEqual(["agent-cert.pem"])
      expect(Fs.readdirSync(dir).sort()).toEqual(["tls", "token.json"])
    }))

  it.scoped("any other refusal fails at once, with the status and the body; nothing is written", () =>
    Effect.gen(function*() {
      const { certFile, config, files } = yield* setup(tokenFor(HOST, HOST_FINGERPRINT))
      for (
        const [status, body] of [
          [409, "{\"error\":\"bootstrap token already used\"}"],
          [401, "{\"error\":\"bootstrap token expired or not yet valid\"}"],
          [503, "{\"error\":\"no verified fleet.resolved snapshot\"}"]
        ] as const
      ) {
        const calls = yield* Queue.unbounded<unknown>()
        const failure = new StatusError({ request: "POST /v1/enroll", status, retryAfterSecs: null, body })
        const exit = yield* enroll(files).pipe(
          Effect.provide(Layer.merge(config, scriptedClient(calls, { enroll: () => Effect.fail(failure) }))),
          Effect.exit
        )
        expect(exit).toStrictEqual(Exit.fail(expect.objectContaining({ _tag: "EnrollmentRefused", status, body })))
        if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain(`HTTP ${status}: ${body}`)
        expect(yield* Queue.size(calls)).toBe(1)
        expect(Fs.existsSync(certFile)).toBe(false)
      }
    }))

  it.scoped("a token for another host or another key, or not a token, is refused before any request", () =>
    Effect.gen(function*() {
      const other = Crypto.createHash("sha256").update("another key").digest("base64")
      for (
        const [token, reason] of [
          [tokenFor("web-02", HOST_FINGERPRINT), /bootstrap token is for "web-02", this host is "web-01"/],
          [tokenFor(HOST, other), /not minted for the key/],
          ["{ not json", /is not a bootstrap token/],
          [JSON.stringify({ ...tokenFor(HOST, HOST_FINGERPRINT), version: 2 }), /unsupported bootstrap token version/]
        ] as const
      ) {
        const { config, files } = yield* setup(token)
        const calls = yield* Queue.unbounded<unknown>()
        const exit = yield* enroll(files).pipe(
          Effect.provide(Layer.merge(config, scriptedClient(calls, {}))),
          Effect.exit
        )
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) expect(String(exit.cause)).toMatch(reason)
        expect(yield* Queue.size(calls)).toBe(0)
      }
    }))

  it.scoped("a certificate for another key is not written", () =>
    Effect.gen(function*() {
      const { certFile, config, files } = yield* setup(tokenFor(HOST, HOST_FINGERPRINT))
      const other = Crypto.generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString()
      const certPem = yield* Effect.promise(() => selfSigned(other, new Date(), new Date(Date.now() + 3600_000)))
      const calls = yield* Queue.unbounded<unknown>()
      const exit = yield* enroll(files).pipe(
        Effect.provide(
          Layer.merge(
            config,
            scriptedClient(calls, { enroll: () => Effect.succeed({ certPem, notAfter: new Date() }) })
          )
        ),
        Effect.exit
      )
      expect(Exit.isFailure(exit) && String(exit.cause)).toMatch(/certificate for another key/)
      expect(Fs.existsSync(certFile)).toBe(false)
    }))

  it.scoped("is due only with a certificate path, a key and a token, and no certificate yet", () =>
    Effect.gen(function*() {
      const { certFile, dir, files } = yield* setup(tokenFor(HOST, HOST_FINGERPRINT))
      const pending = (overrides: Partial<Parameters<typeof AgentConfig.make>[0]>) =>
        pendingEnrollment.pipe(
          Effect.provide(AgentConfig.make({
            machineId: HOST,
            stateDir: dir,
            controlPlaneUrl: "https://cp.example",
            clientCert: certFile,
            clientKey: HOST_KEY_FILE,
            bootstrapTokenFile: files.tokenFile,
            ...overrides
          }))
        )
      expect(yield* pending({})).toStrictEqual(files)
      expect(yield* pending({ bootstrapTokenFile: null })).toBeNull()
      expect(yield* pending({ clientKey: null })).toBeNull()
      expect(yield* pending({ clientCert: null })).toBeNull()
      Fs.mkdirSync(Path.dirname(certFile), { recursive: true })
      Fs.writeFileSync(certFile, "")
      expect(yield* pending({})).toBeNull()
    }))
})

describe("renewal fiber, against a scripted control plane", () => {
  const T0 = new Date(0)
  const seconds = (n: number) => new Date(n * 1000)

  const runFiber = (threshold: number | null, answers: Parameters<typeof scriptedClient>[1]) =>
    Effect.gen(function*() {
      const dir = yield* stateDirectory
      const certFile = Path.join(dir, "agent-cert.pem")
      // 100 s of validity from the TestClock's epoch: 40 % remains at 60 s.
      Fs.writeFileSync(certFile, yield* Effect.promise(() => selfSigned(HOST_KEY, T0, seconds(100))))
      const calls = yield* Queue.unbounded<unknown>()
      yield* Layer.build(
        CertificateRenewal.layer.pipe(
          Layer.provide(Layer.mergeAll(
            AgentConfig.make({
              machineId: HOST,
              stateDir: dir,
              // Plain http presents no client certificate: there is nothing to try before
              // installing one (RenewalChecks.test.ts tries them over mTLS).
              controlPlaneUrl: "http://127.0.0.1:9",
              clientCert: certFile,
              clientKey: HOST_KEY_FILE,
              sshHostKeyFile: HOST_KEY_FILE,
              renewalThresholdFraction: threshold
            }),
            scriptedClient(calls, answers),
            Shutdown.layer
          ))
        )
      )
      return { certFile, calls }
    })

  const renewedCount = (outcome: string) =>
    Effect.map(Metric.value(Metric.tagged(certificateRenewals, "outcome", outcome)), (state) => state.count)

  it.scoped("checks at once and every 60 s; renews below the threshold and rewrites the certificate", () =>
    Effect.gen(function*() {
      const renewedPem = yield* Effect.promise(() => selfSigned(HOST_KEY, seconds(60), seconds(1000)))
      const before = yield* renewedCount("renewed")
      const { calls, certFile } = yield* runFiber(0.5, {
        renew: () => Effect.succeed({ certPem: renewedPem, notAfter: seconds(1000) })
      })
      const original = Fs.readFileSync(certFile, "utf8")
      // At 0 s all of the validity remains: no renewal. Nor at 59 s (41 %).
      yield* untilSleeping
      yield* TestClock.adjust("59 seconds")
      expect(yield* Queue.size(calls)).toBe(0)
      expect(Fs.readFileSync(certFile, "utf8")).toBe(original)
      // The check at 60 s sees 40 % < 50 %.
      yield* TestClock.adjust("1 second")
      const request = (yield* Queue.take(calls)) as { csrPem: string }
      expect(new x509.Pkcs10CertificateRequest(request.csrPem).subjectName.getField("CN")).toEqual([HOST])
      yield* untilSleeping
      expect(Fs.readFileSync(certFile, "utf8")).toBe(renewedPem)
      expect(Fs.statSync(certFile).mode & 0o777).toBe(0o600)
      expect((yield* renewedCount("renewed")) - before).toBe(1)
      // The new certificate has 94 % left at the next check: nothing to do.
      yield* TestClock.adjust("60 seconds")
      yield* untilSleeping
      expect(yield* Queue.size(calls)).toBe(0)
    }))

  it.scoped("a failed renewal is logged, counted and retried 30 s later; the fiber carries on", () =>
    Effect.gen(function*() {
      const renewedPem = yield* Effect.promise(() => selfSigned(HOST_KEY, seconds(90), seconds(1000)))
      const failedBefore = yield* renewedCount("failed")
      const attempts = yield* Ref.make(0)
      const { calls, certFile } = yield* runFiber(0.5, {
        renew: (index) =>
          Effect.zipRight(
            Ref.update(attempts, (n) => n + 1),
            index < 2
              ? Effect.fail(
                new StatusError({ request: "POST /v1/agent/renew", status: 500, retryAfterSecs: null, body: "" })
              )
              : Effect.succeed({ certPem: renewedPem, notAfter: seconds(1000) })
          )
      })
      yield* untilSleeping
      yield* TestClock.adjust("60 seconds")
      yield* Queue.take(calls)
      yield* untilSleeping
      expect((yield* renewedCount("failed")) - failedBefore).toBe(1)
      yield* TestClock.adjust("29 seconds")
      expect(yield* Queue.size(calls)).toBe(0)
      yield* TestClock.adjust("1 second")
      yield* Queue.take(calls)
      yield* untilSleeping
      expect((yield* renewedCount("failed")) - failedBefore).toBe(2)
      yield* TestClock.adjust("30 seconds")
      yield* Queue.take(calls)
      yield* untilSleeping
      expect(Fs.readFileSync(certFile, "utf8")).toBe(renewedPem)
      expect(yield* Ref.get(attempts)).toBe(3)
      const warnings = (yield* CapturedLogs.lines).filter((line) => line.startsWith("WARN"))
      expect(warnings).toHaveLength(2)
      expect(warnings[0]).toMatch(/client certificate renewal failed; retrying in 30s reason=.*HTTP 500/)
    }).pipe(Effect.provide(captureLogs)))

  it.scoped("a refused certificate is one ERROR naming the check, counted as refused and retried 30 s later; the working one stays", () =>
    Effect.gen(function*() {
      const expired = yield* Effect.promise(() => selfSigned(HOST_KEY, seconds(0), seconds(50)))
      const renewedPem = yield* Effect.promise(() => selfSigned(HOST_KEY, seconds(60), seconds(1000)))
      const refusedBefore = yield* renewedCount("refused")
      const { calls, certFile } = yield* runFiber(0.5, {
        renew: (index) => Effect.succeed({ certPem: index === 0 ? expired : renewedPem, notAfter: seconds(1000) })
      })
      const original = Fs.readFileSync(certFile)
      yield* untilSleeping
      yield* TestClock.adjust("60 seconds")
      yield* Queue.take(calls)
      yield* untilSleeping
      expect(Fs.readFileSync(certFile).equals(original)).toBe(true)
      expect((yield* renewedCount("refused")) - refusedBefore).toBe(1)
      const errors = (yield* CapturedLogs.lines).filter((line) => line.startsWith("ERROR"))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(
        /^ERROR renewed client certificate refused: it fails the validity check; .* retrying in 30s /
      )
      expect(errors[0]).toContain("reason=it expired at 1970-01-01T00:00:50.000Z")
      yield* TestClock.adjust("29 seconds")
      expect(yield* Queue.size(calls)).toBe(0)
      yield* TestClock.adjust("1 second")
      yield* Queue.take(calls)
      yield* untilSleeping
      expect(Fs.readFileSync(certFile, "utf8")).toBe(renewedPem)
      expect((yield* renewedCount("refused")) - refusedBefore).toBe(1)
    }).pipe(Effect.provide(captureLogs)))

  it.scoped("without a threshold there is no renewal fiber", () =>
    Effect.gen(function*() {
      const { calls } = yield* runFiber(null, { renew: () => Effect.dieMessage("must not renew") })
      yield* TestClock.adjust("1 hour")
      expect(yield* TestClock.sleeps()).toHaveLength(0)
      expect(yield* Queue.size(calls)).toBe(0)
    }))
})
