/**
 * @since 0.1.0
 */
export * from "./ActivationPipeline.js"
export * from "./ActivationPipelineLive.js"
export * from "./ActivationWorker.js"
export * from "./AdvanceTicker.js"
export * from "./AgentConfig.js"
export * from "./AgentRuntime.js"
export * from "./ControlPlaneClient.js"
export * from "./ManifestSet.js"
export * from "./OutboundSender.js"
export * from "./Outbox.js"
export * from "./PipelineConfig.js"
export * from "./Reducer.js"
export * from "./ReducerInput.js"
export * from "./RuntimeChannels.js"
export * from "./Shutdown.js"
export * from "./version.js"
