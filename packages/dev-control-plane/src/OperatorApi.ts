/**
 * The operator API: `/v1/operator/*`, unauthenticated and answered only to loopback
 * clients, for humans and for tests that drive the control plane from another process.
 * It bypasses the readiness gate (the first publish has to get through it) and the
 * protocol check (it is not part of the agent protocol).
 *
 * @since 0.1.0
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { type BootstrapToken, formatRfc3339 } from "@nixfleet/proto"
import { type HostRolloutState, payloadToWire } from "@nixfleet/state-machine"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { type MintBootstrapToken, MintBootstrapTokenJson } from "./BootstrapTokens.js"
import type { InvalidRollout, InvalidTokenRequest } from "./DevControlPlaneError.js"
import { decodeJsonBody, errorResponse } from "./internal/http.js"
import { type PublishRollout, PublishRolloutJson } from "./PublishRollout.js"
import type { ControlPlaneState } from "./State.js"

/**
 * What the operator API needs: the state to show, the publish operation and token minting.
 *
 * @since 0.1.0
 */
export interface OperatorConfig {
  readonly state: ControlPlaneState
  readonly publish: (
    rollout: PublishRollout
  ) => Effect.Effect<{ readonly rolloutId: string; readonly soakDueAt: Date }, InvalidRollout>
  readonly mintBootstrapToken: (request: MintBootstrapToken) => Effect.Effect<BootstrapToken, InvalidTokenRequest>
}

/**
 * True for 127.0.0.0/8 and ::1, in their IPv4-mapped forms too.
 *
 * @since 0.1.0
 */
export const isLoopback = (address: string): boolean => {
  const v4 = address.startsWith("::ffff:") ? address.slice("::ffff:".length) : address
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4) || address === "::1"
}

const timestamp = (date: Date | null): string | null => (date === null ? null : formatRfc3339(date) ?? null)

/**
 * A host record as JSON: dates as RFC 3339, probes as an object keyed by probe name.
 *
 * @since 0.1.0
 */
export const recordToJson = (record: HostRolloutState): Record<string, unknown> => ({
  rolloutId: record.rolloutId,
  hostname: record.hostname,
  channel: record.channel,
  state: record.state,
  targetClosure: record.targetClosure,
  currentClosureAtDispatch: record.currentClosureAtDispatch,
  currentClosure: record.currentClosure,
  revertedTo: record.revertedTo,
  dispatchedAt: timestamp(record.dispatchedAt),
  dispatchAckedAt: timestamp(record.dispatchAckedAt),
  activationStartedAt: timestamp(record.activationStartedAt),
  activationCompletedAt: timestamp(record.activationCompletedAt),
  activationFailedAt: timestamp(record.activationFailedAt),
  probeObservedFirstAt: timestamp(record.probeObservedFirstAt),
  probeFailureFirstAt: timestamp(record.probeFailureFirstAt),
  soakDueAt: timestamp(record.soakDueAt),
  convergedAt: timestamp(record.convergedAt),
  failedAt: timestamp(record.failedAt),
  policyApplied: record.policyApplied,
  revertedAt: timestamp(record.revertedAt),
  probes: Object.fromEntries(
    [...record.probes].map(([name, probe]) => [name, {
      status: probe.status,
      mode: probe.mode,
      lastObservedAt: timestamp(probe.lastObservedAt),
      lastPassAt: timestamp(probe.lastPassAt),
      failureReason: probe.failureReason
    }])
  ),
  lastEventSeq: record.lastEventSeq
})

const hosts = (state: ControlPlaneState) =>
  Object.fromEntries([...state.hostStates()].map(([key, record]) => [key, recordToJson(record)]))

const events = (state: ControlPlaneState) =>
  state.acceptedEvents().map((event) => ({
    envelope: event.envelope,
    duplicate: event.duplicate,
    receivedAt: timestamp(event.receivedAt)
  }))

const log = (state: ControlPlaneState) => {
  const { events, lastHeartbeatAt, transitions } = state.log()
  return {
    events: events.map((entry) => ({
      host: entry.host,
      rolloutId: entry.rolloutId,
      source: entry.source,
      event: Either.getOrNull(payloadToWire(entry.payload))
    })),
    transitions: transitions.map((transition) => ({ ...transition, at: timestamp(transition.at) })),
    lastHeartbeatAt: Object.fromEntries([...lastHeartbeatAt].map(([host, at]) => [host, timestamp(at)]))
  }
}

