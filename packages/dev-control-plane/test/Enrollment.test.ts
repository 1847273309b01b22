/**
 * `POST /v1/enroll` and `POST /v1/agent/renew` over TLS: the ordered checks of spec §5.3
 * and §5.4, the certificates issued, token minting (library and operator API) and the
 * request log that names each request's client certificate.
 */
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import * as Effect from "effect/Effect"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { type DevControlPlane, type DevControlPlaneOptions, NOT_READY_BODY, start } from "../src/index.js"
import { closure, iso, JSON_HEADERS, postJson, request, type RequestOptions } from "./support.js"

const HOST = "web-01"
const DAY = 24 * 3600_000

interface HostKey {
  readonly privateKeyPem: string
  readonly publicKeyPem: string
  /** `ssh-ed25519 AAAA…`, as `ssh_host_ed25519_key.pub` has it. */
  readonly openSsh: string
  readonly keys: Crypto.webcrypto.CryptoKeyPair
}

const sshString = (bytes: Uint8Array) => {
  const length = Buffer.alloc(4)
  length.writeUInt32BE(bytes.length)
  return Buffer.concat([length, bytes])
}

const hostKey = (): Effect.Effect<HostKey> =>
  Effect.promise(async () => {
    const keys = await Crypto.webcrypto.subtle.generateKey({ name: "Ed25519" }, true, [
      "sign",
      "verify"
    ]) as Crypto.webcrypto.CryptoKeyPair
    const privateKey = Crypto.KeyObject.from(keys.privateKey)
    const publicKey = Crypto.KeyObject.from(keys.publicKey)
    const raw = Buffer.from(publicKey.export({ format: "jwk" }).x ?? "", "base64url")
    const blob = Buffer.concat([sshString(Buffer.from("ssh-ed25519")), sshString(raw)])
    return {
      privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
      publicKeyPem: publicKey.export({ format: "pem", type: "spki" }).toString(),
      openSsh: `ssh-ed25519 ${blob.toString("base64")} test`,
      keys
    }
  })

const csrFor = (commonName: string, keys: Crypto.webcrypto.CryptoKeyPair, algorithm: object = { name: "Ed25519" }) =>
  Effect.promise(async () =>
    (await x509.Pkcs10CertificateRequestGenerator.create(
      { name: [{ CN: [commonName] }], keys, signingAlgorithm: algorithm },
      Crypto.webcrypto
    )).toString("pem")
  )

const p256Keys = () =>
  Effect.promise(() =>
    Crypto.webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify"
    ]) as Promise<Crypto.webcrypto.CryptoKeyPair>
  )

const caOf = (cp: DevControlPlane) => Fs.readFileSync(cp.caFile ?? "", "utf8")

const enrollRequest = (cp: DevControlPlane, body: unknown) =>
  postJson(`${cp.url}/v1/enroll`, body, cp.caFile === null ? {} : { ca: caOf(cp) })

const renewRequest = (cp: DevControlPlane, csrPem: string, identity: RequestOptions) =>
  postJson(`${cp.url}/v1/agent/renew`, { csrPem }, { ...identity, ca: caOf(cp) })

/** A TLS control plane whose fleet declares `key` for web-01 (and a host without a key). */
const fleetWith = (key: HostKey, options: DevControlPlaneOptions = {}) =>
  Effect.gen(function*() {
    const cp = yield* start({ tls: true, ...options })
    yield* cp.publishRollout({
      channel: "stable",
      hosts: [
        { hostname: HOST, targetClosure: closure(HOST), pubkey: key.openSsh },
        { hostname: "keyless", targetClosure: closure("keyless") }
      ],
      dispatch: false
    })
    return cp
  })

const fingerprintOf = (pem: string) => new Crypto.X509Certificate(pem).fingerprint256

