/**
 * Starting the development control plane: generated keys and certificates, the HTTP(S)
 * listener, and the handle tests drive it with.
 *
 * @since 0.1.0
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodePath from "@effect/platform-node/NodePath"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { type BootstrapToken, DispatchResponse, formatRfc3339, TrustConfig } from "@nixfleet/proto"
import { type HostRolloutState, newPending } from "@nixfleet/state-machine"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import * as Artifacts from "./Artifacts.js"
import * as BootstrapTokens from "./BootstrapTokens.js"
import * as Certificates from "./Certificates.js"
import { DevControlPlaneError, InvalidRollout } from "./DevControlPlaneError.js"
import type { Issuer } from "./Enrollment.js"
import { type Fault, isValidFault, type Route } from "./Faults.js"
import { parseOpenSshEd25519 } from "./internal/keys.js"
import * as OperatorApi from "./OperatorApi.js"
import * as PublishRollout from "./PublishRollout.js"
import * as Routes from "./Routes.js"
import * as Signing from "./Signing.js"
import { compareBytes, ControlPlaneState, type DispatchWire, type RecordedRequest } from "./State.js"

/**
 * @since 0.1.0
 */
export interface DevControlPlaneOptions {
  /** Listen address; default `"127.0.0.1"`. */
  readonly host?: string
  /** Listen port; default 0 (a free port). */
  readonly port?: number
  /**
   * Default false. When true: HTTPS with a generated P-256 CA and a server certificate for
   * `127.0.0.1`, `::1` and `localhost`; client certificates are requested but not required
   * at the TLS layer (so `/healthz` and the operator API work anonymously); the agent
   * routes answer 401 without a certificate the CA verifies, take the machine id from its
   * CN, and heartbeat/events answer 403 when the body's hostname differs.
   */
  readonly tls?: boolean
  /** The CN suffix of agent certificates, `agent-<id>.<suffix>`; default `"fleet.lab.internal"`. */
  readonly cnSuffix?: string
  /** Default false: an absent `X-Nixfleet-Protocol` is accepted; true: 400 when absent. */
  readonly strictProtocol?: boolean
  /** Where `trust.json` and `ca.pem` are written (kept); default a temporary directory removed with the scope. */
  readonly dir?: string
}

/**
 * A running control plane. Every effect here runs on the live clock.
 *
 * @since 0.1.0
 */
