/**
 * Verify: after the switch is fired, wait until the current-system link points at the
 * expected closure. The link's directory is watched, so a flip is seen within
 * milliseconds, with a poll as a fallback (a watch can miss events, e.g. on some network
 * or overlay file systems). The switch's own end is raced in: a switch that exits without
 * the flip fails at once instead of after the whole budget.
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { readClosure } from "../../support/closureLinks.js"

export type VerifyOutcome =
  /** The link points at the expected closure. */
  | { readonly _tag: "Settled" }
  /** The link points at a third closure, neither expected nor the one before the switch. */
  | { readonly _tag: "Flipped"; readonly observed: string }
  /** The switch ended without the flip. */
  | { readonly _tag: "Ended"; readonly exitCode: number | null; readonly lastObserved: string }
  /** The budget ran out. */
  | { readonly _tag: "Timeout"; readonly lastObserved: string }

/** The fallback poll: well under the reference agent's 2 s, cheap (one readlink). */
const POLL = Duration.millis(250)

export const verify = Effect.fn("ActivationPipeline.verify")(
  function*(args: {
    readonly link: string
    readonly expected: string
    /** The closure before the switch: seeing it means "still switching"; null disables flip detection. */
    readonly previous: string | null
    readonly budget: Duration.Duration
    readonly ended: Effect.Effect<number | null, never, CommandExecutor.CommandExecutor>
  }) {
    // A read error is not fatal: the link is briefly absent while it is replaced.
    let lastObserved = "<no-reads-completed>"
    const look = Effect.gen(function*() {
      const read = yield* Effect.either(readClosure(args.link))
      if (read._tag === "Left") {
        lastObserved = `<read-error: ${read.left.detail}>`
        return undefined
      }
      lastObserved = read.right
      if (read.right === args.expected) return { _tag: "Settled" } as const
      if (args.previous !== null && read.right !== args.previous) {
        return { _tag: "Flipped", observed: read.right } as const
      }
      return undefined
    })

    // Capacity 1, sliding: a wake-up only says "look again"; a burst of events is one look.
    const wake = yield* Queue.sliding<void>(1)
    // Node's watcher itself: an event only wakes the loop (the platform's watch stream
    // stats the entry of every event first, a thread-pool round trip before the look).
    const directory = Path.dirname(args.link)
    yield* Effect.acquireRelease(
      Effect.try(() =>
        Fs.watch(directory, () => {
          Queue.unsafeOffer(wake, undefined)
        }).on("error", () => {
          // The watch is gone (its directory was replaced, say): the poll still looks.
        })
      ).pipe(
        Effect.tapError((error) => Effect.logDebug(`cannot watch ${directory}: ${String(error.error)}; polling`)),
        Effect.option
      ),
      (watcher) => Effect.sync(() => watcher._tag === "Some" && watcher.value.close())
    )
    yield* Queue.offer(wake, undefined).pipe(Effect.repeat(Schedule.spaced(POLL)), Effect.forkScoped)

    const deadline = (yield* Effect.clockWith((clock) => clock.currentTimeMillis)) + Duration.toMillis(args.budget)
    const ended = yield* Effect.fork(args.ended)
    while (true) {
      const decided = yield* look
      if (decided !== undefined) return decided
      const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const next = yield* Effect.raceAll([
        Effect.as(Queue.take(wake), { _tag: "Look" } as const),
        Effect.map(
          ended.await,
          (exit) => ({ _tag: "Ended", exitCode: exit._tag === "Success" ? exit.value : null }) as const
        ),
        Effect.as(Effect.sleep(Duration.millis(Math.max(0, deadline - now))), { _tag: "Deadline" } as const)
      ])
      if (next._tag === "Look") {
        continue
      }
      // One last look: the flip may have landed just before the switch ended or time ran out.
      const last = yield* look
      if (last !== undefined) {
        return last
      }
      return next._tag === "Ended"
        ? { _tag: "Ended", exitCode: next.exitCode, lastObserved } as const
        : { _tag: "Timeout", lastObserved } as const
    }
  },
  Effect.scoped,
  Effect.annotateLogs("phase", "verify")
)
