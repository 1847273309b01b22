/**
 * Record ↔ `HostRolloutSnapshot` conversions: what a snapshot carries survives, the wire
 * included, and what it does not carry stays the base record's.
 */
import { describe, expect, it } from "@effect/vitest"
import { HostRolloutSnapshot } from "@nixfleet/proto"
import { newPending, recordFromSnapshot, recordToSnapshot } from "@nixfleet/state-machine"
import * as Arbitraries from "@nixfleet/state-machine/testing"
import { Schema } from "effect"

const localFields = [
  "revertedTo",
  "activationFailedAt",
  "probeObservedFirstAt",
  "probeFailureFirstAt",
  "convergedAt",
  "failedAt",
  "policyApplied",
  "revertedAt"
] as const

describe("Snapshot", () => {
  it.prop("a record's snapshot survives the wire", [Arbitraries.record()], ([record]) => {
    const snapshot = recordToSnapshot(record)
    const json = JSON.parse(JSON.stringify(Schema.encodeSync(HostRolloutSnapshot)(snapshot)))
    expect(Schema.decodeUnknownSync(HostRolloutSnapshot)(json)).toStrictEqual(snapshot)
  })

  it.prop("a record's own snapshot over it gives the record back", [Arbitraries.record()], ([record]) => {
    expect(recordFromSnapshot(recordToSnapshot(record), record)).toStrictEqual(record)
  })

  it.prop(
    "without a base, a snapshot gives a record with its fields and nothing the agent keeps for itself",
    [Arbitraries.record()],
    ([source]) => {
      const snapshot = recordToSnapshot(source)
      const record = recordFromSnapshot(snapshot)
      expect(recordToSnapshot(record)).toStrictEqual(snapshot)
      expect(record.probes.size).toBe(0)
      for (const field of localFields) expect(record[field], field).toBeNull()
    }
  )

  it.prop(
    "over a base, a snapshot replaces its canonical fields and keeps the rest",
    [Arbitraries.record(), Arbitraries.record()],
    ([base, source]) => {
      const record = recordFromSnapshot(recordToSnapshot(source), base)
      expect(recordToSnapshot(record)).toStrictEqual(recordToSnapshot(source))
      expect(record.probes).toBe(base.probes)
      for (const field of localFields) expect(record[field], field).toStrictEqual(base[field])
    }
  )

  it("an empty closure at dispatch (the control plane synthesised the acknowledgement) is unknown", () => {
    const pending = newPending({
      rolloutId: "stable@7f3a9c1",
      hostname: "web-01",
      channel: "stable",
      targetClosure: Arbitraries.Closures.target,
      dispatchedAt: Arbitraries.epoch,
      soakDueAt: null
    })
    const snapshot = { ...recordToSnapshot(pending), state: "Activating" as const, currentClosureAtDispatch: "" }
    expect(recordFromSnapshot(snapshot).currentClosureAtDispatch).toBeNull()
    expect(recordFromSnapshot(snapshot, { ...pending, currentClosureAtDispatch: "prior" }).currentClosureAtDispatch)
      .toBeNull()
  })
})
