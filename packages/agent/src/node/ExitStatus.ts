/**
 * The process exit status a command asks for (the entry point exits with it).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Ref from "effect/Ref"

/**
 * @since 0.1.0
 */
export class ExitStatus extends Context.Tag("@nixfleet/agent/node/ExitStatus")<ExitStatus, Ref.Ref<number>>() {}
