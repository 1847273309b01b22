import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { canonicalizeText } from "@nixfleet/proto"
import { Effect, Schema, type Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { ProbeDeclaration } from "../src/probes/HealthChecks.js"
import { capReason, failed, MAX_REASON_BYTES } from "../src/probes/reason.js"
import { runProbe } from "../src/probes/Runner.js"
import { unusedPort } from "./support/ports.js"

const declare = (fields: Record<string, unknown>) => Schema.decodeUnknownSync(ProbeDeclaration)(fields)

const tempDir = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "probe-runners-"))

/** Runs a declaration with the real platform services. */
const probe = (fields: Record<string, unknown>, sshHostKeyFile = "/nonexistent/ssh_host_ed25519_key") =>
  runProbe(declare(fields), { sshHostKeyFile, now: new Date() }).pipe(Effect.provide(NodeContext.layer))

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = Date.now()
    const value = yield* effect
    return { value, ms: Date.now() - start }
  })

describe("capReason", () => {
  const bytes = (text: string) => Buffer.byteLength(text, "utf8")

  it("leaves a reason of at most 512 bytes alone", () => {
    expect(capReason("status 503 != expected 200")).toBe("status 503 != expected 200")
    const exact = "x".repeat(MAX_REASON_BYTES)
    expect(capReason(exact)).toBe(exact)
    const exactMultibyte = "é".repeat(MAX_REASON_BYTES / 2)
    expect(capReason(exactMultibyte)).toBe(exactMultibyte)
  })

  it("cuts ASCII so that the suffix fits within 512 bytes", () => {
    const capped = capReason("x".repeat(MAX_REASON_BYTES + 1))
    expect(bytes(capped)).toBe(MAX_REASON_BYTES)
    expect(capped).toBe(`${"x".repeat(MAX_REASON_BYTES - 14)}...[truncated]`)
  })

  it("never splits a multibyte character at the boundary", () => {
    // "é" (2 bytes) straddles byte 498, where the cut for the 14-byte suffix falls.
    const twoBytes = capReason(`${"a".repeat(497)}é${"b".repeat(100)}`)
    expect(twoBytes).toBe(`${"a".repeat(497)}...[truncated]`)
    expect(bytes(twoBytes)).toBe(511)
    // A 4-byte emoji (a surrogate pair in JS) starting at byte 496.
    const fourBytes = capReason(`${"a".repeat(496)}😀${"b".repeat(100)}`)
    expect(fourBytes).toBe(`${"a".repeat(496)}...[truncated]`)
    // An emoji that ends exactly at the cut is kept whole.
    const kept = capReason(`${"a".repeat(494)}😀${"b".repeat(100)}`)
    expect(kept).toBe(`${"a".repeat(494)}😀...[truncated]`)
    expect(bytes(kept)).toBe(MAX_REASON_BYTES)
    for (const text of [twoBytes, fourBytes, kept]) expect(text).not.toContain("\uFFFD")
  })

  it("is applied to every failure", () => {
    expect(bytes(failed("y".repeat(10_000)).failureReason ?? "")).toBe(MAX_REASON_BYTES)
  })
})