export interface DevControlPlane {
  /** e.g. `http://127.0.0.1:41234` or `https://127.0.0.1:41234`. */
  readonly url: string
  /**
   * A `trust.json` whose `ciReleaseKey.current` is the generated release key and whose
   * `orgRootKey.current` is the generated key that signs bootstrap tokens.
   */
  readonly trustFile: string
  /** The CA certificate PEM file with TLS (the agent's `--ca-cert`), else `null`. */
  readonly caFile: string | null
  /**
   * Issues a client certificate (CN `agent-<machineId>.<suffix>`, SAN DNS = CN, EKU
   * clientAuth, 30 days from `issuedAt`, default now, signed by the CA) for an ed25519
   * public key given as SPKI PEM, and returns its PEM. An `issuedAt` in the past makes a
   * certificate that is due for renewal (or expired). Dies without TLS or for a key that
   * is not ed25519.
   */
  readonly issueClientCertificate: (
    machineId: string,
    publicKeyPem: string,
    options?: { readonly issuedAt?: Date }
  ) => Effect.Effect<string>
  /**
   * Mints a bootstrap token for a host and its key (an OpenSSH `ssh-ed25519` public key
   * line), signed by the org root key of the trust file, and adds its nonce to the
   * bootstrap-nonces allowlist. `POST /v1/enroll` then enrolls the host once, if the current
   * `fleet.resolved` declares that key for it (see `PublishRollout` hosts' `pubkey`). Dies
   * for an invalid request (see {@link BootstrapTokens.MintBootstrapToken}).
   */
  readonly mintBootstrapToken: (request: BootstrapTokens.MintBootstrapToken) => Effect.Effect<BootstrapToken>
  /** The most recent agent-facing requests (up to 1000), oldest first, with their client certificates. */
  readonly requests: Effect.Effect<ReadonlyArray<RecordedRequest>>
  /**
   * Builds and signs `fleet.resolved` and the channel's rollout manifest (`channel@<fresh
   * 40-hex ciCommit>`), makes them current (the control plane becomes ready), opens a
   * Pending record per host and, unless `dispatch: false`, queues one dispatch per host.
   * Dies for an invalid rollout (see {@link PublishRollout.PublishRollout}).
   */
  readonly publishRollout: (
    rollout: PublishRollout.PublishRollout
  ) => Effect.Effect<{ readonly rolloutId: string; readonly soakDueAt: Date }>
  /**
   * Serves `text` as `fleet.resolved` from now on, signed over its canonical form with the
   * release key (or, with `forge`, a key that is not in the trust file): a fleet that
   * verifies and fails the schema, an older one, one the agent must refuse. The host keys
   * the last publish declared stay. Dies for a text that is not canonicalisable JSON.
   */
  readonly serveFleet: (text: string, options?: { readonly forge?: boolean }) => Effect.Effect<void>
  /** Queues a raw dispatch, whatever its fields, for the host whose long-poll will receive it. */
  readonly queueDispatch: (forHost: string, dispatch: DispatchWire) => Effect.Effect<void>
  /** Current host records, keyed `${rolloutId}/${hostname}`. */
  readonly hostStates: Effect.Effect<ReadonlyMap<string, HostRolloutState>>
  /** Every accepted `POST /v1/agent/events` body, parsed, in arrival order (duplicates flagged). */
  readonly events: Effect.Effect<
    ReadonlyArray<{ readonly envelope: unknown; readonly duplicate: boolean; readonly receivedAt: Date }>
  >
  readonly quarantined: Effect.Effect<ReadonlyArray<{ readonly channel: string; readonly closure: string }>>
  /**
   * Makes a route answer with `fault` until cleared with `undefined` (see {@link Fault}).
   * Dies for a status outside 100–599 or a negative or non-finite `Oversized` size.
   */
  readonly setFault: (route: Route, fault: Fault | undefined) => Effect.Effect<void>
  /** Forces the readiness gate open or shut, overriding "ready once something was published". */
  readonly setReady: (ready: boolean) => Effect.Effect<void>
}

/**
 * The control plane always runs on the wall clock, even inside a test that installed the
 * TestClock: long-poll deadlines and timestamps must follow real time for a real client.
 */
const liveClock = Clock.make()
const live = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => Effect.withClock(effect, liveClock)

const failWith = (operation: string) => (cause: unknown) => new DevControlPlaneError({ operation, cause })

