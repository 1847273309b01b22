/**
 * `@nixfleet/dev-control-plane`: an embedded nixfleet control plane for development and
 * tests. **It is a development tool, not a production control plane**: everything lives in
 * memory, it signs its own artifacts and bootstrap tokens with keys it generates at start,
 * it mints its own CA, and it has no database, no planner and no authentication on its
 * operator API beyond "loopback only".
 *
 * What it does implement faithfully is the agent-facing wire of spec/wire-protocol.md, so
 * that an agent can be tested against it byte for byte:
 *
 * - the readiness gate (503, `Retry-After: 30`, the exact JSON body) until the first
 *   publish, the `X-Nixfleet-Protocol` check (400/426, strict mode), and with TLS the
 *   client-certificate identity (401 without one, 403 when a body names another host);
 * - `POST /v1/agent/heartbeat` with recovery synthesis and `bootstrap_rollouts`;
 * - `GET /v1/agent/dispatch?wait=N`, a per-host FIFO with pop-on-delivery and a long-poll
 *   woken by any enqueue;
 * - `POST /v1/agent/events`, deduplicated on `seq` and run through the same `step()` as
 *   the agent (Remote events), applying the control plane's commands (quarantine, event
 *   log, transitions) and silently dropping what `step()` refuses;
 * - `fleet.resolved` and rollout manifests served as the exact (pretty-printed) bytes that
 *   were signed, with raw 64-byte signatures;
 * - with TLS, `POST /v1/enroll` (bootstrap token + CSR, the ordered checks of §5.3: 409
 *   replay, 401 token, 400 CSR, 401 host key) and `POST /v1/agent/renew`, issuing
 *   certificates with CN `agent-<machineId>.<suffix>` from its CA for the key the published
 *   `fleet.resolved` declares for the host.
 *
 * Tests drive it through the {@link DevControlPlane} handle (`publishRollout`,
 * `mintBootstrapToken`, `queueDispatch`, `setFault`, `setReady`, `requests`, ...); other
 * processes and humans use the operator API
 * (`/v1/operator/hosts|rollouts|events|quarantine|log|bootstrap-tokens|requests`) or run
 * `src/main.ts`, which prints `{"url", "trustFile", "caFile"}` on one line and serves
 * until SIGTERM or SIGINT.
 *
 * Over plain HTTP there is no client identity: heartbeat and events trust the body's
 * hostname, and a dispatch poll is served for the host named by the dev-only
 * `X-Nixfleet-Machine-Id` header or, without it, for the host of the last heartbeat or
 * event. Use `tls: true` when several agents share one control plane.
 *
 * @since 0.1.0
 */
export { type MintBootstrapToken, MintBootstrapTokenJson } from "./BootstrapTokens.js"
export { machineIdFromCommonName } from "./Certificates.js"
export * from "./DevControlPlane.js"
export * from "./DevControlPlaneError.js"
export * from "./Faults.js"
export * from "./PublishRollout.js"
export { MACHINE_ID_HEADER, NOT_READY_BODY, PROTOCOL_MAJOR } from "./Routes.js"
export type { DispatchWire, RecordedRequest } from "./State.js"
