/**
 * Conversions between reducer events and wire `AgentEvent`s: a Local event's payload
 * becomes, on the control plane, the Remote event that runs the same transition.
 *
 * @since 0.1.0
 */
import { AgentEvent } from "@nixfleet/proto"
import * as Schema from "effect/Schema"
import type { OutboundAgentEvent } from "./Command.js"
import type { Event, RemoteEvent } from "./Event.js"

/**
 * The outbound payload an event reports: its own fields and its seq, under the upstream
 * OutboundAgentEvent name. Local and Remote mirrors give the same payload.
 *
 * @since 0.1.0
 */
export const outboundPayload = (event: Event): OutboundAgentEvent => {
  switch (event._tag) {
    case "LocalActivate":
    case "RemoteDispatchAck":
      return {
        _tag: "DispatchAck",
        currentClosureAtDispatch: event.currentClosureAtDispatch,
        receivedAt: event.receivedAt,
        seq: event.seq
      }
    case "LocalActivationStarted":
    case "RemoteActivationStarted":
      return { _tag: "ActivationStarted", startedAt: event.startedAt, switchMethod: event.switchMethod, seq: event.seq }
    case "LocalActivationCompleted":
    case "RemoteActivationCompleted":
      return {
        _tag: "ActivationCompleted",
        observedCurrentClosure: event.observedCurrentClosure,
        exitCode: event.exitCode,
        completedAt: event.completedAt,
        seq: event.seq
      }
    case "LocalActivationDeferred":
    case "RemoteActivationDeferred":
      return { _tag: "ActivationDeferred", component: event.component, deferredAt: event.deferredAt, seq: event.seq }
    case "LocalActivationFailed":
    case "RemoteActivationFailed":
      return {
        _tag: "ActivationFailed",
        exitCode: event.exitCode,
        stderrTail: event.stderrTail,
        failedAt: event.failedAt,
        seq: event.seq
      }
    case "LocalProbeTopologyDeclared":
    case "RemoteProbeTopologyDeclared":
      return { _tag: "ProbeTopologyDeclared", probes: event.probes, declaredAt: event.declaredAt, seq: event.seq }
    case "LocalProbeObservedFirst":
    case "RemoteProbeObservedFirst":
      return {
        _tag: "ProbeObservedFirst",
        probeName: event.probeName,
        mode: event.mode,
        observedAt: event.observedAt,
        seq: event.seq
      }
    case "LocalProbeResult":
    case "RemoteProbeResult":
      return {
        _tag: "ProbeResult",
        probeName: event.probeName,
        mode: event.mode,
        status: event.status,
        observedAt: event.observedAt,
        failureReason: event.failureReason,
        subResults: event.subResults,
        seq: event.seq
      }
    case "LocalProbeFailureFirst":
    case "RemoteProbeFailureFirst":
      return {
        _tag: "ProbeFailureFirst",
        probeName: event.probeName,
        mode: event.mode,
        firstFailedAt: event.firstFailedAt,
        seq: event.seq
      }
    case "LocalSustainedFailureCrossed":
    case "RemoteFailed":
      return {
        _tag: "Failed",
        failedAt: event.failedAt,
        sustainedDurationSecs: event.sustainedDurationSecs,
        failingProbes: event.failingProbes,
        policyApplied: event.policyApplied,
        seq: event.seq
      }
    case "LocalRollbackCompleted":
    case "RemoteRollbackComplete":
      return {
        _tag: "RollbackComplete",
        revertedToClosure: event.revertedToClosure,
        exitCode: event.exitCode,
        completedAt: event.completedAt,
        seq: event.seq
      }
    case "LocalConvergedReached":
    case "RemoteConverged":
      return { _tag: "Converged", convergedAt: event.convergedAt, currentClosure: event.currentClosure, seq: event.seq }
  }
}

/**
 * The control plane's reading of an inbound agent event: the Remote event fed to `step`.
 *
 * @since 0.1.0
 */
export const remoteEventFromWire = (event: OutboundAgentEvent): RemoteEvent => {
  switch (event._tag) {
    case "DispatchAck":
      return { ...event, _tag: "RemoteDispatchAck" }
    case "ActivationStarted":
      return { ...event, _tag: "RemoteActivationStarted" }
    case "ActivationCompleted":
      return { ...event, _tag: "RemoteActivationCompleted" }
    case "ActivationFailed":
      return { ...event, _tag: "RemoteActivationFailed" }
    case "ActivationDeferred":
      return { ...event, _tag: "RemoteActivationDeferred" }
    case "ProbeTopologyDeclared":
      return { ...event, _tag: "RemoteProbeTopologyDeclared" }
    case "ProbeObservedFirst":
      return { ...event, _tag: "RemoteProbeObservedFirst" }
    case "ProbeResult":
      return { ...event, _tag: "RemoteProbeResult" }
    case "ProbeFailureFirst":
      return { ...event, _tag: "RemoteProbeFailureFirst" }
    case "Failed":
      return { ...event, _tag: "RemoteFailed" }
    case "RollbackComplete":
      return { ...event, _tag: "RemoteRollbackComplete" }
    case "Converged":
      return { ...event, _tag: "RemoteConverged" }
  }
}

/**
 * The Remote event the control plane will run for a Local event the agent reports.
 *
 * @since 0.1.0
 */
export const remoteMirror = (event: Event): RemoteEvent => remoteEventFromWire(outboundPayload(event))

/**
 * Payload to wire JSON (`{"kind": ..., camelCase fields}`). Left only for values no valid
 * event has, such as an invalid date.
 *
 * @since 0.1.0
 */
export const payloadToWire = Schema.encodeEither(AgentEvent)

/**
 * Wire JSON to payload; malformed input is a `ParseError` on the left.
 *
 * @since 0.1.0
 */
export const payloadFromWire = Schema.decodeUnknownEither(AgentEvent)