/** The listener, closed with the scope; open connections (parked polls, hangs) are cut first. */
const listen = (server: Http.Server, options: Net.ListenOptions) =>
  Effect.acquireRelease(
    Effect.async<Net.AddressInfo, DevControlPlaneError>((resume) => {
      const onError = (error: Error) => resume(Effect.fail(failWith("listen")(error)))
      server.once("error", onError)
      server.listen(options, () => {
        server.off("error", onError)
        const address = server.address()
        if (address === null || typeof address === "string") {
          resume(Effect.fail(failWith("listen")(new Error(`unexpected listen address ${String(address)}`))))
        } else {
          resume(Effect.succeed(address))
        }
      })
    }),
    () =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

const urlHost = (host: string): string => (host.includes(":") ? `[${host}]` : host)

const WILDCARDS = new Set(["0.0.0.0", "::", ""])

/**
 * Starts a control plane for the lifetime of the current scope. The platform services it
 * needs (file system, paths) are provided inside: only a `Scope` is required.
 *
 * @since 0.1.0
 */
export const start = (
  options: DevControlPlaneOptions = {}
): Effect.Effect<DevControlPlane, DevControlPlaneError, Scope.Scope> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const host = options.host ?? "127.0.0.1"
    const cnSuffix = options.cnSuffix ?? "fleet.lab.internal"
    const dir = options.dir === undefined
      ? yield* fs.makeTempDirectoryScoped({ prefix: "nixfleet-dev-cp-" })
      : yield* Effect.as(fs.makeDirectory(options.dir, { recursive: true }), options.dir)

    const releaseKey = yield* Signing.generate
    const orgRootKey = yield* Signing.generate
    const forgeryKey = yield* Signing.generate
    const authority = options.tls === true
      ? yield* Certificates.makeAuthority(WILDCARDS.has(host) ? [] : [host])
      : null

    const trustFile = path.join(dir, "trust.json")
    const trust = yield* Schema.encode(TrustConfig)(
      Signing.trustConfig(releaseKey, orgRootKey, authority?.caPem ?? null)
    )
    yield* fs.writeFileString(trustFile, `${JSON.stringify(trust, null, 2)}\n`)
    let caFile: string | null = null
    if (authority !== null) {
      caFile = path.join(dir, "ca.pem")
      yield* fs.writeFileString(caFile, authority.caPem)
    }

    const state = new ControlPlaneState()

    const publish = (rollout: PublishRollout.PublishRollout) =>
      live(Effect.gen(function*() {
        const valid = yield* PublishRollout.validate(rollout)
        const now = new Date(yield* Clock.currentTimeMillis)
        const hosts = [...valid.hosts].sort((a, b) => compareBytes(a.hostname, b.hostname))
        const soakDueAt = new Date(now.getTime() + valid.soakMinutes * 60_000)
        if (formatRfc3339(soakDueAt) === undefined) {
          return yield* new InvalidRollout({
            reason: `soakMinutes ${valid.soakMinutes} puts soak_due_at beyond RFC 3339`
          })
        }
        const artifacts = yield* Artifacts.build({
          channel: valid.channel,
          hosts,
          onHealthFailure: valid.onHealthFailure,
          soakMinutes: valid.soakMinutes,
          signedAt: valid.signedAt ?? now,
          ciCommit: Crypto.randomBytes(20).toString("hex"),
          releaseKey,
          manifestKey: valid.forge ? forgeryKey : releaseKey,
          platformKey: valid.platformKey
        })
        const dispatches = valid.dispatch
          ? yield* Effect.forEach(hosts, (target) =>
            Schema.encode(DispatchResponse)({
              hostname: target.hostname,
              rolloutId: artifacts.rolloutId,
              targetClosure: target.targetClosure,
              soakDueAt,
              enqueuedAt: now
            })).pipe(Effect.orDie)
          : []
        state.publish({
          fleet: artifacts.fleet,
          declaredKeys: new Map(
            hosts.map((target) => [
              target.hostname,
              target.pubkey === undefined ? null : parseOpenSshEd25519(target.pubkey) ?? null
            ])
          ),
          rollout: {
            rolloutId: artifacts.rolloutId,
            channel: valid.channel,
            policy: artifacts.policy,
            manifest: artifacts.manifest,
            soakDueAt
          },
          records: hosts.map((target) =>
            newPending({
              rolloutId: artifacts.rolloutId,
              hostname: target.hostname,
              channel: valid.channel,
              targetClosure: target.targetClosure,
              dispatchedAt: now,
              soakDueAt
            })
          ),
          dispatches
        })
        yield* Effect.logDebug("rollout published").pipe(
          Effect.annotateLogs({ rolloutId: artifacts.rolloutId, hosts: hosts.length, forged: valid.forge })
        )
        return { rolloutId: artifacts.rolloutId, soakDueAt }
      }))

    const issue: Issuer | null = authority === null ? null : (machineId, publicKeyPem) =>
      live(
        Effect.flatMap(Clock.currentTimeMillis, (millis) =>
          Certificates.issueClientCertificate(authority, {
            commonName: Certificates.agentCommonName(machineId, cnSuffix),
            publicKeyPem,
            now: new Date(millis)
          }))
      )

    const mintBootstrapToken = (request: BootstrapTokens.MintBootstrapToken) =>
      live(Effect.gen(function*() {
        const minted = yield* BootstrapTokens.mint(orgRootKey, request, new Date(yield* Clock.currentTimeMillis))
        state.allowNonce(minted.nonce, { hostname: minted.hostname, expiresAt: minted.expiresAt })
        return minted.token
      }))

    const app = Routes.makeApp({
      state,
      orgRootKey,
      issue,
      tls: authority !== null,
      cnSuffix,
      strictProtocol: options.strictProtocol ?? false,
      operator: (request, requestPath) =>
        OperatorApi.handle({ state, publish, mintBootstrapToken }, request, requestPath)
    })
    const handler = yield* NodeHttpServer.makeHandler(app)
    const server = authority === null
      ? Http.createServer()
      : Https.createServer({
        key: authority.serverKeyPem,
        cert: authority.serverCertPem,
        ca: [authority.caPem],
        requestCert: true,
        rejectUnauthorized: false
      })
    server.on("request", handler)
    const address = yield* listen(server, { host, port: options.port ?? 0 })
    // A wildcard listener is reached, and certified, as 127.0.0.1.
    const urlHostname = WILDCARDS.has(host) ? "127.0.0.1" : urlHost(host)
    const url = `${authority === null ? "http" : "https"}://${urlHostname}:${address.port}`

    const issueClientCertificate: DevControlPlane["issueClientCertificate"] = (machineId, publicKeyPem, options) => {
      if (authority === null) return Effect.dieMessage("issueClientCertificate needs a control plane started with tls")
      if (!Certificates.isEd25519PublicKeyPem(publicKeyPem)) {
        return Effect.dieMessage("issueClientCertificate needs an ed25519 public key in SPKI PEM")
      }
      return live(
        Effect.flatMap(Clock.currentTimeMillis, (millis) =>
          Certificates.issueClientCertificate(authority, {
            commonName: Certificates.agentCommonName(machineId, cnSuffix),
            publicKeyPem,
            now: options?.issuedAt ?? new Date(millis)
          }))
      ).pipe(Effect.orDie)
    }

    const controlPlane: DevControlPlane = {
      url,
      trustFile,
      caFile,
      issueClientCertificate,
      mintBootstrapToken: (request) => Effect.orDie(mintBootstrapToken(request)),
      requests: Effect.sync(() => state.requests()),
      publishRollout: (rollout) => Effect.orDie(publish(rollout)),
      serveFleet: (text, options) =>
        Effect.orDie(Effect.map(
          Artifacts.signText(text, options?.forge === true ? forgeryKey : releaseKey),
          (fleet) => state.replaceFleet(fleet)
        )),
      queueDispatch: (forHost, dispatch) => Effect.sync(() => state.enqueue(forHost, dispatch)),
      hostStates: Effect.sync(() => state.hostStates()),
      events: Effect.sync(() => state.acceptedEvents()),
      quarantined: Effect.sync(() => state.quarantined()),
      setFault: (route, fault) =>
        fault === undefined || isValidFault(fault)
          ? Effect.sync(() => state.setFault(route, fault))
          : Effect.dieMessage(`setFault: invalid fault ${JSON.stringify(fault)}`),
      setReady: (ready) => Effect.sync(() => state.setReady(ready))
    }
    return controlPlane
  }).pipe(
    live,
    Effect.mapError((error) =>
      error._tag === "DevControlPlaneError"
        ? error
        : failWith(error._tag === "ParseError" ? "encode the trust file" : "write the generated material")(error)
    ),
    Effect.provide([NodeFileSystem.layer, NodePath.layer]),
    Effect.withSpan("DevControlPlane.start")
  )
