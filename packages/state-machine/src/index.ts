/**
 * The pure host-rollout state machine. No I/O, no clock: every timestamp comes from an
 * event and `now` is a parameter.
 *
 * @since 0.1.0
 */
export * from "./Command.js"
export * from "./Event.js"
export * from "./HostRolloutState.js"
export * from "./HostState.js"
export * from "./ProbeRecord.js"
export * from "./Rehydration.js"
export * from "./RolloutPolicy.js"
export * from "./Snapshot.js"
export * from "./Step.js"
export * from "./TransitionError.js"
export * from "./Transitions.js"
export * from "./Wire.js"