describe("exec probe", () => {
  it.live("exit 0 passes", () =>
    Effect.gen(function*() {
      expect(yield* probe({ kind: "exec", mode: "enforce", command: ["true"] })).toStrictEqual({
        status: "pass",
        failureReason: null,
        subResults: null
      })
    }))

  it.live("a non-zero exit fails with its code and the last three stderr lines, newest first", () =>
    Effect.gen(function*() {
      const outcome = yield* probe({
        kind: "exec",
        mode: "enforce",
        command: ["sh", "-c", "echo one >&2; echo two >&2; echo three >&2; echo four >&2; exit 3"]
      })
      expect(outcome).toStrictEqual({
        status: "fail",
        failureReason: "exec probe: exit 3; stderr: four / three / two",
        subResults: null
      })
    }))

  it.live("an empty command fails", () =>
    Effect.gen(function*() {
      const outcome = yield* probe({ kind: "exec", mode: "enforce" })
      expect(outcome.failureReason).toBe("exec probe: empty command")
    }))

  it.live("a missing binary fails with the spawn error", () =>
    Effect.gen(function*() {
      const outcome = yield* probe({ kind: "exec", mode: "enforce", command: ["/nonexistent/binary"] })
      expect(outcome.status).toBe("fail")
      expect(outcome.failureReason).toMatch(/^exec probe: spawn: .*ENOENT/)
    }))

  it.live("a hang is killed at the timeout together with its process group (no grandchild left)", () =>
    Effect.gen(function*() {
      const pidFile = Path.join(tempDir(), "grandchild.pid")
      const { ms, value } = yield* timed(probe({
        kind: "exec",
        mode: "enforce",
        timeoutSecs: 1,
        command: ["sh", "-c", `sleep 300 & echo $! > ${pidFile}; wait`]
      }))
      expect(value.failureReason).toBe("exec probe: timed out after 1s")
      expect(ms).toBeGreaterThanOrEqual(1000)
      // Well short of the grandchild's 300 s, with room for a loaded machine.
      expect(ms).toBeLessThan(20_000)
      const grandchild = Number(Fs.readFileSync(pidFile, "utf8").trim())
      expect(grandchild).toBeGreaterThan(0)
      // The signal is delivered at once; give the kernel a moment to tear the process down.
      let alive = true
      for (let i = 0; i < 40 && alive; i++) {
        alive = isAlive(grandchild)
        if (alive) yield* Effect.sleep("50 millis")
      }
      expect(alive).toBe(false)
    }))

  it.live("no shell: an argument is passed literally", () =>
    Effect.gen(function*() {
      const marker = Path.join(tempDir(), "pwned")
      const argument = `$(touch ${marker})`
      const outcome = yield* probe({ kind: "exec", mode: "enforce", command: ["ls", argument] })
      expect(outcome.status).toBe("fail")
      expect(outcome.failureReason).toContain(argument)
      expect(Fs.existsSync(marker)).toBe(false)
    }))

  it.live("stdin is closed: a command reading it ends at once", () =>
    Effect.gen(function*() {
      const { ms, value } = yield* timed(probe({ kind: "exec", mode: "enforce", timeoutSecs: 60, command: ["cat"] }))
      expect(value.status).toBe("pass")
      expect(ms).toBeLessThan(30_000)
    }))
})

/** Whether `pid` is a live process (a zombie awaiting its reaper counts as gone). */
const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
}

