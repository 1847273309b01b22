/**
 * Renewal signs its CSR with the SSH host key (`--ssh-host-key-file`), as upstream: the
 * control plane certifies only the key `fleet.resolved` declares for the host. A host whose
 * working certificate is for a PEM `--client-key` that is not the host key renews against
 * the TLS dev control plane; the renewed certificate certifies the host key, the client key
 * file is left as it was, and the transport presents the new certificate with the host key,
 * in this run and after a restart.
 */
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, start } from "@nixfleet/dev-control-plane"
import { Effect, Metric } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { certificateRenewals } from "../src/identity/CertificateRenewal.js"
import { labelEffect } from "../src/observability/Metrics.js"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { fingerprintOf, HOST_KEY_FILE, HOST_PUBKEY, HOST_SPKI } from "./support/certificates.js"
import { PRIOR, TARGET } from "./support/fixtures.js"

const HOST = "web-01"
const DAY = 24 * 3600_000
const TIMEOUT = 90_000

const stateOf = (cp: DevControlPlane, rolloutId: string) =>
  Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state)

// The agent's series carry its machine id.
const renewed = Effect.map(
  Metric.value(Metric.tagged(certificateRenewals, "outcome", "renewed")),
  (state) => state.count
).pipe(labelEffect(HOST))

describe("renewal with the SSH host key", () => {
  it.scopedLive(
    "a PEM client key that is not the host key: renewed for the host key, then presented with it",
    () =>
      Effect.gen(function*() {
        const cp = yield* start({ tls: true })
        // fleet.resolved declares the SSH host key, as mkHost does.
        yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET, pubkey: HOST_PUBKEY }],
          soakMinutes: 0.02,
          dispatch: false
        })
        const dir = yield* stateDirectory
        Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))
        const clientKeyFile = Path.join(dir, "client-key.pem")
        const clientKey = Crypto.generateKeyPairSync("ed25519")
        const clientKeyPem = clientKey.privateKey.export({ format: "pem", type: "pkcs8" }).toString()
        Fs.writeFileSync(clientKeyFile, clientKeyPem, { mode: 0o600 })
        const clientSpki = clientKey.publicKey.export({ format: "pem", type: "spki" }).toString()
        expect(clientSpki).not.toBe(HOST_SPKI)
        // The working certificate is for the client key, 29 of its 30 days gone.
        const certFile = Path.join(dir, "agent-cert.pem")
        const old = yield* cp.issueClientCertificate(HOST, clientSpki, { issuedAt: new Date(Date.now() - 29 * DAY) })
        Fs.writeFileSync(certFile, old, { mode: 0o600 })
        const config = {
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile,
          caCert: cp.caFile,
          clientCert: certFile,
          clientKey: clientKeyFile,
          sshHostKeyFile: HOST_KEY_FILE,
          renewalThresholdFraction: 0.5
        }
        const before = yield* renewed

        const agent = yield* startAgent(config)
        yield* eventually("a renewed certificate", Effect.sync(() => Fs.readFileSync(certFile, "utf8") !== old))
        const fresh = Fs.readFileSync(certFile, "utf8")
        expect(Crypto.createPublicKey(fresh).export({ format: "pem", type: "spki" })).toBe(HOST_SPKI)
        expect(Fs.readFileSync(clientKeyFile, "utf8")).toBe(clientKeyPem)
        // The renewal counts itself just after it has written the file.
        yield* eventually("the renewal counted", Effect.map(renewed, (count) => count === before + 1))
        const requests = yield* cp.requests
        expect(requests.find((r) => r.path === "/v1/agent/renew")).toMatchObject({
          status: 200,
          clientCertificate: { fingerprint256: fingerprintOf(old) }
        })

        // The running agent goes on with the new certificate (and so the host key).
        const first = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET, pubkey: HOST_PUBKEY }],
          soakMinutes: 0.02
        })
        yield* eventually("Converged", Effect.map(stateOf(cp, first.rolloutId), (s) => s === "Converged"), 30_000)
        const events = (yield* cp.requests).filter((r) => r.path === "/v1/agent/events")
        expect(events.length).toBeGreaterThan(0)
        for (const event of events) expect(event.clientCertificate?.fingerprint256).toBe(fingerprintOf(fresh))
        expect((yield* agent.logs).filter((line) => line.startsWith("WARN") && line.includes("cannot be used")))
          .toStrictEqual([])
        yield* agent.stop

        // A restart reads the renewed certificate with the same flags: the host key goes with it.
        const seen = (yield* cp.requests).length
        yield* startAgent(config)
        const second = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET, pubkey: HOST_PUBKEY }],
          soakMinutes: 0.02
        })
        yield* eventually(
          "Converged after a restart",
          Effect.map(stateOf(cp, second.rolloutId), (s) => s === "Converged"),
          30_000
        )
        const after = (yield* cp.requests).slice(seen).filter((r) => r.path.startsWith("/v1/agent/"))
        expect(after.length).toBeGreaterThan(0)
        for (const request of after) expect(request.clientCertificate?.fingerprint256).toBe(fingerprintOf(fresh))
      }),
    TIMEOUT
  )
})