const publish = (config: OperatorConfig, request: HttpServerRequest.HttpServerRequest) =>
  decodeJsonBody(request, PublishRolloutJson, { requireContentType: false }).pipe(
    Effect.flatMap(({ value }) => config.publish(value)),
    Effect.map(({ rolloutId, soakDueAt }) =>
      HttpServerResponse.unsafeJson({ rolloutId, soakDueAt: timestamp(soakDueAt) })
    ),
    Effect.catchTags({
      Refusal: (refusal) => Effect.succeed(refusal.response),
      InvalidRollout: (invalid) => Effect.succeed(errorResponse(422, "invalid rollout", { detail: invalid.reason }))
    })
  )

const mint = (config: OperatorConfig, request: HttpServerRequest.HttpServerRequest) =>
  decodeJsonBody(request, MintBootstrapTokenJson, { requireContentType: false }).pipe(
    Effect.flatMap(({ value }) => config.mintBootstrapToken(value)),
    Effect.map((token) => HttpServerResponse.unsafeJson(token)),
    Effect.catchTags({
      Refusal: (refusal) => Effect.succeed(refusal.response),
      InvalidTokenRequest: (invalid) =>
        Effect.succeed(errorResponse(422, "invalid bootstrap token request", { detail: invalid.reason }))
    })
  )

const requests = (state: ControlPlaneState) => state.requests().map((entry) => ({ ...entry, at: timestamp(entry.at) }))

/**
 * Answers `/v1/operator/*`:
 *
 * - `GET /v1/operator/hosts`: the host records, keyed `${rolloutId}/${hostname}`;
 * - `POST /v1/operator/rollouts`: publishes a rollout (JSON {@link PublishRollout}, dates
 *   as RFC 3339), answers `{rolloutId, soakDueAt}`; 400 for bad JSON, 422 for an invalid
 *   rollout;
 * - `GET /v1/operator/events`: every accepted event body with its duplicate flag;
 * - `GET /v1/operator/quarantine`: the quarantined (channel, closure) pairs;
 * - `GET /v1/operator/log`: the control plane's own audit log (applied and synthesised
 *   events, state transitions, last heartbeat per host);
 * - `POST /v1/operator/bootstrap-tokens`: mints a bootstrap token (JSON
 *   `{hostname, pubkey, issuedAt?, expiresAt?}`, `pubkey` an OpenSSH `ssh-ed25519` line,
 *   dates as RFC 3339) and answers the token file's JSON; 400 for bad JSON, 422 for an
 *   invalid request;
 * - `GET /v1/operator/requests`: the most recent agent-facing requests, with their status
 *   and the client certificate (SHA-256 fingerprint, serial) that authenticated them.
 *
 * 403 for a client that is not on loopback.
 *
 * @since 0.1.0
 */
export const handle = (
  config: OperatorConfig,
  request: HttpServerRequest.HttpServerRequest,
  path: string
): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.suspend(() => {
    const remote = Option.getOrElse(request.remoteAddress, () => "")
    if (!isLoopback(remote)) return Effect.succeed(errorResponse(403, "the operator API only answers loopback clients"))
    const get = (body: () => unknown) =>
      Effect.succeed(
        request.method === "GET" ? HttpServerResponse.unsafeJson(body()) : errorResponse(405, "method not allowed")
      )
    switch (path) {
      case "/v1/operator/hosts":
        return get(() => hosts(config.state))
      case "/v1/operator/events":
        return get(() => events(config.state))
      case "/v1/operator/quarantine":
        return get(() => config.state.quarantined())
      case "/v1/operator/log":
        return get(() => log(config.state))
      case "/v1/operator/rollouts":
        return request.method === "POST"
          ? publish(config, request)
          : Effect.succeed(errorResponse(405, "method not allowed"))
      case "/v1/operator/bootstrap-tokens":
        return request.method === "POST"
          ? mint(config, request)
          : Effect.succeed(errorResponse(405, "method not allowed"))
      case "/v1/operator/requests":
        return get(() => requests(config.state))
      default:
        return Effect.succeed(errorResponse(404, "not found"))
    }
  })