/** A loopback HTTP server for the scope; `hits` counts the requests it received. */
const httpServer = (
  handle: (request: Http.IncomingMessage, response: Http.ServerResponse) => void
): Effect.Effect<{ readonly url: string; readonly port: number; readonly hits: () => number }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: Http.Server; port: number; hits: () => number }>((resume) => {
      let hits = 0
      const server = Http.createServer((request, response) => {
        hits++
        handle(request, response)
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as Net.AddressInfo).port
        resume(Effect.succeed({ server, port, hits: () => hits }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ hits, port }) => ({ url: `http://127.0.0.1:${port}/health`, port, hits })))

describe("http probe", () => {
  it.scopedLive("200 passes", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_, response) => response.end("ok"))
      expect(yield* probe({ kind: "http", mode: "enforce", url: server.url })).toStrictEqual({
        status: "pass",
        failureReason: null,
        subResults: null
      })
      expect(server.hits()).toBe(1)
    }))

  it.scopedLive("500 fails with the status", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_, response) => {
        response.statusCode = 500
        response.end("x".repeat(100_000))
      })
      const outcome = yield* probe({ kind: "http", mode: "enforce", url: server.url })
      expect(outcome.failureReason).toBe("http probe: status 500 != expected 200")
    }))

  it.scopedLive("the status must equal expectStatus exactly", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_, response) => {
        response.statusCode = 204
        response.end()
      })
      expect((yield* probe({ kind: "http", mode: "enforce", url: server.url, expectStatus: 204 })).status).toBe("pass")
      expect((yield* probe({ kind: "http", mode: "enforce", url: server.url })).failureReason).toBe(
        "http probe: status 204 != expected 200"
      )
    }))

  it.scopedLive("a server slower than timeoutSecs fails at the timeout", () =>
    Effect.gen(function*() {
      const server = yield* httpServer(() => {})
      const { ms, value } = yield* timed(probe({ kind: "http", mode: "enforce", url: server.url, timeoutSecs: 1 }))
      expect(value.failureReason).toBe("http probe: timed out after 1s")
      expect(ms).toBeGreaterThanOrEqual(1000)
      expect(ms).toBeLessThan(10_000)
    }))

  it.scopedLive("a redirect to another host is not followed: the 302 itself is judged", () =>
    Effect.gen(function*() {
      const other = yield* httpServer((_, response) => response.end("ok"))
      const redirecting = yield* httpServer((_, response) => {
        response.writeHead(302, { location: `http://localhost:${other.port}/health` })
        response.end()
      })
      const outcome = yield* probe({ kind: "http", mode: "enforce", url: redirecting.url })
      expect(outcome.failureReason).toBe("http probe: status 302 != expected 200")
      expect(other.hits()).toBe(0)
      expect((yield* probe({ kind: "http", mode: "enforce", url: redirecting.url, expectStatus: 302 })).status)
        .toBe("pass")
      expect(other.hits()).toBe(0)
    }))

  it.live("connection refused fails with the error", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const outcome = yield* probe({ kind: "http", mode: "enforce", url: `http://127.0.0.1:${port}/` })
      expect(outcome.status).toBe("fail")
      expect(outcome.failureReason).toMatch(/^http probe: send: .*ECONNREFUSED/)
    }))

  it.live("a missing url, an invalid url and a non-HTTP scheme fail", () =>
    Effect.gen(function*() {
      expect((yield* probe({ kind: "http", mode: "enforce" })).failureReason).toBe("http probe: url missing")
      expect((yield* probe({ kind: "http", mode: "enforce", url: "not a url" })).failureReason).toBe(
        "http probe: invalid url \"not a url\""
      )
      expect((yield* probe({ kind: "http", mode: "enforce", url: "file:///etc/passwd" })).failureReason).toBe(
        "http probe: unsupported scheme file:"
      )
    }))
})

/**
 * A listening socket that never accepts: a child Node process whose event loop is blocked
 * right after `listen`, with a backlog of 1. Once the kernel's accept queue is full, further
 * SYNs are dropped and a connect hangs.
 */
const fullBacklog = Effect.acquireRelease(
  Effect.async<{ readonly child: ChildProcess.ChildProcess; readonly port: number }>((resume) => {
    const script = "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>{" +
      "process.stdout.write(s.address().port+'\\n');Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,60000)})"
    const child = ChildProcess.spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] })
    child.stdout.once("data", (data: Buffer) => resume(Effect.succeed({ child, port: Number(data.toString().trim()) })))
  }),
  ({ child }) => Effect.sync(() => child.kill("SIGKILL"))
)

/** Connects to `port`, keeping the socket open for the scope; whether it connected within 300 ms. */
const fill = (port: number) =>
  Effect.acquireRelease(
    Effect.async<{ socket: Net.Socket; connected: boolean }>((resume) => {
      const socket = Net.createConnection({ host: "127.0.0.1", port })
      const timer = setTimeout(() => resume(Effect.succeed({ socket, connected: false })), 300)
      socket.once("connect", () => {
        clearTimeout(timer)
        resume(Effect.succeed({ socket, connected: true }))
      })
    }),
    ({ socket }) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.map(({ connected }) => connected))

