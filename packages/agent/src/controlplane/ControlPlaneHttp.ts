/**
 * The HTTP transport to the control plane: HTTPS trusting the `--ca-cert` CA alone (or,
 * without it, the system's CA store and nothing else), verifying the server whatever
 * `NODE_TLS_REJECT_UNAUTHORIZED` says, with an mTLS client identity (a PEM key, or the
 * host's OpenSSH ed25519 key converted to PKCS#8 in memory); `http://` only to a loopback
 * address, with a warning. A configuration that cannot work fails the runtime's start with
 * a clear error instead of leaving an agent that cannot talk. The identity follows its
 * files: a renewed certificate is used from the next request on; before it is installed,
 * `tryIdentity` tries it.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as SynchronizedRef from "effect/SynchronizedRef"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { Agent } from "undici"
import { AgentConfig } from "../config/AgentConfig.js"
import { certificatesIn } from "../support/certificateChecks.js"
import { privateKeyFrom } from "../support/sshKey.js"

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

/**
 * The CA bundles looked for, in this order, when no `--ca-cert` is given and `SSL_CERT_FILE`
 * is not set: Debian and NixOS, Fedora and RHEL, macOS and nix-darwin. Node 20 has no API
 * for the operating system's store, so its bundle file is read.
 *
 * @since 0.1.0
 */
export const SYSTEM_CA_BUNDLES: ReadonlyArray<string> = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/cert.pem"
]

/**
 * The TLS options that decide whom the control-plane client trusts.
 *
 * @since 0.1.0
 */
export interface TrustOptions {
  /** The roots, and only these: Node's own bundle is not added to them. */
  readonly ca: Array<string>
  /**
   * Always set: Node takes `NODE_TLS_REJECT_UNAUTHORIZED=0` as the default of this option,
   * and the control plane's certificate is verified whatever the environment says.
   */
  readonly rejectUnauthorized: true
}

/**
 * The TLS options that trust `roots` (PEM texts) alone.
 *
 * @since 0.1.0
 */
export const trustOptions = (roots: ReadonlyArray<string>): TrustOptions => ({
  ca: [...roots],
  rejectUnauthorized: true
})

/**
 * How the control plane is reached: plain http on loopback, or TLS trusting `--ca-cert`
 * alone or else the system store (`store` says which file, or Node's bundled roots).
 *
 * @since 0.1.0
 */
export type ControlPlaneTrust =
  | { readonly _tag: "PlainHttp" }
  | {
    readonly _tag: "Tls"
    readonly roots: "ca-cert" | "system"
    readonly store: string
    readonly options: TrustOptions
  }

/** The PEM roots of a file, checked to hold certificates and nothing unreadable. */
const rootsIn = (path: string, what: string) =>
  Effect.flatMap(readFile(path, what), (pem) =>
    check(`invalid ${what} ${path}`, () => {
      if (certificatesIn(pem).length === 0) throw new Error("no PEM certificate in it")
      return pem
    }))

const BUNDLED_ROOTS = "Node's bundled roots"

const exists = (path: string) => Effect.promise(() => Fs.access(path).then(() => true, () => false))

/**
 * The system store: `SSL_CERT_FILE` when set (a file named there must be usable), else the
 * first of {@link SYSTEM_CA_BUNDLES} that exists, else Node's bundled roots.
 */
const systemStore = Effect.gen(function*() {
  const named = yield* Config.option(Config.string("SSL_CERT_FILE")).pipe(
    Effect.mapError((error) => new ClientSetupError({ detail: `invalid SSL_CERT_FILE: ${String(error)}` }))
  )
  const path = Option.isSome(named) && named.value !== ""
    ? Option.some(named.value)
    : yield* Effect.findFirst(SYSTEM_CA_BUNDLES, exists)
  if (Option.isNone(path)) return { store: BUNDLED_ROOTS, roots: Tls.rootCertificates }
  return { store: path.value, roots: [yield* rootsIn(path.value, "CA bundle")] }
})

/**
 * The trust in the control plane: nothing for loopback http (refused elsewhere), else the
 * `--ca-cert` CA alone, else the system store. Logs nothing: the transport layers announce it once.
 *
 * @since 0.1.0
 */
export const controlPlaneTrust: Effect.Effect<ControlPlaneTrust, ClientSetupError, AgentConfig> = Effect.gen(
  function*() {
    const config = yield* AgentConfig
    const url = yield* check("invalid control-plane URL", () => new URL(config.controlPlaneUrl))
    if (url.protocol === "http:") {
      if (!isLoopback(url.hostname)) {
        return yield* new ClientSetupError({
          detail: `refusing plain http:// to ${url.hostname}: use https (http is only allowed to a loopback address)`
        })
      }
      return { _tag: "PlainHttp" } as const
    }
    if (url.protocol !== "https:") {
      return yield* new ClientSetupError({ detail: `unsupported scheme ${url.protocol} in ${config.controlPlaneUrl}` })
    }
    if (config.caCert !== null) {
      const ca = yield* rootsIn(config.caCert, "CA certificate")
      return { _tag: "Tls", roots: "ca-cert", store: config.caCert, options: trustOptions([ca]) } as const
    }
    const { roots, store } = yield* systemStore
    return { _tag: "Tls", roots: "system", store, options: trustOptions(roots) } as const
  }
)

