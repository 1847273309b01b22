/**
 * The HTTP transport to the control plane: HTTPS with an extra CA and an mTLS client
 * identity (a PEM key, or the host's OpenSSH ed25519 key converted to PKCS#8 in memory);
 * `http://` only to a loopback address, with a warning. A configuration that cannot work
 * fails the runtime's start with a clear error instead of leaving an agent that cannot talk.
 * The identity follows its files: a renewed certificate is used from the next request on.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SynchronizedRef from "effect/SynchronizedRef"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { Agent } from "undici"
import { AgentConfig } from "./AgentConfig.js"
import { privateKeyFrom } from "./internal/sshKey.js"

/**
 * The control-plane client cannot be built: a bad URL, a refused scheme, an unreadable or
 * invalid certificate or key.
 *
 * @since 0.1.0
 */
export class ClientSetupError extends Data.TaggedError("ClientSetupError")<{ readonly detail: string }> {
  override get message(): string {
    return `cannot talk to the control plane: ${this.detail}`
  }
}

/**
 * Whether a URL host is a loopback address (the only place plain HTTP is allowed).
 *
 * @since 0.1.0
 */
export const isLoopback = (hostname: string): boolean => {
  const host = hostname.replace(/^\[|\]$/g, "")
  if (host === "localhost") return true
  if (Net.isIPv4(host)) return host.startsWith("127.")
  return host === "::1"
}

const readFile = (path: string, what: string) =>
  Effect.tryPromise({
    try: () => Fs.readFile(path, "utf8"),
    catch: (error) => new ClientSetupError({ detail: `cannot read the ${what} ${path}: ${String(error)}` })
  })

const check = <A>(what: string, f: () => A) =>
  Effect.try({ try: f, catch: (error) => new ClientSetupError({ detail: `${what}: ${String(error)}` }) })

/** The trust in the control plane: nothing to add for loopback http, else the extra CA, if any. */
const serverTrust = Effect.gen(function*() {
  const config = yield* AgentConfig
  const url = yield* check("invalid control-plane URL", () => new URL(config.controlPlaneUrl))
  if (url.protocol === "http:") {
    if (!isLoopback(url.hostname)) {
      return yield* new ClientSetupError({
        detail: `refusing plain http:// to ${url.hostname}: use https (http is only allowed to a loopback address)`
      })
    }
    yield* Effect.logWarning("talking to the control plane over plain http on loopback: development only")
    return { secure: false, options: {} }
  }
  if (url.protocol !== "https:") {
    return yield* new ClientSetupError({ detail: `unsupported scheme ${url.protocol} in ${config.controlPlaneUrl}` })
  }
  if (config.caCert === null) return { secure: true, options: {} }
  const ca = yield* readFile(config.caCert, "CA certificate")
  yield* check(`invalid CA certificate ${config.caCert}`, () => new Crypto.X509Certificate(ca))
  // An extra root: the system's roots stay trusted.
  return { secure: true, options: { ca: [...Tls.rootCertificates, ca] } }
})

interface IdentityFiles {
  readonly cert: string
  readonly key: string
}

/** The client identity in the two files, checked to belong together. */
const clientIdentity = (files: IdentityFiles) =>
  Effect.gen(function*() {
    const cert = yield* readFile(files.cert, "client certificate")
    const key = yield* readFile(files.key, "client key")
    const certificate = yield* check(`invalid client certificate ${files.cert}`, () => new Crypto.X509Certificate(cert))
    const privateKey = yield* check(`invalid client key ${files.key}`, () => privateKeyFrom(key))
    if (!certificate.checkPrivateKey(privateKey)) {
      return yield* new ClientSetupError({ detail: `${files.key} is not the key of ${files.cert}` })
    }
    // PKCS#8 PEM, in memory only.
    return { cert, key: privateKey.export({ format: "pem", type: "pkcs8" }).toString() }
  })

/** The configured identity files; none for plain http, where there is no TLS to carry them. */
const identityFiles = (secure: boolean) =>
  Effect.gen(function*() {
    const config = yield* AgentConfig
    if (!secure) return null
    if ((config.clientCert === null) !== (config.clientKey === null)) {
      return yield* new ClientSetupError({ detail: "--client-cert and --client-key go together" })
    }
    return config.clientCert !== null && config.clientKey !== null
      ? { cert: config.clientCert, key: config.clientKey }
      : null
  })

/**
 * What identifies the version of the identity files on disk: a renewal renames a new file
 * over the old one, which changes its inode. A file that cannot be looked at has a stamp
 * of its own, so that a missing file is reported once, not on every request.
 */