describe("tcp probe", () => {
  it.scopedLive("an open port passes", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_, response) => response.end())
      expect(yield* probe({ kind: "tcp", mode: "enforce", port: server.port })).toStrictEqual({
        status: "pass",
        failureReason: null,
        subResults: null
      })
    }))

  it.live("a closed port fails", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const outcome = yield* probe({ kind: "tcp", mode: "enforce", port })
      expect(outcome.failureReason).toMatch(new RegExp(`^tcp probe: connect 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`))
    }))

  it.live("a missing port fails", () =>
    Effect.gen(function*() {
      expect((yield* probe({ kind: "tcp", mode: "enforce" })).failureReason).toBe("tcp probe: port missing")
    }))

  it.scopedLive("a connect that does not complete fails at connectTimeoutSecs", () =>
    Effect.gen(function*() {
      const { port } = yield* fullBacklog
      let filled = false
      for (let i = 0; i < 16 && !filled; i++) filled = !(yield* fill(port))
      expect(filled).toBe(true)
      const { ms, value } = yield* timed(probe({ kind: "tcp", mode: "enforce", port, connectTimeoutSecs: 1 }))
      expect(value.failureReason).toBe(`tcp probe: connect 127.0.0.1:${port} timed out after 1s`)
      expect(ms).toBeGreaterThanOrEqual(1000)
      expect(ms).toBeLessThan(10_000)
    }))
})

// --- evidence -------------------------------------------------------------------------

interface Host {
  readonly dir: string
  readonly sshHostKeyFile: string
  readonly privateKey: Crypto.KeyObject
}

/** An OpenSSH `.pub` line: blob = string("ssh-ed25519") ‖ string(32-byte key). */
const openSshPublicLine = (publicKey: Crypto.KeyObject): string => {
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x ?? "", "base64url")
  const string = (bytes: Buffer) => {
    const length = Buffer.alloc(4)
    length.writeUInt32BE(bytes.length)
    return Buffer.concat([length, bytes])
  }
  const blob = Buffer.concat([string(Buffer.from("ssh-ed25519")), string(raw)])
  return `ssh-ed25519 ${blob.toString("base64")} root@web-01\n`
}

/** A host key pair; only the `.pub` half is written, beside the (absent) private key path. */
const makeHost = (): Host => {
  const dir = tempDir()
  const { privateKey, publicKey } = Crypto.generateKeyPairSync("ed25519")
  const sshHostKeyFile = Path.join(dir, "ssh_host_ed25519_key")
  Fs.writeFileSync(`${sshHostKeyFile}.pub`, openSshPublicLine(publicKey))
  return { dir, sshHostKeyFile, privateKey }
}

/** Writes `document` pretty-printed (as jq does) with a signature over its JCS form. */
const writeEvidence = (host: Host, document: unknown, signer = host.privateKey): string => {
  const path = Path.join(host.dir, "evidence.json")
  const pretty = JSON.stringify(document, null, 2)
  const signature = Crypto.sign(null, Buffer.from(canonicalizeText(pretty), "utf8"), signer)
  Fs.writeFileSync(path, pretty)
  Fs.writeFileSync(`${path}.sig`, `${signature.toString("base64")}\n`)
  return path
}

/** Keys deliberately out of canonical order, so that the raw file differs from its JCS form. */
const evidenceDocument = (schemaVersion = 1) => ({
  controls: [
    {
      passed: true,
      controlId: "secure-boot",
      frameworkArticles: { nis2: ["art21.i", "art21.j"], "anssi-bp028": ["R1"] }
    },
    {
      controlId: "ssh-hardening",
      passed: false,
      frameworkArticles: { nis2: ["art21.h"] },
      details: { weakCiphers: 2 }
    },
    { controlId: "disk-encryption", passed: true, frameworkArticles: { "anssi-bp028": [] } },
    { controlId: "smoke", passed: true }
  ],
  hostname: "web-01",
  collectedAt: "2026-05-17T11:50:00Z",
  schemaVersion
})

const evidenceProbe = (host: Host, evidencePath: string, fields: Record<string, unknown>) =>
  probe({ kind: "evidence", mode: "enforce", evidencePath, ...fields }, host.sshHostKeyFile)