/**
 * What a client says once it is built (a client that cannot be built says only why): plain
 * http, the system store it uses, an override it ignores.
 */
const announceTrust = (trust: ControlPlaneTrust) =>
  Effect.gen(function*() {
    if (trust._tag === "PlainHttp") {
      return yield* Effect.logWarning("talking to the control plane over plain http on loopback: development only")
    }
    if (trust.roots === "system") {
      yield* Effect.logInfo(`the control plane's certificate is checked against the system CA store: ${trust.store}`)
    }
    const override = yield* Config.option(Config.string("NODE_TLS_REJECT_UNAUTHORIZED")).pipe(
      Effect.orElseSucceed(() => Option.none<string>())
    )
    if (Option.getOrNull(override) === "0") {
      yield* Effect.logWarning(
        "NODE_TLS_REJECT_UNAUTHORIZED=0 is ignored for the control plane: its certificate is always verified"
      )
    }
  })

/** The connect options of a trust: none for plain http. */
const connectOf = (trust: ControlPlaneTrust): ConnectOptions => trust._tag === "PlainHttp" ? {} : trust.options

interface IdentityFiles {
  readonly cert: string
  readonly key: string
  /** The SSH host key, which a renewed certificate certifies (as upstream's renewal). */
  readonly hostKey: string
}

/**
 * The client identity: the certificate with the key it certifies, `--client-key` or else
 * the SSH host key. Renewal signs its CSR with the host key, as upstream does (the control
 * plane requires the host's declared key), so where `--client-key` is another key the
 * renewed certificate goes with the host key; neither file is ever rewritten.
 */
const clientIdentity = (files: IdentityFiles) =>
  Effect.gen(function*() {
    const cert = yield* readFile(files.cert, "client certificate")
    const key = yield* readFile(files.key, "client key")
    const certificate = yield* check(`invalid client certificate ${files.cert}`, () => new Crypto.X509Certificate(cert))
    const clientKey = yield* check(`invalid client key ${files.key}`, () => privateKeyFrom(key))
    // PKCS#8 PEM, in memory only.
    const identity = (privateKey: Crypto.KeyObject) => ({
      cert,
      key: privateKey.export({ format: "pem", type: "pkcs8" }).toString()
    })
    if (certificate.checkPrivateKey(clientKey)) return identity(clientKey)
    const hostKey = files.hostKey === files.key ? Option.none() : yield* Effect.option(
      Effect.flatMap(readFile(files.hostKey, "SSH host key"), (text) => check("", () => privateKeyFrom(text)))
    )
    if (Option.isSome(hostKey) && certificate.checkPrivateKey(hostKey.value)) return identity(hostKey.value)
    return yield* new ClientSetupError({
      detail: `${files.cert} certifies neither ${files.key} nor the SSH host key ${files.hostKey}`
    })
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
      ? { cert: config.clientCert, key: config.clientKey, hostKey: config.sshHostKeyFile }
      : null
  })

/**
 * What identifies the version of the identity files on disk: a renewal renames a new file
 * over the old one, which changes its inode. A file that cannot be looked at has a stamp
 * of its own, so that a missing file is reported once, not on every request.
 */
const stampOf = (files: IdentityFiles) =>
  Effect.promise(() =>
    Promise.all([files.cert, files.key, files.hostKey].map((file) =>
      Fs.stat(file, { bigint: true }).then(
        (stat) => `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`,
        (error: unknown) => `unreadable:${String(error)}`
      )
    ))
  ).pipe(Effect.map((stamps) => stamps.join("|")))

/**
 * A client identity as TLS takes it: the certificate PEM and the key as PKCS#8 PEM.
 *
 * @since 0.1.0
 */
export interface ClientIdentity {
  readonly cert: string
  readonly key: string
}

/** The part of undici's connect options the agent sets. */
interface ConnectOptions extends Partial<TrustOptions>, Partial<ClientIdentity> {}

