/**
 * The HTTP transport to the control plane: HTTPS with an extra CA and an mTLS client
 * identity (a PEM key, or the host's OpenSSH ed25519 key converted to PKCS#8 in memory);
 * `http://` only to a loopback address, with a warning. A configuration that cannot work
 * fails the runtime's start with a clear error instead of leaving an agent that cannot talk.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
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

/**
 * The TLS options the control-plane connections use.
 *
 * @since 0.1.0
 */
export const tlsOptions = Effect.gen(function*() {
  const config = yield* AgentConfig
  const url = yield* check("invalid control-plane URL", () => new URL(config.controlPlaneUrl))
  if (url.protocol === "http:") {
    if (!isLoopback(url.hostname)) {
      return yield* new ClientSetupError({
        detail: `refusing plain http:// to ${url.hostname}: use https (http is only allowed to a loopback address)`
      })
    }
    yield* Effect.logWarning("talking to the control plane over plain http on loopback: development only")
    return {}
  }
  if (url.protocol !== "https:") {
    return yield* new ClientSetupError({ detail: `unsupported scheme ${url.protocol} in ${config.controlPlaneUrl}` })
  }
  const options: { ca?: Array<string>; cert?: string; key?: string } = {}
  if (config.caCert !== null) {
    const ca = yield* readFile(config.caCert, "CA certificate")
    yield* check(`invalid CA certificate ${config.caCert}`, () => new Crypto.X509Certificate(ca))
    // An extra root: the system's roots stay trusted.
    options.ca = [...Tls.rootCertificates, ca]
  }
  if ((config.clientCert === null) !== (config.clientKey === null)) {
    return yield* new ClientSetupError({ detail: "--client-cert and --client-key go together" })
  }
  if (config.clientCert !== null && config.clientKey !== null) {
    const cert = yield* readFile(config.clientCert, "client certificate")
    const key = yield* readFile(config.clientKey, "client key")
    const certificate = yield* check(
      `invalid client certificate ${config.clientCert}`,
      () => new Crypto.X509Certificate(cert)
    )
    const privateKey = yield* check(`invalid client key ${config.clientKey}`, () => privateKeyFrom(key))
    if (!certificate.checkPrivateKey(privateKey)) {
      return yield* new ClientSetupError({ detail: `${config.clientKey} is not the key of ${config.clientCert}` })
    }
    options.cert = cert
    // PKCS#8 PEM, in memory only.
    options.key = privateKey.export({ format: "pem", type: "pkcs8" }).toString()
  }
  return options
})

/**
 * `HttpClient` for the control plane, over an undici agent carrying the TLS options.
 *
 * @since 0.1.0
 */
export const ControlPlaneHttp: Layer.Layer<HttpClient.HttpClient, ClientSetupError, AgentConfig> = Layer.unwrapScoped(
  Effect.gen(function*() {
    const connect = yield* tlsOptions
    const dispatcher = yield* Effect.acquireRelease(
      Effect.sync(() => new Agent({ connect, keepAliveTimeout: 60_000 })),
      (agent) => Effect.promise(() => agent.close())
    )
    return NodeHttpClient.layerUndiciWithoutDispatcher.pipe(
      Layer.provide(Layer.succeed(NodeHttpClient.Dispatcher, dispatcher))
    )
  })
)
