import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { type DevControlPlane, machineIdFromCommonName, start } from "../src/index.js"
import { closure, envelope, happyPath, iso, JSON_HEADERS, request, type RequestOptions } from "./support.js"

const agentKey = () => {
  const { privateKey, publicKey } = Crypto.generateKeyPairSync("ed25519")
  return {
    key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString()
  }
}

/** A client identity: a certificate issued by the control plane for a fresh ed25519 key. */
const enroll = (cp: DevControlPlane, machineId: string) =>
  Effect.gen(function*() {
    const { key, publicKeyPem } = agentKey()
    const cert = yield* cp.issueClientCertificate(machineId, publicKeyPem)
    return { cert, key, publicKeyPem }
  })

const caOf = (cp: DevControlPlane) => Fs.readFileSync(cp.caFile ?? "", "utf8")

const heartbeatAs = (cp: DevControlPlane, hostname: string, identity: RequestOptions) =>
  request(`${cp.url}/v1/agent/heartbeat`, {
    ...identity,
    ca: caOf(cp),
    method: "POST",
    headers: JSON_HEADERS,
    body: JSON.stringify({ hostname, at: iso(new Date()) })
  })

describe("TLS and client identity", () => {
  it.scopedLive("serves HTTPS with a CA-signed certificate; anonymous clients reach /healthz but get 401 on /v1", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true })
      expect(cp.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
      yield* cp.setReady(true)
      const ca = caOf(cp)
      expect((yield* request(`${cp.url}/healthz`, { ca })).status).toBe(200)
      expect((yield* request(`${cp.url.replace("127.0.0.1", "localhost")}/healthz`, { ca })).status).toBe(200)
      // Without the CA the server certificate is not trusted.
      const untrusted = yield* Effect.either(request(`${cp.url}/healthz`))
      expect(untrusted._tag).toBe("Left")
      for (const path of ["/v1/agent/dispatch?wait=0", "/v1/fleet.resolved", "/v1/rollouts/stable@ab"]) {
        expect((yield* request(`${cp.url}${path}`, { ca })).status, path).toBe(401)
      }
      expect((yield* heartbeatAs(cp, "web-01", {})).status).toBe(401)
      // The readiness and protocol checks come first.
      expect((yield* request(`${cp.url}/v1/fleet.resolved`, { ca, headers: { "x-nixfleet-protocol": "2" } })).status)
        .toBe(426)
      yield* cp.setReady(false)
      expect((yield* request(`${cp.url}/v1/fleet.resolved`, { ca })).status).toBe(503)
      // The trust file names the CA too.
      expect(JSON.parse(Fs.readFileSync(cp.trustFile, "utf8")).rootCaPem).toBe(ca)
    }))

  it.scopedLive("an issued ed25519 certificate authenticates as its machine id", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true })
      const target = closure("web-01")
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: "web-01", targetClosure: target }]
      })
      const identity = yield* enroll(cp, "web-01")
      const heartbeat = yield* heartbeatAs(cp, "web-01", identity)
      expect(heartbeat.status).toBe(200)
      expect(JSON.parse(heartbeat.text).bootstrap_rollouts[0].rolloutId).toBe(rolloutId)
      const dispatch = yield* request(`${cp.url}/v1/agent/dispatch?wait=0`, { ...identity, ca: caOf(cp) })
      expect(dispatch.status).toBe(200)
      expect(JSON.parse(dispatch.text)).toMatchObject({ hostname: "web-01", rollout_id: rolloutId })
      const event = yield* request(`${cp.url}/v1/agent/events`, {
        ...identity,
        ca: caOf(cp),
        method: "POST",
        headers: JSON_HEADERS,
        body: JSON.stringify(envelope("web-01", rolloutId, happyPath(target, "", new Date())[0]!))
      })
      expect(event.status).toBe(204)
      expect((yield* cp.hostStates).get(`${rolloutId}/web-01`)?.state).toBe("Activating")
      // The header that stands in for identity over plain HTTP is ignored with TLS.
      const other = yield* request(`${cp.url}/v1/agent/dispatch?wait=0`, {
        ...identity,
        ca: caOf(cp),
        headers: { "x-nixfleet-machine-id": "web-02" }
      })
      expect(other.status).toBe(204)
    }))

  it.scopedLive("a body naming another host is 403 on heartbeat and events", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true })
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: "web-02", targetClosure: closure("web-02") }]
      })
      const identity = yield* enroll(cp, "web-01")
      expect((yield* heartbeatAs(cp, "web-02", identity)).status).toBe(403)
      const event = yield* request(`${cp.url}/v1/agent/events`, {
        ...identity,
        ca: caOf(cp),
        method: "POST",
        headers: JSON_HEADERS,
        body: JSON.stringify(envelope("web-02", rolloutId, happyPath(closure("web-02"), "", new Date())[0]!))
      })
      expect(event.status).toBe(403)
      expect(yield* cp.events).toEqual([])
      expect(JSON.parse((yield* heartbeatAs(cp, "web-02", identity)).text).hostname).toBe("web-02")
    }))

  it.scopedLive("a certificate from a foreign CA is refused", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true })
      yield* cp.setReady(true)
      const foreign = yield* start({ tls: true })
      const { key, publicKeyPem } = agentKey()
      const cert = yield* foreign.issueClientCertificate("web-01", publicKeyPem)
      const answer = yield* Effect.either(heartbeatAs(cp, "web-01", { cert, key }))
      // Either the TLS handshake fails or the request is 401; it never authenticates.
      if (answer._tag === "Right") expect(answer.right.status).toBe(401)
    }))

  it.scopedLive("issued certificates have the real control plane's shape", () =>
    Effect.gen(function*() {
      const cp = yield* start({ tls: true, cnSuffix: "lab.example" })
      const { cert, publicKeyPem } = yield* enroll(cp, "krach")
      const parsed = new x509.X509Certificate(cert)
      expect(parsed.subject).toBe("CN=agent-krach.lab.example")
      const san = parsed.getExtension(x509.SubjectAlternativeNameExtension)
      expect(san?.names.toJSON()).toEqual([{ type: "dns", value: "agent-krach.lab.example" }])
      const eku = parsed.getExtension(x509.ExtendedKeyUsageExtension)
      expect(eku?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth])
      expect(parsed.notBefore.getMilliseconds()).toBe(0)
      expect(parsed.notAfter.getTime() - parsed.notBefore.getTime()).toBe(30 * 24 * 3600_000)
      const spki = Crypto.createPublicKey(cert).export({ type: "spki", format: "pem" }).toString()
      expect(spki).toBe(publicKeyPem)
      const ca = new x509.X509Certificate(caOf(cp))
      expect(yield* Effect.promise(() => parsed.verify({ publicKey: ca.publicKey }))).toBe(true)
    }))

  it.scopedLive("issueClientCertificate dies without TLS or for a key that is not ed25519", () =>
    Effect.gen(function*() {
      const plain = yield* start()
      const { publicKeyPem } = agentKey()
      expect(Exit.isFailure(yield* Effect.exit(plain.issueClientCertificate("web-01", publicKeyPem)))).toBe(true)
      const tls = yield* start({ tls: true })
      const rsa = Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey
      const rsaPem = rsa.export({ type: "spki", format: "pem" }).toString()
      expect(Exit.isFailure(yield* Effect.exit(tls.issueClientCertificate("web-01", rsaPem)))).toBe(true)
      expect(Exit.isFailure(yield* Effect.exit(tls.issueClientCertificate("web-01", "not a pem")))).toBe(true)
    }))

  it("derives the machine id from the CN as the real control plane does", () => {
    const suffix = "fleet.lab.internal"
    expect(machineIdFromCommonName("agent-web-01.fleet.lab.internal", suffix)).toBe("web-01")
    expect(machineIdFromCommonName("web-01", suffix)).toBe("web-01")
    expect(machineIdFromCommonName("agent-web-01.other.suffix", suffix)).toBe("agent-web-01.other.suffix")
    expect(machineIdFromCommonName("web-01.fleet.lab.internal", suffix)).toBe("web-01.fleet.lab.internal")
    expect(machineIdFromCommonName(machineIdFromCommonName("agent-x.fleet.lab.internal", suffix), suffix)).toBe("x")
  })
})
