/**
 * Agent and dev control plane in one process, over real HTTP: rollouts, refusals, faults
 * and mTLS.
 */
import { describe, expect, it } from "@effect/vitest"
import { type DevControlPlane, type DevControlPlaneOptions, start } from "@nixfleet/dev-control-plane"
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { privateKeyFrom } from "../src/support/sshKey.js"
import { eventually, startAgent, stateDirectory } from "./support/agentHarness.js"
import { PRIOR, TARGET } from "./support/fixtures.js"
import { unusedPort } from "./support/ports.js"

const HOST = "web-01"
const TIMEOUT = 60_000

const UPSTREAM_KEYS: Readonly<Record<string, ReadonlyArray<string>>> = {
  DispatchAck: ["currentClosureAtDispatch", "kind", "receivedAt", "seq"],
  ActivationStarted: ["kind", "seq", "startedAt", "switchMethod"],
  ActivationCompleted: ["completedAt", "exitCode", "kind", "observedCurrentClosure", "seq"],
  ProbeTopologyDeclared: ["declaredAt", "kind", "probes", "seq"],
  ActivationFailed: ["exitCode", "failedAt", "kind", "seq", "stderrTail"],
  RollbackComplete: ["completedAt", "exitCode", "kind", "revertedToClosure", "seq"],
  Converged: ["convergedAt", "currentClosure", "kind", "seq"]
}

interface Envelope {
  readonly hostname: string
  readonly rolloutId: string
  readonly event: { readonly kind: string; readonly seq: number } & Record<string, unknown>
}

const controlPlane = (options: DevControlPlaneOptions = {}) => start(options)

const stateOf = (cp: DevControlPlane, rolloutId: string) =>
  Effect.map(cp.hostStates, (states) => states.get(`${rolloutId}/${HOST}`)?.state)

const envelopes = (cp: DevControlPlane) =>
  Effect.map(cp.events, (events) => events.filter((e) => !e.duplicate).map((e) => e.envelope as Envelope))

/** A sandbox current-system link, so that the agent reports (and rolls back to) a real closure. */
const linkCurrentSystem = (dir: string) => Fs.symlinkSync(`/nix/store/${PRIOR}`, Path.join(dir, "current-system"))