const sub = (
  controlId: string,
  status: "pass" | "fail",
  framework: string,
  article: string | null,
  effectiveMode: "enforce" | "observe" = "enforce",
  overrideReason: string | null = null
) => ({ controlId, status, framework, article, effectiveMode, overrideReason })

describe("evidence probe", () => {
  it.live("a pretty-printed file signed over its JCS form passes, with one sub-result per article", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      expect(Fs.readFileSync(path, "utf8")).not.toBe(canonicalizeText(Fs.readFileSync(path, "utf8")))
      const outcome = yield* evidenceProbe(host, path, { framework: "anssi-bp028" })
      expect(outcome).toStrictEqual({
        status: "pass",
        failureReason: null,
        subResults: [
          sub("secure-boot", "pass", "anssi-bp028", "R1"),
          sub("disk-encryption", "pass", "anssi-bp028", null)
        ]
      })
      // Another layout of the same JSON still verifies.
      Fs.writeFileSync(path, JSON.stringify(JSON.parse(Fs.readFileSync(path, "utf8")), null, 4))
      expect((yield* evidenceProbe(host, path, { framework: "anssi-bp028" })).status).toBe("pass")
    }))

  it.live("an enforce-mode control failing fails the probe; sub-results are attached", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      const outcome = yield* evidenceProbe(host, path, { framework: "nis2" })
      expect(outcome).toStrictEqual({
        status: "fail",
        failureReason: "evidence probe: nis2: at least one enforce-mode control failed",
        subResults: [
          sub("secure-boot", "pass", "nis2", "art21.i"),
          sub("secure-boot", "pass", "nis2", "art21.j"),
          sub("ssh-hardening", "fail", "nis2", "art21.h")
        ]
      })
    }))

  it.live("framework mode: an override to observe keeps the failure visible but passes the probe", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      const outcome = yield* evidenceProbe(host, path, {
        framework: "nis2",
        controlOverrides: { "ssh-hardening": { mode: "observe", reason: "legacy clients until Q3" } }
      })
      expect(outcome).toStrictEqual({
        status: "pass",
        failureReason: null,
        subResults: [
          sub("secure-boot", "pass", "nis2", "art21.i"),
          sub("secure-boot", "pass", "nis2", "art21.j"),
          sub("ssh-hardening", "fail", "nis2", "art21.h", "observe", "legacy clients until Q3")
        ]
      })
    }))

  it.live("framework mode: an observe probe does not fail on its failing controls, a disabled override drops one", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      const outcome = yield* probe({
        kind: "evidence",
        mode: "observe",
        evidencePath: path,
        framework: "nis2",
        controlOverrides: { "secure-boot": { mode: "disabled" } }
      }, host.sshHostKeyFile)
      expect(outcome).toStrictEqual({
        status: "pass",
        failureReason: null,
        subResults: [sub("ssh-hardening", "fail", "nis2", "art21.h", "observe")]
      })
    }))

  it.live("custom-controls mode: only listed controls, across their native frameworks; unlisted ones are dropped", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      const outcome = yield* evidenceProbe(host, path, {
        controls: { "secure-boot": { mode: "enforce" }, smoke: { mode: "observe", reason: "canary" } }
      })
      expect(outcome).toStrictEqual({
        status: "pass",
        failureReason: null,
        // Frameworks in the signed (canonical, key-sorted) order, not the file's.
        subResults: [
          sub("secure-boot", "pass", "anssi-bp028", "R1", "enforce", ""),
          sub("secure-boot", "pass", "nis2", "art21.i", "enforce", ""),
          sub("secure-boot", "pass", "nis2", "art21.j", "enforce", ""),
          sub("smoke", "pass", "custom", null, "observe", "canary")
        ]
      })
      const failing = yield* evidenceProbe(host, path, { controls: { "ssh-hardening": { mode: "enforce" } } })
      expect(failing.failureReason).toBe("evidence probe: custom-controls: at least one enforce-mode control failed")
      expect(failing.subResults).toStrictEqual([sub("ssh-hardening", "fail", "nis2", "art21.h", "enforce", "")])
    }))

  it.live("no matching control fails", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      expect((yield* evidenceProbe(host, path, { framework: "pci-dss" })).failureReason).toBe(
        "evidence probe: no controls match framework 'pci-dss'"
      )
      expect((yield* evidenceProbe(host, path, { controls: { "not-there": { mode: "enforce" } } })).failureReason)
        .toBe("evidence probe: no controls matched the explicit selection")
    }))

  it.live("a file changed after signing fails", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      Fs.writeFileSync(path, Fs.readFileSync(path, "utf8").replace("\"passed\": false", "\"passed\": true"))
      const outcome = yield* evidenceProbe(host, path, { framework: "nis2" })
      expect(outcome).toStrictEqual({
        status: "fail",
        failureReason: "evidence probe: signature verify failed",
        subResults: null
      })
    }))

  it.live("a signature by another key fails", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument(), Crypto.generateKeyPairSync("ed25519").privateKey)
      expect((yield* evidenceProbe(host, path, { framework: "nis2" })).failureReason).toBe(
        "evidence probe: signature verify failed"
      )
    }))

  it.live("a signature over the raw (pretty) bytes fails: only the JCS form is signed", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      const raw = Crypto.sign(null, Fs.readFileSync(path), host.privateKey)
      Fs.writeFileSync(`${path}.sig`, raw.toString("base64"))
      expect((yield* evidenceProbe(host, path, { framework: "nis2" })).failureReason).toBe(
        "evidence probe: signature verify failed"
      )
    }))

  it.live("schema version 2 fails with the upgrade hint", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument(2))
      const outcome = yield* evidenceProbe(host, path, { framework: "nis2" })
      expect(outcome.status).toBe("fail")
      expect(outcome.failureReason).toBe(
        "evidence probe: schemaVersion 2 unsupported (agent expects 1); upgrade nixfleet-compliance"
      )
    }))

  it.live("framework and controls together, or neither, fail", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      const both = yield* evidenceProbe(host, path, { framework: "nis2", controls: { smoke: { mode: "enforce" } } })
      expect(both.failureReason).toBe("evidence probe: framework and controls both set (XOR violation)")
      expect((yield* evidenceProbe(host, path, {})).failureReason).toBe(
        "evidence probe: neither framework nor controls declared"
      )
    }))

  it.live("a missing signature, a malformed signature or a missing host key fails", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, evidenceDocument())
      const noKey = yield* probe(
        { kind: "evidence", mode: "enforce", evidencePath: path, framework: "nis2" },
        Path.join(host.dir, "absent_key")
      )
      expect(noKey.failureReason).toMatch(/^evidence probe: read host pubkey .*absent_key\.pub: /)
      Fs.writeFileSync(`${path}.sig`, Buffer.alloc(32).toString("base64"))
      expect((yield* evidenceProbe(host, path, { framework: "nis2" })).failureReason).toBe(
        "evidence probe: sig length 32 != 64"
      )
      Fs.writeFileSync(`${path}.sig`, "not base64!")
      expect((yield* evidenceProbe(host, path, { framework: "nis2" })).failureReason).toMatch(/signature is not base64/)
      Fs.rmSync(`${path}.sig`)
      expect((yield* evidenceProbe(host, path, { framework: "nis2" })).failureReason).toMatch(
        /^evidence probe: read .*evidence\.json\.sig: /
      )
    }))

  it.live("a signed file that is not an evidence file fails with the decoding error", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const path = writeEvidence(host, { schemaVersion: 1, hostname: "web-01" })
      expect((yield* evidenceProbe(host, path, { framework: "nis2" })).failureReason).toMatch(
        /^evidence probe: parse: collectedAt: is missing$/
      )
    }))
})

describe("runProbe", () => {
  it.live("an unknown kind fails every run", () =>
    Effect.gen(function*() {
      expect(yield* probe({ kind: "smtp", mode: "enforce" })).toStrictEqual({
        status: "fail",
        failureReason: "unknown probe kind smtp",
        subResults: null
      })
    }))
})
