import type { LocalEvent } from "@nixfleet/state-machine"

/**
 * The event with the reducer's seq. Every Local event gets one (the reference agent forgot
 * `LocalActivationDeferred`, so deferred activations were refused as seq regressions).
 *
 * @internal
 */
export const withSeq = <E extends LocalEvent>(event: E, seq: number): E => ({ ...event, seq })