/** An undici agent as every control-plane client has one. */
const makeDispatcher = (connect: ConnectOptions) => new Agent({ connect, keepAliveTimeout: 60_000 })

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
        const agent = makeDispatcher(connect)
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
export const layer: Layer.Layer<HttpClient.HttpClient, ClientSetupError, AgentConfig> = Layer.scoped(
  HttpClient.HttpClient,
  Effect.gen(function*() {
    const trust = yield* controlPlaneTrust
    const connect = connectOf(trust)
    const files = yield* identityFiles(trust._tag === "Tls")
    const pool = yield* dispatcherPool
    if (files === null) {
      const client = NodeHttpClient.makeUndici(yield* pool.make(connect))
      yield* announceTrust(trust)
      return client
    }
    const stamp = yield* stampOf(files)
    const dispatcher = yield* pool.make({ ...connect, ...(yield* clientIdentity(files)) })
    yield* announceTrust(trust)
    const current = yield* SynchronizedRef.make<CurrentIdentity>({
      stamp,
      dispatcher,
      client: NodeHttpClient.makeUndici(dispatcher)
    })
    const reload = (state: CurrentIdentity, stamp: string): Effect.Effect<CurrentIdentity> =>
      clientIdentity(files).pipe(
        Effect.flatMap((identity) => pool.make({ ...connect, ...identity })),
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
export const layerAnonymous: Layer.Layer<HttpClient.HttpClient, ClientSetupError, AgentConfig> = Layer
  .scoped(
    HttpClient.HttpClient,
    Effect.gen(function*() {
      const trust = yield* controlPlaneTrust
      const pool = yield* dispatcherPool
      const client = NodeHttpClient.makeUndici(yield* pool.make(connectOf(trust)))
      yield* announceTrust(trust)
      return client
    })
  )

/**
 * The control plane did not take a client identity on trial: the handshake failed, it
 * answered 401 or 403, or it did not answer in time.
 *
 * @since 0.1.0
 */
export class IdentityRefused extends Data.TaggedError("IdentityRefused")<{ readonly detail: string }> {
  override get message(): string {
    return `the control plane did not accept the new client certificate: ${this.detail}`
  }
}

/**
 * What a trial came to: the control plane answered with `status` (neither 401 nor 403),
 * or there was nothing to try, plain http carrying no client certificate.
 *
 * @since 0.1.0
 */
export type IdentityTrial =
  | { readonly _tag: "Answered"; readonly status: number }
  | { readonly _tag: "NotTried" }

const notTried: IdentityTrial = { _tag: "NotTried" }
const answered = (status: number): IdentityTrial => ({ _tag: "Answered", status })

/** A read that needs a client certificate, is small, and changes nothing on the control plane. */
const TRIAL_PATH = "/v1/fleet.resolved/sig"
const TRIAL_TIMEOUT = Duration.seconds(30)
/**
 * `ControlPlaneClient`'s `PROTOCOL_VERSION` (a strict control plane answers 400 without it,
 * before it looks at the certificate); not imported, as that module imports this one.
 */
const TRIAL_PROTOCOL = "1"

const causeText = (error: HttpClientError.HttpClientError): string =>
  error.cause instanceof Error ? `${error.message}: ${error.cause.message}` : error.message

/**
 * Tries `identity` before it is installed: one request (`GET /v1/fleet.resolved/sig`) over
 * a client of its own that trusts the control plane as {@link ControlPlaneHttp} does and
 * presents `identity`, closed afterwards. Any answer but 401 or 403 means the control
 * plane takes the certificate; a failed handshake, 401, 403 or no answer within 30 s fail
 * with `IdentityRefused`.
 *
 * @since 0.1.0
 */
export const tryIdentity = Effect.fn("ControlPlaneHttp.tryIdentity")(function*(identity: ClientIdentity) {
  const config = yield* AgentConfig
  const trust = yield* controlPlaneTrust
  if (trust._tag === "PlainHttp") return notTried
  const request = HttpClientRequest.get(`${config.controlPlaneUrl.replace(/\/+$/, "")}${TRIAL_PATH}`).pipe(
    HttpClientRequest.setHeader("X-Nixfleet-Protocol", TRIAL_PROTOCOL)
  )
  const status = yield* Effect.acquireRelease(
    Effect.sync(() => makeDispatcher({ ...trust.options, ...identity })),
    (dispatcher) => Effect.promise(() => dispatcher.destroy())
  ).pipe(
    Effect.flatMap((dispatcher) => NodeHttpClient.makeUndici(dispatcher).execute(request)),
    Effect.map((response) => response.status),
    Effect.scoped,
    Effect.timeoutFail({
      duration: TRIAL_TIMEOUT,
      onTimeout: () => new IdentityRefused({ detail: `no answer within ${Duration.format(TRIAL_TIMEOUT)}` })
    }),
    Effect.catchTags({
      RequestError: (error) => Effect.fail(new IdentityRefused({ detail: causeText(error) })),
      ResponseError: (error) => Effect.fail(new IdentityRefused({ detail: causeText(error) }))
    })
  )
  if (status === 401 || status === 403) {
    return yield* new IdentityRefused({ detail: `GET ${TRIAL_PATH} answered HTTP ${status}` })
  }
  return answered(status)
})
