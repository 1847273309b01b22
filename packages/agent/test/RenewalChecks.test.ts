/**
 * A renewal answer is not trusted: against the TLS dev control plane, whose renew route is
 * made to answer 200 with a crafted certificate (an expired one, one not valid yet, one
 * from another CA, one for another machine, one for another key, garbage), each is refused
 * with the check it failed and the working certificate stays byte for byte. A valid one is
 * tried over mTLS before it is installed, and kept out when the control plane does not
 * take it.
 */
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, start } from "@nixfleet/dev-control-plane"
import * as x509 from "@peculiar/x509"
import { Effect, Either, Layer, Metric } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { AgentConfig } from "../src/config/AgentConfig.js"
import { ControlPlaneClient, ControlPlaneTransport } from "../src/controlplane/ControlPlaneClient.js"
import { certificateRenewals, checkRenewal } from "../src/identity/CertificateRenewal.js"
import * as CertificateRenewal from "../src/identity/CertificateRenewal.js"
import { checkRenewed } from "../src/identity/ClientCertificate.js"
import { certificateValidity, hostKeyFrom } from "../src/identity/hostIdentity.js"
import { Shutdown } from "../src/runtime/Shutdown.js"
import { certificatesIn, renewalVerdict } from "../src/support/certificateChecks.js"
import { privateKeyFrom } from "../src/support/sshKey.js"
import { eventually, stateDirectory } from "./support/agentHarness.js"
import { cryptoKeys, fingerprintOf, HOST_KEY, HOST_KEY_FILE, HOST_PUBKEY, HOST_SPKI } from "./support/certificates.js"
import { TARGET } from "./support/fixtures.js"
import { CapturedLogs, captureLogs } from "./support/logs.js"

const HOST = "web-01"
const DAY = 24 * 3600_000
const TIMEOUT = 60_000
const TRIAL = "/v1/fleet.resolved/sig"

/**
 * A host whose certificate, issued 29 of its 30 days ago, is due for renewal, against a
 * ready control plane that declares its key.
 */
const dueHost = Effect.gen(function*() {
  const cp = yield* start({ tls: true })
  yield* cp.publishRollout({
    channel: "stable",
    hosts: [{ hostname: HOST, targetClosure: TARGET, pubkey: HOST_PUBKEY }],
    soakMinutes: 0.02,
    dispatch: false
  })
  const dir = yield* stateDirectory
  const certFile = Path.join(dir, "agent-cert.pem")
  const working = yield* cp.issueClientCertificate(HOST, HOST_SPKI, { issuedAt: new Date(Date.now() - 29 * DAY) })
  Fs.writeFileSync(certFile, working, { mode: 0o600 })
  const config = AgentConfig.make({
    machineId: HOST,
    stateDir: dir,
    controlPlaneUrl: cp.url,
    trustFile: cp.trustFile,
    caCert: cp.caFile,
    clientCert: certFile,
    clientKey: HOST_KEY_FILE,
    sshHostKeyFile: HOST_KEY_FILE,
    renewalThresholdFraction: 0.5
  })
  const client = ControlPlaneClient.layer.pipe(Layer.provide(ControlPlaneTransport.layer), Layer.provideMerge(config))
  const renewOnce = checkRenewal({ certFile, keyFile: HOST_KEY_FILE, threshold: 0.5 }).pipe(
    Effect.provide(client),
    Effect.either
  )
  return { cp, certFile, working, config, client, renewOnce }
})

/** The renew route answers 200 with `certPem`, whatever the CSR. */
const answerRenewalWith = (cp: DevControlPlane, certPem: string) =>
  cp.setFault("renew", {
    _tag: "Status",
    status: 200,
    body: JSON.stringify({ certPem, notAfter: new Date(Date.now() + 30 * DAY).toISOString() })
  })

const trials = (cp: DevControlPlane) =>
  Effect.map(
    cp.requests,
    (requests) => requests.filter((r) => r.path === TRIAL).map((r) => [r.status, r.clientCertificate?.fingerprint256])
  )

