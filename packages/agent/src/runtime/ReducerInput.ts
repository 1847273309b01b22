/**
 * Everything the reducer fiber consumes, through one bounded queue.
 *
 * @since 0.1.0
 */
import type { HostRolloutSnapshot } from "@nixfleet/proto"
import type { LocalEvent } from "@nixfleet/state-machine"
import * as Data from "effect/Data"
import type { ManifestSet } from "./ManifestSet.js"

/**
 * @since 0.1.0
 */
export type ReducerInput = Data.TaggedEnum<{
  /** A Local event from a worker, for one rollout. Workers send seq 0; the reducer assigns seqs. */
  HostEvent: {
    readonly rolloutId: string
    readonly event: LocalEvent
    /**
     * For a `LocalActivate` from a verified dispatch: this host's wave in the signed
     * manifest, whose soak time bounds the dispatch's (unsigned) soak deadline.
     */
    readonly waveIndex?: number
  }
  /** The periodic sweep: sustained-failure and convergence gates. */
  AdvanceTick: {}
  /** A freshly verified fleet and its rollout manifests: the source of rollout policies. */
  ManifestSetUpdated: { readonly set: ManifestSet }
  /** The control plane's record of one rollout (boot recovery and every heartbeat). */
  BootstrapHost: { readonly snapshot: HostRolloutSnapshot }
  /** Does nothing: handled in turn, it shows the reducer is alive (the systemd watchdog). */
  Ping: {}
}>

/**
 * Constructors: `ReducerInput.HostEvent({ rolloutId, event })` and so on.
 *
 * @since 0.1.0
 */
export const ReducerInput = Data.taggedEnum<ReducerInput>()
