/**
 * Settings that only turn an optional output on (systemd notifications, tracing).
 *
 * @internal
 */
import type * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"

/**
 * `settings` from the current `ConfigProvider`; when they cannot be read, `warning` (with
 * the error) and none: an optional output is never a reason not to run.
 *
 * @internal
 */
export const optionalSettings = <A>(settings: Config.Config<A>, warning: string): Effect.Effect<Option.Option<A>> =>
  settings.pipe(
    Effect.tapError((error) => Effect.logWarning(warning).pipe(Effect.annotateLogs("error", String(error)))),
    Effect.option
  )