// Each test starts its own control plane and agent and mostly waits on their timers: the
// tests of a block run concurrently.
describe("agent + dev control plane, in process", { concurrent: true }, () => {
  it.scopedLive(
    "a rollout reaches Converged in test mode; events carry the upstream keys and increasing seqs",
    () =>
      Effect.gen(function*() {
        const cp = yield* controlPlane()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        yield* startAgent({ machineId: HOST, stateDir: dir, controlPlaneUrl: cp.url, trustFile: cp.trustFile })
        yield* eventually("Converged", Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"), 30_000)
        const sent = yield* envelopes(cp)
        expect(sent.map((e) => e.event.kind)).toStrictEqual([
          "DispatchAck",
          "ActivationStarted",
          "ActivationCompleted",
          "ProbeTopologyDeclared",
          "Converged"
        ])
        expect(sent.map((e) => e.event.seq)).toStrictEqual([1, 2, 3, 4, 5])
        for (const envelope of sent) {
          expect(Object.keys(envelope).sort()).toStrictEqual(["event", "hostname", "rolloutId"])
          expect(Object.keys(envelope.event).sort(), envelope.event.kind).toStrictEqual(
            UPSTREAM_KEYS[envelope.event.kind]
          )
          expect(envelope).toMatchObject({ hostname: HOST, rolloutId })
        }
        // The rollback target is the closure that ran, not the target.
        expect(sent[0]?.event.currentClosureAtDispatch).toBe(PRIOR)
      }),
    TIMEOUT
  )

  const refusalCase = (
    name: string,
    setup: (cp: DevControlPlane) => Effect.Effect<string>,
    reason: string
  ) =>
    it.scopedLive(`refuses ${name}: no activation, reason logged`, () =>
      Effect.gen(function*() {
        const cp = yield* controlPlane()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        const rolloutId = yield* setup(cp)
        let ran = 0
        const agent = yield* startAgent(
          { machineId: HOST, stateDir: dir, controlPlaneUrl: cp.url, trustFile: cp.trustFile },
          {
            testMode: false,
            script: {
              activate: (target) =>
                Effect.sync(() => ran++).pipe(Effect.as({ _tag: "FiredAndPolled" as const, closure: target }))
            }
          }
        )
        yield* eventually(
          `the refusal (${reason})`,
          Effect.map(agent.logs, (lines) => lines.some((l) => l.includes(`dispatch refused (${reason})`)))
        )
        expect(ran).toBe(0)
        expect(yield* envelopes(cp)).toStrictEqual([])
        if (rolloutId !== "") expect(yield* stateOf(cp, rolloutId)).toBe("Pending")
      }), TIMEOUT)

  refusalCase(
    "a forged signature",
    (cp) =>
      Effect.map(
        cp.publishRollout({ channel: "stable", hosts: [{ hostname: HOST, targetClosure: TARGET }], forge: true }),
        (r) => r.rolloutId
      ),
    "manifest"
  )
  refusalCase("a stale manifest", (cp) =>
    Effect.map(
      cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }],
        signedAt: new Date(Date.now() - 3 * 3600_000)
      }),
      (r) => r.rolloutId
    ), "manifest")
  refusalCase("a future-dated manifest", (cp) =>
    Effect.map(
      cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }],
        signedAt: new Date(Date.now() + 3600_000)
      }),
      (r) => r.rolloutId
    ), "manifest")

  const rawDispatch = (cp: DevControlPlane, fields: { readonly hostname?: string; readonly target?: string }) =>
    Effect.gen(function*() {
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }],
        dispatch: false
      })
      yield* cp.queueDispatch(HOST, {
        hostname: fields.hostname ?? HOST,
        rollout_id: rolloutId,
        target_closure: fields.target ?? TARGET,
        soak_due_at: new Date().toISOString(),
        enqueued_at: new Date().toISOString()
      })
      return rolloutId
    })

  refusalCase("a dispatch for another host", (cp) => rawDispatch(cp, { hostname: "web-02" }), "wrong-hostname")
  refusalCase(
    "a target that is not in the manifest",
    (cp) => rawDispatch(cp, { target: "1a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-evil" }),
    "target-mismatch"
  )
  refusalCase(
    "a hostile closure name",
    (cp) => rawDispatch(cp, { target: "../../../bin/sh -c reboot" }),
    "target-mismatch"
  )

  it.scopedLive("a control plane down at start: the agent keeps retrying and catches up", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const dir = yield* stateDirectory
      linkCurrentSystem(dir)
      const trustFile = Path.join(dir, "trust.json")
      const agent = yield* startAgent({
        machineId: HOST,
        stateDir: dir,
        controlPlaneUrl: `http://127.0.0.1:${port}`,
        trustFile
      })
      yield* eventually(
        "a failed boot recovery",
        Effect.map(agent.logs, (lines) => lines.some((l) => l.includes("boot-recovery heartbeat failed")))
      )
      yield* Effect.sleep("2 seconds")
      const cp = yield* controlPlane({ port })
      // The trust file is read on every verification: installing it now is enough.
      Fs.copyFileSync(cp.trustFile, trustFile)
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }],
        soakMinutes: 0.02
      })
      yield* eventually(
        "Converged after the control plane came up",
        Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"),
        75_000
      )
    }), 120_000)

  it.scopedLive(
    "events refused while the control plane is unavailable stay in the outbox and are delivered after",
    () =>
      Effect.gen(function*() {
        const cp = yield* controlPlane()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        yield* cp.setFault("events", { _tag: "Status", status: 503, headers: { "retry-after": "1" } })
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        yield* startAgent({ machineId: HOST, stateDir: dir, controlPlaneUrl: cp.url, trustFile: cp.trustFile })
        yield* Effect.sleep("3 seconds")
        expect(yield* envelopes(cp)).toStrictEqual([])
        yield* cp.setFault("events", undefined)
        yield* eventually(
          "Converged once events get through",
          Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"),
          45_000
        )
      }),
    90_000
  )

  it.scopedLive(
    "readiness 503: the agent honours Retry-After and proceeds once the control plane is ready",
    () =>
      Effect.gen(function*() {
        const cp = yield* controlPlane()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        yield* cp.setReady(false)
        const agent = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        yield* eventually(
          "a 503",
          Effect.map(agent.logs, (lines) =>
            lines.some((l) => l.includes("HTTP 503") && l.includes("control plane not ready")))
        )
        yield* cp.setReady(true)
        yield* eventually(
          "Converged once ready",
          Effect.map(stateOf(cp, rolloutId), (s) =>
            s === "Converged"),
          75_000
        )
      }),
    120_000
  )

  it.scopedLive(
    "an agent stopped mid-soak and restarted rehydrates from the snapshot and finishes the soak",
    () =>
      Effect.gen(function*() {
        const cp = yield* controlPlane()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.15
        })
        const first = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        yield* eventually("Soaking", Effect.map(stateOf(cp, rolloutId), (s) => s === "Soaking"))
        yield* first.stop
        const second = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        yield* eventually(
          "Converged after the restart",
          Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"),
          45_000
        )
        expect((yield* second.logs).some((l) => l.includes("rollout rehydrated from the control plane"))).toBe(true)
        const seqs = (yield* envelopes(cp)).map((e) => e.event.seq)
        expect([...seqs].sort((a, b) => a - b)).toStrictEqual(seqs)
      }),
    90_000
  )
})

