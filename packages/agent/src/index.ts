/**
 * `@nixfleet/agent`: the nixfleet host agent as Effect services and fibers. Each public
 * module is a namespace, as in Effect's own packages: `AgentRuntime.layer()`,
 * `Outbox.Outbox` (the service's tag), `Longpoll.layer` (a worker), and so on. Every module
 * is also its own subpath export (`@nixfleet/agent/Outbox`).
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as ActivationPipeline from "./pipeline/ActivationPipeline.js"
/** @since 0.1.0 */
export * as ActivationWorker from "./runtime/ActivationWorker.js"
/** @since 0.1.0 */
export * as AdvanceTicker from "./runtime/AdvanceTicker.js"
/** @since 0.1.0 */
export * as AgentConfig from "./config/AgentConfig.js"
/** @since 0.1.0 */
export * as AgentRuntime from "./AgentRuntime.js"
/** @since 0.1.0 */
export * as AgentStatus from "./status/AgentStatus.js"
/** @since 0.1.0 */
export * as CertificateRenewal from "./identity/CertificateRenewal.js"
/** @since 0.1.0 */
export * as ClientCertificate from "./identity/ClientCertificate.js"
/** @since 0.1.0 */
export * as ControlPlaneClient from "./controlplane/ControlPlaneClient.js"
/** @since 0.1.0 */
export * as ControlPlaneHttp from "./controlplane/ControlPlaneHttp.js"
/** @since 0.1.0 */
export * as DispatchChecks from "./controlplane/DispatchChecks.js"
/** @since 0.1.0 */
export * as Enrollment from "./identity/Enrollment.js"
/** @since 0.1.0 */
export * as HealthChecks from "./probes/HealthChecks.js"
/** @since 0.1.0 */
export * as Heartbeat from "./controlplane/Heartbeat.js"
/** @since 0.1.0 */
export * as HostLedger from "./runtime/HostLedger.js"
/** @since 0.1.0 */
export * as Longpoll from "./controlplane/Longpoll.js"
/** @since 0.1.0 */
export * as ManifestCache from "./controlplane/ManifestCache.js"
/** @since 0.1.0 */
export * as ManifestPoll from "./controlplane/ManifestPoll.js"
/** @since 0.1.0 */
export * as ManifestSet from "./runtime/ManifestSet.js"
/** @since 0.1.0 */
export * as Metrics from "./observability/Metrics.js"
/** @since 0.1.0 */
export * as MetricsExporter from "./observability/MetricsExporter.js"
/** @since 0.1.0 */
export * as NixfleetAgent from "./NixfleetAgent.js"
/** @since 0.1.0 */
export * as NixActivationPipeline from "./pipeline/NixActivationPipeline.js"
/** @since 0.1.0 */
export * as OutboundSender from "./controlplane/OutboundSender.js"
/** @since 0.1.0 */
export * as Outbox from "./outbox/Outbox.js"
/** @since 0.1.0 */
export * as PipelineConfig from "./config/PipelineConfig.js"
/** @since 0.1.0 */
export * as ProbeRunner from "./probes/Runner.js"
/** @since 0.1.0 */
export * as ProbeScheduler from "./probes/ProbeScheduler.js"
/** @since 0.1.0 */
export * as Reducer from "./runtime/Reducer.js"
/** @since 0.1.0 */
export * as ReducerInput from "./runtime/ReducerInput.js"
/** @since 0.1.0 */
export * as RuntimeChannels from "./runtime/RuntimeChannels.js"
/** @since 0.1.0 */
export * as Shutdown from "./runtime/Shutdown.js"
/** @since 0.1.0 */
export * as StatusBoard from "./runtime/StatusBoard.js"
/** @since 0.1.0 */
export * as StatusReport from "./status/StatusReport.js"
/** @since 0.1.0 */
export * as StatusServer from "./status/StatusServer.js"
/** @since 0.1.0 */
export * as SystemdNotify from "./node/SystemdNotify.js"
/** @since 0.1.0 */
export * as Tracing from "./observability/Tracing.js"
/** @since 0.1.0 */
export * as Workers from "./runtime/Workers.js"
/** @since 0.1.0 */
export { VERSION } from "./support/version.js"