const stampOf = (files: IdentityFiles) =>
  Effect.promise(() =>
    Promise.all([files.cert, files.key].map((file) =>
      Fs.stat(file, { bigint: true }).then(
        (stat) => `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`,
        (error: unknown) => `unreadable:${String(error)}`
      )
    ))
  ).pipe(Effect.map((stamps) => stamps.join("|")))

/** The part of undici's connect options the agent sets. */
interface ConnectOptions {
  readonly ca?: Array<string>
  readonly cert?: string
  readonly key?: string
}

/** The identity requests go out with, and the version of the files it was read from. */
interface CurrentIdentity {
  readonly stamp: string
  readonly dispatcher: Agent
  readonly client: HttpClient.HttpClient
}

/** undici agents, each closed gracefully when retired and all closed with the scope. */
const dispatcherPool = Effect.gen(function*() {
  const scope = yield* Effect.scope
  const open = new Set<Agent>()
  yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all([...open].map((agent) => agent.close()))))
  return {
    make: (connect: ConnectOptions) =>
      Effect.sync(() => {
        const agent = new Agent({ connect, keepAliveTimeout: 60_000 })
        open.add(agent)
        return agent
      }),
    /** New requests go elsewhere; `close` lets the ones in flight on this agent finish. */
    retire: (agent: Agent) =>
      Effect.promise(() => agent.close()).pipe(
        Effect.ensuring(Effect.sync(() => open.delete(agent))),
        Effect.forkIn(scope),
        Effect.asVoid
      )
  }
})

/**
 * `HttpClient` for the control plane, over undici with the TLS options. The client
 * identity is reloaded when its files change on disk (a renewal, an operator replacing
 * the certificate): the next request checks the files, new requests go out with the new
 * identity, and requests in flight finish on the connections they started on. A changed
 * identity that cannot be used (unreadable, or a certificate for another key) is reported
 * and the previous one is kept.
 *
 * @since 0.1.0
 */
export const ControlPlaneHttp: Layer.Layer<HttpClient.HttpClient, ClientSetupError, AgentConfig> = Layer.scoped(
  HttpClient.HttpClient,
  Effect.gen(function*() {
    const trust = yield* serverTrust
    const files = yield* identityFiles(trust.secure)
    const pool = yield* dispatcherPool
    if (files === null) return NodeHttpClient.makeUndici(yield* pool.make(trust.options))
    const stamp = yield* stampOf(files)
    const dispatcher = yield* pool.make({ ...trust.options, ...(yield* clientIdentity(files)) })
    const current = yield* SynchronizedRef.make<CurrentIdentity>({
      stamp,
      dispatcher,
      client: NodeHttpClient.makeUndici(dispatcher)
    })
    const reload = (state: CurrentIdentity, stamp: string): Effect.Effect<CurrentIdentity> =>
      clientIdentity(files).pipe(
        Effect.flatMap((identity) => pool.make({ ...trust.options, ...identity })),
        Effect.tap(() => pool.retire(state.dispatcher)),
        Effect.tap(() => Effect.logInfo("client certificate changed on disk; new requests use it")),
        Effect.map((dispatcher) => ({ stamp, dispatcher, client: NodeHttpClient.makeUndici(dispatcher) })),
        Effect.catchAll((error) =>
          Effect.as(
            Effect.logWarning("client certificate changed on disk but cannot be used; keeping the previous one").pipe(
              Effect.annotateLogs("reason", error.detail)
            ),
            { ...state, stamp }
          )
        )
      )
    const refresh = SynchronizedRef.modifyEffect(
      current,
      (state) =>
        Effect.flatMap(stampOf(files), (stamp) =>
          Effect.map(
            stamp === state.stamp ? Effect.succeed(state) : reload(state, stamp),
            (next) => [next.client, next] as const
          ))
    )
    return HttpClient.makeWith<never, never, HttpClientError.HttpClientError, never>(
      (request) => Effect.flatMap(request, (ready) => Effect.flatMap(refresh, (client) => client.execute(ready))),
      Effect.succeed
    )
  })
)

/**
 * `HttpClient` for first-boot enrollment: it trusts the control plane like
 * `ControlPlaneHttp` but presents no client certificate (there is none yet).
 *
 * @since 0.1.0
 */
export const ControlPlaneHttpAnonymous: Layer.Layer<HttpClient.HttpClient, ClientSetupError, AgentConfig> = Layer
  .scoped(
    HttpClient.HttpClient,
    Effect.gen(function*() {
      const trust = yield* serverTrust
      const pool = yield* dispatcherPool
      return NodeHttpClient.makeUndici(yield* pool.make(trust.options))
    })
  )