describe("mTLS", { concurrent: true }, () => {
  const hostKey = Fs.readFileSync(Path.join(__dirname, "fixtures/ssh/ssh_host_ed25519_key"), "utf8")
  const spki = Crypto.createPublicKey(privateKeyFrom(hostKey)).export({ format: "pem", type: "spki" }).toString()

  it.scopedLive("an ed25519 client certificate (the host's OpenSSH key) is accepted", () =>
    Effect.gen(function*() {
      const cp = yield* controlPlane({ tls: true })
      const dir = yield* stateDirectory
      linkCurrentSystem(dir)
      const certFile = Path.join(dir, "client.pem")
      Fs.writeFileSync(certFile, yield* cp.issueClientCertificate(HOST, spki))
      const keyFile = Path.join(__dirname, "fixtures/ssh/ssh_host_ed25519_key")
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }],
        soakMinutes: 0.02
      })
      yield* startAgent({
        machineId: HOST,
        stateDir: dir,
        controlPlaneUrl: cp.url,
        trustFile: cp.trustFile,
        caCert: cp.caFile,
        clientCert: certFile,
        clientKey: keyFile
      })
      yield* eventually("Converged over mTLS", Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"), 30_000)
    }), TIMEOUT)

  it.scopedLive("a missing client certificate is refused", () =>
    Effect.gen(function*() {
      const cp = yield* controlPlane({ tls: true })
      const dir = yield* stateDirectory
      linkCurrentSystem(dir)
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }]
      })
      const agent = yield* startAgent({
        machineId: HOST,
        stateDir: dir,
        controlPlaneUrl: cp.url,
        trustFile: cp.trustFile,
        caCert: cp.caFile
      })
      yield* eventually("a 401", Effect.map(agent.logs, (lines) => lines.some((l) => l.includes("HTTP 401"))))
      expect(yield* stateOf(cp, rolloutId)).toBe("Pending")
    }), TIMEOUT)

  it.scopedLive("a certificate from a foreign CA is refused", () =>
    Effect.gen(function*() {
      const cp = yield* controlPlane({ tls: true })
      const foreign = yield* controlPlane({ tls: true })
      const dir = yield* stateDirectory
      linkCurrentSystem(dir)
      const certFile = Path.join(dir, "client.pem")
      Fs.writeFileSync(certFile, yield* foreign.issueClientCertificate(HOST, spki))
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }]
      })
      const agent = yield* startAgent({
        machineId: HOST,
        stateDir: dir,
        controlPlaneUrl: cp.url,
        trustFile: cp.trustFile,
        caCert: cp.caFile,
        clientCert: certFile,
        clientKey: Path.join(__dirname, "fixtures/ssh/ssh_host_ed25519_key")
      })
      yield* eventually(
        "a refusal",
        Effect.map(agent.logs, (lines) => lines.some((l) => /HTTP 401|will retry/.test(l)))
      )
      yield* Effect.sleep("1 second")
      expect(yield* stateOf(cp, rolloutId)).toBe("Pending")
    }), TIMEOUT)
})

