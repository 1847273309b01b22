import { expect, it } from "@effect/vitest"
import { isLegal } from "@nixfleet/state-machine"
import { replay, rollout } from "@nixfleet/state-machine/testing"

it.prop("step refuses an event as illegal exactly when the table does", [rollout()], ([run]) => {
  for (const { before, event, result } of replay(run)) {
    if (event.seq <= before.lastEventSeq) continue // a stale seq is refused before legality
    const illegal = result._tag === "Left" && result.left._tag === "IllegalForState"
    expect(illegal).toBe(!isLegal(before.state, event._tag))
  }
})