describe("enrollment", () => {
  it.scopedLive("a minted token and a CSR for the declared key get a certificate that authenticates the host", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const cp = yield* fleetWith(key)
      const token = yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: key.openSsh })
      const answer = yield* enrollRequest(cp, { token, csrPem: yield* csrFor(HOST, key.keys) })
      expect(answer.status, answer.text).toBe(200)
      const body = JSON.parse(answer.text)
      const certificate = new x509.X509Certificate(body.certPem)
      expect(certificate.subject).toBe("CN=agent-web-01.fleet.lab.internal")
      expect(body.notAfter).toBe(iso(certificate.notAfter).replace(".000Z", "Z"))
      expect(certificate.notAfter.getTime() - certificate.notBefore.getTime()).toBe(30 * DAY)
      expect(Crypto.createPublicKey(body.certPem).export({ format: "pem", type: "spki" })).toBe(key.publicKeyPem)
      expect(
        yield* Effect.promise(() => certificate.verify({ publicKey: new x509.X509Certificate(caOf(cp)).publicKey }))
      )
        .toBe(true)
      const heartbeat = yield* postJson(`${cp.url}/v1/agent/heartbeat`, { hostname: HOST, at: iso(new Date()) }, {
        ca: caOf(cp),
        cert: body.certPem,
        key: key.privateKeyPem
      })
      expect(heartbeat.status).toBe(200)
      // The token is spent.
      const replay = yield* enrollRequest(cp, { token, csrPem: yield* csrFor(HOST, key.keys) })
      expect(replay.status).toBe(409)
      expect(JSON.parse(replay.text).error).toBe("bootstrap token already used")
    }))

  it.scopedLive("refusals come in the real control plane's order, and only issuance spends the nonce", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const other = yield* hostKey()
      const cp = yield* fleetWith(key)
      const csr = yield* csrFor(HOST, key.keys)
      const status = (body: unknown) => Effect.map(enrollRequest(cp, body), (answer) => answer.status)

      // Expired (and not yet valid) tokens are 401, even with a CSR that does not parse.
      const expired = yield* cp.mintBootstrapToken({
        hostname: HOST,
        pubkey: key.openSsh,
        issuedAt: new Date(Date.now() - 2 * DAY),
        expiresAt: new Date(Date.now() - DAY)
      })
      const expiredAnswer = yield* enrollRequest(cp, { token: expired, csrPem: "garbage" })
      expect([expiredAnswer.status, JSON.parse(expiredAnswer.text).error]).toEqual([401, "bootstrap token expired"])
      const early = yield* cp.mintBootstrapToken({
        hostname: HOST,
        pubkey: key.openSsh,
        issuedAt: new Date(Date.now() + DAY)
      })
      const earlyAnswer = yield* enrollRequest(cp, { token: early, csrPem: "garbage" })
      expect([earlyAnswer.status, JSON.parse(earlyAnswer.text).error]).toEqual([
        401,
        "bootstrap token expired or not yet valid"
      ])

      const token = yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: key.openSsh })
      // A nonce the control plane never minted; a signature that does not verify.
      expect(yield* status({ token: { ...token, claims: { ...token.claims, nonce: "0".repeat(32) } }, csrPem: csr }))
        .toBe(401)
      const forged = Buffer.from(token.signature, "base64")
      forged[0] = forged[0]! ^ 1
      expect(yield* status({ token: { ...token, signature: forged.toString("base64") }, csrPem: csr })).toBe(401)
      // A token that verifies, then the CSR: garbage 400; CN or key not the token's 401.
      expect(yield* status({ token, csrPem: "garbage" })).toBe(400)
      expect(yield* status({ token, csrPem: yield* csrFor("web-02", key.keys) })).toBe(401)
      expect(yield* status({ token, csrPem: yield* csrFor(HOST, other.keys) })).toBe(401)

      // Host key binding: a host the fleet does not list, a host without a key, another key.
      const unlisted = yield* cp.mintBootstrapToken({ hostname: "web-02", pubkey: key.openSsh })
      expect(yield* status({ token: unlisted, csrPem: yield* csrFor("web-02", key.keys) })).toBe(401)
      const keyless = yield* cp.mintBootstrapToken({ hostname: "keyless", pubkey: key.openSsh })
      expect(yield* status({ token: keyless, csrPem: yield* csrFor("keyless", key.keys) })).toBe(401)
      const wrongKey = yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: other.openSsh })
      const wrongAnswer = yield* enrollRequest(cp, { token: wrongKey, csrPem: yield* csrFor(HOST, other.keys) })
      expect(wrongAnswer.status).toBe(401)
      expect(JSON.parse(wrongAnswer.text).error).toBe("the CSR key is not the host key declared in fleet.resolved")

      // None of those refusals spent `token`; once issued, a replay is 409 before anything else.
      expect(yield* status({ token, csrPem: csr })).toBe(200)
      expect(yield* status({ token, csrPem: "garbage" })).toBe(409)
      // A refusal for the host key did not spend the nonce either: the fleet now declares it.
      yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: closure(HOST), pubkey: other.openSsh }],
        dispatch: false
      })
      expect(yield* status({ token: wrongKey, csrPem: yield* csrFor(HOST, other.keys) })).toBe(200)
    }))

  it.scopedLive("readiness and fleet: 503 before the first artifact, and when no fleet is held", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const cp = yield* start({ tls: true })
      const token = yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: key.openSsh })
      const body = { token, csrPem: yield* csrFor(HOST, key.keys) }
      const cold = yield* enrollRequest(cp, body)
      expect(cold.status).toBe(503)
      expect(cold.text).toBe(NOT_READY_BODY)
      yield* cp.setReady(true)
      const noFleet = yield* enrollRequest(cp, body)
      expect(noFleet.status).toBe(503)
      expect(JSON.parse(noFleet.text).error).toBe("no verified fleet.resolved snapshot")
    }))

  it.scopedLive("without TLS there is no CA to sign with: 500 after every other check", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const cp = yield* start()
      yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: closure(HOST), pubkey: key.openSsh }],
        dispatch: false
      })
      const token = yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: key.openSsh })
      const answer = yield* enrollRequest(cp, { token, csrPem: yield* csrFor(HOST, key.keys) })
      expect(answer.status).toBe(500)
      expect(JSON.parse(answer.text).error).toBe("no CA signer configured")
    }))

  it.scopedLive("the body is checked like every JSON route: content type, JSON, shape", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const cp = yield* fleetWith(key)
      const ca = caOf(cp)
      const url = `${cp.url}/v1/enroll`
      expect((yield* request(url, { ca, method: "POST", body: "{}" })).status).toBe(415)
      expect((yield* request(url, { ca, method: "POST", headers: JSON_HEADERS, body: "{" })).status).toBe(400)
      expect((yield* request(url, { ca, method: "POST", headers: JSON_HEADERS, body: "{}" })).status).toBe(422)
      expect((yield* request(url, { ca })).status).toBe(405)
    }))

  it.scopedLive("mintBootstrapToken dies for a key that is not an OpenSSH ed25519 line or an empty validity", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true })
      const key = yield* hostKey()
      expect((yield* Effect.exit(cp.mintBootstrapToken({ hostname: HOST, pubkey: key.publicKeyPem })))._tag)
        .toBe("Failure")
      const now = new Date()
      expect(
        (yield* Effect.exit(
          cp.mintBootstrapToken({ hostname: HOST, pubkey: key.openSsh, issuedAt: now, expiresAt: now })
        ))
          ._tag
      ).toBe("Failure")
      const token = yield* cp.mintBootstrapToken({ hostname: HOST, pubkey: key.openSsh })
      expect(token.version).toBe(1)
      expect(token.claims.nonce).toMatch(/^[0-9a-f]{32}$/)
      expect(new Date(token.claims.expiresAt).getTime() - new Date(token.claims.issuedAt).getTime()).toBe(DAY)
      const raw = Buffer.from(Crypto.createPublicKey(key.publicKeyPem).export({ format: "jwk" }).x ?? "", "base64url")
      expect(token.claims.expectedPubkeyFingerprint).toBe(Crypto.createHash("sha256").update(raw).digest("base64"))
    }))
})

