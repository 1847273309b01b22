/**
 * The reference agent's file queue (`<state-dir>/outbound-queue/`, spec agent-runtime
 * §4.1) written the way the reference writes it, independently of our importer and
 * exporter: for tests that take over, or hand back, a queue.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"

/** Spec §4.1: every character outside `[A-Za-z0-9-@.]` becomes `_`. */
const sanitise = (part: string) => part.replace(/[^A-Za-z0-9\-@.]/g, "_")

/** A `QueuedEvent` as the reference serialises it (snake_case keys, the wire event as payload). */
export interface Queued {
  readonly seq: number
  readonly hostname: string
  readonly rollout_id: string
  readonly event_kind: string
  readonly created_at: string
  readonly payload: Readonly<Record<string, unknown>>
}

/** `{seq:020}-{host}-{rollout}-{kind}.json`. */
export const upstreamFileName = (queued: Pick<Queued, "seq" | "hostname" | "rollout_id" | "event_kind">) =>
  `${String(queued.seq).padStart(20, "0")}-${sanitise(queued.hostname)}-${sanitise(queued.rollout_id)}-${
    sanitise(queued.event_kind)
  }.json`

export const queued = (
  hostname: string,
  rolloutId: string,
  seq: number,
  createdAt: string,
  payload: Readonly<Record<string, unknown>>
): Queued => ({
  seq,
  hostname,
  rollout_id: rolloutId,
  event_kind: String(payload["kind"]),
  created_at: createdAt,
  payload: { ...payload, seq }
})

/** Writes the files (pretty-printed, as serde_json's `to_vec_pretty`) into `<stateDir>/outbound-queue/`. */
export const writeUpstreamQueue = (stateDir: string, events: ReadonlyArray<Queued>): string => {
  const directory = Path.join(stateDir, "outbound-queue")
  Fs.mkdirSync(directory, { recursive: true })
  for (const event of events) {
    Fs.writeFileSync(Path.join(directory, upstreamFileName(event)), JSON.stringify(event, null, 2))
  }
  return directory
}