const otherSpki = () =>
  Crypto.generateKeyPairSync("ed25519").publicKey.export({ format: "pem", type: "spki" }).toString()

/** A CA of the test's own (ed25519), named `name`, that issues certificates as asked. */
const makeCa = async (name: string) => {
  const keys = await cryptoKeys(Crypto.generateKeyPairSync("ed25519").privateKey)
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${name}`,
    notBefore: new Date(0),
    notAfter: new Date(4_000_000_000_000),
    keys,
    signingAlgorithm: { name: "Ed25519" },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)
    ]
  })
  return {
    pem: ca.toString("pem"),
    issue: async (subject: string, publicKey: Crypto.KeyObject, notBefore: Date, notAfter: Date) =>
      (await x509.X509CertificateGenerator.create({
        serialNumber: Crypto.randomBytes(8).toString("hex").replace(/^./, "1"),
        subject,
        issuer: ca.subject,
        notBefore,
        notAfter,
        publicKey: new Uint8Array(publicKey.export({ format: "der", type: "spki" })),
        signingKey: keys.privateKey,
        signingAlgorithm: { name: "Ed25519" }
      })).toString("pem")
  }
}

describe("the checks of a renewed certificate", () => {
  const NOW = new Date("2026-06-01T00:00:00Z")
  const at = (seconds: number) => new Date(NOW.getTime() + seconds * 1000)
  const privateKey = privateKeyFrom(HOST_KEY)
  const publicKey = Crypto.createPublicKey(privateKey)
  const verdict = (args: { certPem: string; currentPem: string; ca: string | null; machineId?: string }) =>
    renewalVerdict({
      certPem: args.certPem,
      currentPem: args.currentPem,
      ca: args.ca === null ? null : certificatesIn(args.ca),
      machineId: args.machineId ?? HOST,
      privateKey,
      now: NOW,
      x509
    })

  it.effect("a certificate's validity is read without the x509 library, as that library reads it", () =>
    Effect.gen(function*() {
      const ca = yield* Effect.promise(() => makeCa("fleet CA"))
      // Past 2049 a certificate's dates are GeneralizedTime rather than UTCTime.
      const spans = [[at(-60), at(3600)], [new Date("2049-12-31T23:59:58Z"), new Date("2051-01-05T09:08:07Z")]]
      for (const [from, to] of spans) {
        const pem = yield* Effect.promise(() => ca.issue(`CN=${HOST}`, publicKey, from!, to!))
        const parsed = new x509.X509Certificate(pem)
        expect(certificateValidity(pem)).toStrictEqual({ notBefore: parsed.notBefore, notAfter: parsed.notAfter })
        expect(certificateValidity(pem)).toStrictEqual({ notBefore: from, notAfter: to })
      }
      expect(() => certificateValidity("not a certificate")).toThrow()
    }))

  it.effect("the CN names this machine: bare, or agent-<id>.<suffix> with the current certificate's suffix", () =>
    Effect.gen(function*() {
      const ca = yield* Effect.promise(() => makeCa("fleet CA"))
      const issue = (cn: string) => Effect.promise(() => ca.issue(`CN=${cn}`, publicKey, at(-60), at(3600)))
      const canonical = yield* issue("agent-web-01.fleet.lab.internal")
      const bare = yield* issue("web-01")
      const cases: ReadonlyArray<readonly [string, string, boolean]> = [
        [bare, "web-01", true],
        [bare, "agent-web-01.fleet.lab.internal", true],
        [canonical, "agent-web-01.fleet.lab.internal", true],
        [canonical, "web-01", true],
        [canonical, "agent-web-01.other.example", false],
        [bare, "agent-web-01.", false],
        [bare, "agent-web-011.fleet.lab.internal", false],
        [bare, "web-02", false],
        [bare, "agent-web-02.fleet.lab.internal", false]
      ]
      for (const [currentPem, cn, accepted] of cases) {
        const result = verdict({ certPem: yield* issue(cn), currentPem, ca: ca.pem })
        expect(result._tag, `${cn} after ${currentPem === bare ? "a bare CN" : "a canonical CN"}`).toBe(
          accepted ? "Accepted" : "Refused"
        )
        if (!accepted) expect(result).toMatchObject({ check: "machine" })
      }
      // Two CNs: which one the control plane reads is not for the agent to guess.
      const twice = yield* Effect.promise(() => ca.issue("CN=web-01+CN=web-02", publicKey, at(-60), at(3600)))
      expect(verdict({ certPem: twice, currentPem: bare, ca: ca.pem })).toMatchObject({ check: "machine" })
    }))

  it.effect("valid now: notBefore up to 60 s ahead, notAfter strictly after now", () =>
    Effect.gen(function*() {
      const ca = yield* Effect.promise(() => makeCa("fleet CA"))
      const current = yield* Effect.promise(() => ca.issue("CN=web-01", publicKey, at(-3600), at(60)))
      const within = (notBefore: number, notAfter: number) =>
        Effect.map(
          Effect.promise(() => ca.issue("CN=web-01", publicKey, at(notBefore), at(notAfter))),
          (certPem) => verdict({ certPem, currentPem: current, ca: ca.pem })
        )
      expect(yield* within(60, 3600)).toMatchObject({ _tag: "Accepted", chain: "ca", notAfter: at(3600) })
      expect(yield* within(61, 3600)).toMatchObject({
        check: "validity",
        detail: expect.stringMatching(/not valid before/)
      })
      expect(yield* within(-3600, 1)).toMatchObject({ _tag: "Accepted" })
      expect(yield* within(-3600, 0)).toMatchObject({ check: "validity", detail: expect.stringMatching(/expired at/) })
    }))

  it.effect("--ca-cert: the issuer is one of its certificates, by name and by signature", () =>
    Effect.gen(function*() {
      const ca = yield* Effect.promise(() => makeCa("fleet CA"))
      const other = yield* Effect.promise(() => makeCa("other CA"))
      // Another CA of the same name: only the signature tells them apart.
      const namesake = yield* Effect.promise(() => makeCa("fleet CA"))
      const issue = (by: typeof ca) => Effect.promise(() => by.issue("CN=web-01", publicKey, at(-60), at(3600)))
      const current = yield* issue(ca)
      expect(verdict({ certPem: yield* issue(ca), currentPem: current, ca: ca.pem })).toMatchObject({ chain: "ca" })
      expect(verdict({ certPem: yield* issue(other), currentPem: current, ca: ca.pem })).toMatchObject({
        check: "chain",
        detail: expect.stringMatching(/its issuer "CN=other CA" is not the --ca-cert CA/)
      })
      expect(verdict({ certPem: yield* issue(namesake), currentPem: current, ca: ca.pem })).toMatchObject({
        check: "chain",
        detail: "its signature does not verify with the --ca-cert CA's key"
      })
      // A CA file of several certificates: any of them may be the issuer.
      expect(verdict({ certPem: yield* issue(ca), currentPem: current, ca: `${other.pem}${ca.pem}` }))
        .toMatchObject({ _tag: "Accepted", chain: "ca" })
    }))

  it.effect("without --ca-cert: the current issuer, by its key when the current file holds it, else by its name", () =>
    Effect.gen(function*() {
      const ca = yield* Effect.promise(() => makeCa("fleet CA"))
      const namesake = yield* Effect.promise(() => makeCa("fleet CA"))
      const other = yield* Effect.promise(() => makeCa("other CA"))
      const issue = (by: typeof ca) => Effect.promise(() => by.issue("CN=web-01", publicKey, at(-60), at(3600)))
      const leafOnly = yield* issue(ca)
      const withChain = `${leafOnly}${ca.pem}`
      expect(verdict({ certPem: yield* issue(ca), currentPem: withChain, ca: null })).toMatchObject({ chain: "issuer" })
      expect(verdict({ certPem: yield* issue(namesake), currentPem: withChain, ca: null })).toMatchObject({
        check: "chain",
        detail: "its signature does not verify with the key of the current certificate's issuer"
      })
      expect(verdict({ certPem: yield* issue(other), currentPem: leafOnly, ca: null })).toMatchObject({
        check: "chain",
        detail: expect.stringMatching(/its issuer "CN=other CA" is not the current certificate's "CN=fleet CA"/)
      })
      // The issuer's certificate unknown: the name is all there is to compare.
      expect(verdict({ certPem: yield* issue(namesake), currentPem: leafOnly, ca: null })).toMatchObject({
        _tag: "Accepted",
        chain: "issuer-name"
      })
    }))

  it.live("checkRenewed says when the chain was only checked by the issuer's name", () =>
    Effect.gen(function*() {
      const ca = yield* Effect.promise(() => makeCa("fleet CA"))
      const leafOnly = yield* Effect.promise(() =>
        ca.issue("CN=web-01", publicKey, new Date(Date.now() - 60_000), new Date(Date.now() + 3600_000))
      )
      const renewed = yield* Effect.promise(() =>
        ca.issue("CN=web-01", publicKey, new Date(Date.now() - 60_000), new Date(Date.now() + 7200_000))
      )
      const key = hostKeyFrom(HOST_KEY)
      const run = (currentPem: string) =>
        Effect.gen(function*() {
          yield* checkRenewed({ certPem: renewed, currentPem, caFile: null, machineId: HOST, key })
          return (yield* CapturedLogs.lines).filter((line) => line.startsWith("WARN"))
        }).pipe(Effect.provide(captureLogs))
      expect(yield* run(leafOnly)).toEqual([
        "WARN the renewed certificate's chain could not be checked beyond its issuer name: no --ca-cert, and the current certificate file holds no issuer certificate"
      ])
      expect(yield* run(`${leafOnly}${ca.pem}`)).toEqual([])
    }))
})

describe("a renewed certificate is checked before it is installed", () => {
  it.scopedLive(
    "an expired one, one not valid yet, another CA's, another machine's, another key's, garbage: each refused, the working one kept",
    () =>
      Effect.gen(function*() {
        const { certFile, cp, renewOnce, working } = yield* dueHost
        const foreign = yield* start({ tls: true })
        const now = Date.now()
        const before = Fs.readFileSync(certFile)
        const hostile: ReadonlyArray<readonly [string, string, RegExp]> = [
          [
            yield* cp.issueClientCertificate(HOST, HOST_SPKI, { issuedAt: new Date(now - 31 * DAY) }),
            "validity",
            /it expired at /
          ],
          [
            yield* cp.issueClientCertificate(HOST, HOST_SPKI, { issuedAt: new Date(now + DAY) }),
            "validity",
            /it is not valid before /
          ],
          [yield* foreign.issueClientCertificate(HOST, HOST_SPKI), "chain", /is not the --ca-cert CA/],
          [
            yield* cp.issueClientCertificate("web-02", HOST_SPKI),
            "machine",
            /CN \["agent-web-02\.fleet\.lab\.internal"\] does not name this machine "web-01"/
          ],
          [yield* cp.issueClientCertificate(HOST, otherSpki()), "key", /certifies another key than ours/],
          ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate", /cannot be read/],
          ["not a certificate", "certificate", /holds no PEM certificate/]
        ]
        for (const [certPem, check, detail] of hostile) {
          yield* answerRenewalWith(cp, certPem)
          const outcome = yield* renewOnce
          expect(outcome, check).toStrictEqual(
            Either.left(
              expect.objectContaining({ _tag: "CertificateRefused", check, detail: expect.stringMatching(detail) })
            )
          )
          expect(Fs.readFileSync(certFile).equals(before), check).toBe(true)
        }
        // Refused before any trial: the hostile certificates never went out.
        expect(yield* trials(cp)).toEqual([])
        expect(Fs.readFileSync(certFile, "utf8")).toBe(working)
      }),
    TIMEOUT
  )

  it.scopedLive("a valid one is tried over mTLS first, then installed", () =>
    Effect.gen(function*() {
      const { certFile, cp, renewOnce } = yield* dueHost
      const valid = yield* cp.issueClientCertificate(HOST, HOST_SPKI)
      yield* answerRenewalWith(cp, valid)
      expect(yield* renewOnce).toStrictEqual(Either.right("renewed"))
      expect(Fs.readFileSync(certFile, "utf8")).toBe(valid)
      expect(Fs.statSync(certFile).mode & 0o777).toBe(0o600)
      expect(yield* trials(cp)).toEqual([[200, fingerprintOf(valid)]])

      // The control plane's own renewal goes the same way.
      yield* cp.setFault("renew", undefined)
      const due = yield* cp.issueClientCertificate(HOST, HOST_SPKI, { issuedAt: new Date(Date.now() - 29 * DAY) })
      Fs.writeFileSync(certFile, due)
      expect(yield* renewOnce).toStrictEqual(Either.right("renewed"))
      const issued = Fs.readFileSync(certFile, "utf8")
      expect(issued).not.toBe(due)
      expect((yield* trials(cp)).at(-1)).toEqual([200, fingerprintOf(issued)])
    }), TIMEOUT)

  it.scopedLive(
    "one the control plane does not take (403 to the trial) is not installed; the next attempt is",
    () =>
      Effect.gen(function*() {
        const { certFile, cp, renewOnce, working } = yield* dueHost
        yield* cp.setFault("fleet", { _tag: "Status", status: 403, body: "{\"error\":\"certificate revoked\"}" })
        const outcome = yield* renewOnce
        expect(outcome).toStrictEqual(
          Either.left(expect.objectContaining({ _tag: "IdentityRefused", detail: `GET ${TRIAL} answered HTTP 403` }))
        )
        expect(Either.isLeft(outcome) && outcome.left.message).toBe(
          `the control plane did not accept the new client certificate: GET ${TRIAL} answered HTTP 403`
        )
        expect(Fs.readFileSync(certFile, "utf8")).toBe(working)
        const attempts = yield* trials(cp)
        expect(attempts).toHaveLength(1)
        expect(attempts[0]?.[0]).toBe(403)
        // The trial presented the new certificate, not the working one.
        expect(attempts[0]?.[1]).not.toBe(fingerprintOf(working))

        yield* cp.setFault("fleet", undefined)
        expect(yield* renewOnce).toStrictEqual(Either.right("renewed"))
        expect(Fs.readFileSync(certFile, "utf8")).not.toBe(working)
      }),
    TIMEOUT
  )

  it.scopedLive(
    "the renewal fiber logs one ERROR naming the check and counts the attempt as refused",
    () =>
      Effect.gen(function*() {
        const { certFile, client, cp, working } = yield* dueHost
        yield* answerRenewalWith(cp, yield* cp.issueClientCertificate("web-02", HOST_SPKI))
        const refused = Metric.tagged(certificateRenewals, "outcome", "refused")
        const before = (yield* Metric.value(refused)).count
        yield* Effect.gen(function*() {
          yield* Layer.build(CertificateRenewal.layer.pipe(Layer.provide(Layer.merge(client, Shutdown.layer))))
          yield* eventually("a refused renewal", Effect.map(Metric.value(refused), (state) => state.count > before))
          const errors = (yield* CapturedLogs.lines).filter((line) => line.startsWith("ERROR"))
          expect(errors).toHaveLength(1)
          expect(errors[0]).toMatch(
            /^ERROR renewed client certificate refused: it fails the machine check; keeping the current one, retrying in 30s /
          )
          expect(errors[0]).toContain("check=machine")
          expect(errors[0]).toContain(
            "reason=its subject CN [\"agent-web-02.fleet.lab.internal\"] does not name this machine \"web-01\""
          )
        }).pipe(Effect.provide(captureLogs))
        expect(Fs.readFileSync(certFile, "utf8")).toBe(working)
      }),
    TIMEOUT
  )
})