describe("renewal", () => {
  it.scopedLive("a CSR for the declared key gets a new certificate; the request log names each request's certificate", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const cp = yield* fleetWith(key)
      const old = yield* cp.issueClientCertificate(HOST, key.publicKeyPem, {
        issuedAt: new Date(Date.now() - 20 * DAY)
      })
      const answer = yield* renewRequest(cp, yield* csrFor(HOST, key.keys), { cert: old, key: key.privateKeyPem })
      expect(answer.status, answer.text).toBe(200)
      const renewed = JSON.parse(answer.text).certPem as string
      const certificate = new x509.X509Certificate(renewed)
      expect(certificate.subject).toBe("CN=agent-web-01.fleet.lab.internal")
      expect(Math.abs(certificate.notBefore.getTime() - Date.now())).toBeLessThan(60_000)
      expect(Crypto.createPublicKey(renewed).export({ format: "pem", type: "spki" })).toBe(key.publicKeyPem)
      const heartbeat = yield* postJson(`${cp.url}/v1/agent/heartbeat`, { hostname: HOST, at: iso(new Date()) }, {
        ca: caOf(cp),
        cert: renewed,
        key: key.privateKeyPem
      })
      expect(heartbeat.status).toBe(200)
      const log = (yield* cp.requests).map((
        entry
      ) => [entry.path, entry.status, entry.clientCertificate?.fingerprint256])
      expect(log).toEqual([
        ["/v1/agent/renew", 200, fingerprintOf(old)],
        ["/v1/agent/heartbeat", 200, fingerprintOf(renewed)]
      ])
      // The operator API shows the same log.
      const operator = JSON.parse((yield* request(`${cp.url}/v1/operator/requests`, { ca: caOf(cp) })).text)
      expect(
        operator.map((entry: { clientCertificate: { fingerprint256: string } }) =>
          entry.clientCertificate.fingerprint256
        )
      ).toEqual([fingerprintOf(old), fingerprintOf(renewed)])
    }))

  it.scopedLive("refusals: no certificate 401, bad CSR 400, not ed25519 400, another key 401; CN from the CSR", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const other = yield* hostKey()
      const cp = yield* fleetWith(key)
      const identity = { cert: yield* cp.issueClientCertificate(HOST, key.publicKeyPem), key: key.privateKeyPem }
      const csr = yield* csrFor(HOST, key.keys)
      expect((yield* renewRequest(cp, csr, {})).status).toBe(401)
      expect((yield* renewRequest(cp, "garbage", identity)).status).toBe(400)
      const ecdsa = yield* csrFor(HOST, yield* p256Keys(), { name: "ECDSA", hash: "SHA-256" })
      expect((yield* renewRequest(cp, ecdsa, identity)).status).toBe(400)
      expect((yield* renewRequest(cp, yield* csrFor(HOST, other.keys), identity)).status).toBe(401)
      // A host the fleet does not list (its certificate is from an earlier fleet) is 401.
      const stranger = yield* hostKey()
      const strangerIdentity = {
        cert: yield* cp.issueClientCertificate("web-09", stranger.publicKeyPem),
        key: stranger.privateKeyPem
      }
      expect((yield* renewRequest(cp, yield* csrFor("web-09", stranger.keys), strangerIdentity)).status).toBe(401)
      // Upstream takes the new certificate's CN from the CSR, not from the client certificate.
      const renamed = yield* renewRequest(cp, yield* csrFor("web-07", key.keys), identity)
      expect(renamed.status).toBe(200)
      expect(new x509.X509Certificate(JSON.parse(renamed.text).certPem).subject).toBe(
        "CN=agent-web-07.fleet.lab.internal"
      )
    }))

  it.scopedLive("a fault on renew answers instead of the handler, after the identity check", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const cp = yield* fleetWith(key)
      const identity = { cert: yield* cp.issueClientCertificate(HOST, key.publicKeyPem), key: key.privateKeyPem }
      yield* cp.setFault("renew", { _tag: "Status", status: 500, body: "{\"error\":\"boom\"}" })
      expect((yield* renewRequest(cp, yield* csrFor(HOST, key.keys), {})).status).toBe(401)
      expect((yield* renewRequest(cp, yield* csrFor(HOST, key.keys), identity)).status).toBe(500)
      yield* cp.setFault("renew", undefined)
      expect((yield* renewRequest(cp, yield* csrFor(HOST, key.keys), identity)).status).toBe(200)
    }))
})

describe("operator API: bootstrap tokens", () => {
  it.scopedLive("mints a token from JSON that enrolls the host; 422 for an invalid request", () =>
    Effect.gen(function*() {
      const key = yield* hostKey()
      const cp = yield* fleetWith(key)
      const url = `${cp.url}/v1/operator/bootstrap-tokens`
      const minted = yield* request(url, {
        ca: caOf(cp),
        method: "POST",
        body: JSON.stringify({ hostname: HOST, pubkey: key.openSsh, expiresAt: iso(new Date(Date.now() + 3600_000)) })
      })
      expect(minted.status, minted.text).toBe(200)
      const token = JSON.parse(minted.text)
      expect(Object.keys(token).sort()).toEqual(["claims", "signature", "version"])
      expect((yield* enrollRequest(cp, { token, csrPem: yield* csrFor(HOST, key.keys) })).status).toBe(200)
      const invalid = yield* request(url, {
        ca: caOf(cp),
        method: "POST",
        body: JSON.stringify({ hostname: HOST, pubkey: "ssh-rsa AAAA" })
      })
      expect(invalid.status).toBe(422)
      expect((yield* request(url, { ca: caOf(cp) })).status).toBe(405)
    }))
})
