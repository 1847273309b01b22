/**
 * The process exit status a command asks for (the entry point exits with it).
 *
 * @internal
 */
import * as Context from "effect/Context"
import type * as Ref from "effect/Ref"

/**
 * @internal
 */
export class ExitStatus extends Context.Tag("@nixfleet/agent/node/ExitStatus")<ExitStatus, Ref.Ref<number>>() {}