describe("health probes, end to end", { concurrent: true }, () => {
  const probesFile = (dir: string, probes: Record<string, unknown>) => {
    const file = Path.join(dir, "health-checks.json")
    Fs.writeFileSync(file, JSON.stringify(probes))
    return file
  }

  it.scopedLive(
    "a failing enforce probe leads to Failed, RollbackComplete and a quarantined closure",
    () =>
      Effect.gen(function*() {
        const cp = yield* controlPlane()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        const healthChecksFile = probesFile(dir, {
          web: { kind: "exec", mode: "enforce", command: ["false"], intervalSeconds: 5 }
        })
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 5,
          onHealthFailure: "rollback-and-halt"
        })
        yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile,
          healthChecksFile,
          sustainedFailureSecs: 2
        })
        yield* eventually("Reverted", Effect.map(stateOf(cp, rolloutId), (s) => s === "Reverted"), 45_000)
        expect(yield* cp.quarantined).toStrictEqual([{ channel: "stable", closure: TARGET }])
        const sent = (yield* envelopes(cp)).map((e) => e.event)
        const failed = sent.find((e) => e.kind === "Failed")
        expect(failed).toMatchObject({ failingProbes: ["web"], policyApplied: "rollback-and-halt" })
        expect(sent.find((e) => e.kind === "RollbackComplete")).toMatchObject({ revertedToClosure: PRIOR })
        // The rollback never reports an activation start.
        expect(sent.filter((e) => e.kind === "ActivationStarted")).toHaveLength(1)
      }),
    TIMEOUT
  )

  it.scopedLive("a passing probe converges; an observe-mode failure does not block it", () =>
    Effect.gen(function*() {
      const cp = yield* controlPlane()
      const dir = yield* stateDirectory
      linkCurrentSystem(dir)
      const healthChecksFile = probesFile(dir, {
        web: { kind: "exec", mode: "enforce", command: ["true"], intervalSeconds: 5 },
        audit: { kind: "exec", mode: "observe", command: ["false"], intervalSeconds: 5 }
      })
      const { rolloutId } = yield* cp.publishRollout({
        channel: "stable",
        hosts: [{ hostname: HOST, targetClosure: TARGET }],
        soakMinutes: 0.1
      })
      yield* startAgent({
        machineId: HOST,
        stateDir: dir,
        controlPlaneUrl: cp.url,
        trustFile: cp.trustFile,
        healthChecksFile,
        sustainedFailureSecs: 2
      })
      yield* eventually("Converged", Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"), 45_000)
      const results = (yield* envelopes(cp)).map((e) => e.event).filter((e) => e.kind === "ProbeResult")
      expect(results.some((e) => e.probeName === "audit" && e.status === "fail" && e.mode === "observe")).toBe(true)
      expect(results.some((e) => e.probeName === "web" && e.status === "pass")).toBe(true)
      expect(yield* cp.quarantined).toStrictEqual([])
    }), TIMEOUT)
})

// Alone: it measures the process's memory, which concurrent tests would add to.
describe("bounded memory", () => {
  it.scopedLive(
    "garbage and oversized answers: bounded memory, the agent keeps running and proceeds",
    () =>
      Effect.gen(function*() {
        const cp = yield* controlPlane()
        const dir = yield* stateDirectory
        linkCurrentSystem(dir)
        const { rolloutId } = yield* cp.publishRollout({
          channel: "stable",
          hosts: [{ hostname: HOST, targetClosure: TARGET }],
          soakMinutes: 0.02
        })
        yield* cp.setFault("heartbeat", { _tag: "Oversized", bytes: 64 * 1024 * 1024 })
        yield* cp.setFault("dispatch", { _tag: "Garbage" })
        const before = process.memoryUsage().rss
        const agent = yield* startAgent({
          machineId: HOST,
          stateDir: dir,
          controlPlaneUrl: cp.url,
          trustFile: cp.trustFile
        })
        yield* eventually(
          "both refused",
          Effect.map(agent.logs, (lines) =>
            lines.some((l) =>
              l.includes("body is not JSON")
            ) && lines.some((l) => l.includes("body larger than")))
        )
        expect(process.memoryUsage().rss - before).toBeLessThan(128 * 1024 * 1024)
        yield* cp.setFault("heartbeat", undefined)
        yield* cp.setFault("dispatch", undefined)
        yield* eventually(
          "Converged after the faults",
          Effect.map(stateOf(cp, rolloutId), (s) => s === "Converged"),
          75_000
        )
      }),
    120_000
  )
})
