/**
 * The outbox's one error, and turning every failure of the storage stack (SqlError, PlatformError, ParseError, and the
 * defects a native driver can throw) into an `OutboxError`, so callers never see a throw.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { describeError } from "../support/describeError.js"

export {
  /** @since 0.1.0 */
  describeError,
  /** @since 0.1.0 */
  errnoOf
} from "../support/describeError.js"

/**
 * A storage failure (disk full, read-only file system, I/O error). Public as
 * `Outbox.OutboxError`; defined here so that the implementation never imports `Outbox.ts`
 * at run time.
 *
 * @since 0.1.0
 */
export class OutboxError extends Data.TaggedError("OutboxError")<{
  readonly operation: string
  readonly message: string
  readonly cause?: unknown
}> {}

export const outboxError = (operation: string, cause: unknown, context?: string): OutboxError =>
  new OutboxError({
    operation,
    message: `outbox ${operation} failed${context === undefined ? "" : ` (${context})`}: ${describeError(cause)}`,
    cause
  })

/**
 * Maps the typed errors and the defects of `self` to `OutboxError`; interruption stays
 * interruption.
 */
export const guard = (operation: string, context?: string) =>
<A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, OutboxError, R> =>
  self.pipe(
    Effect.mapError((error) => outboxError(operation, error, context)),
    Effect.catchAllDefect((defect) => Effect.fail(outboxError(operation, defect, context)))
  )

/**
 * The same for a layer: the SQLite client and the migrator die (rather than fail) when
 * the driver throws while opening or a migration fails.
 */
export const guardLayer = (operation: string, context?: string) =>
<A, E, R>(
  self: Layer.Layer<A, E, R>
): Layer.Layer<A, OutboxError, R> =>
  Layer.catchAllCause(self, (cause) =>
    Cause.isInterruptedOnly(cause)
      ? Layer.failCause(Cause.map(cause, (error) => outboxError(operation, error, context)))
      : Layer.fail(outboxError(operation, Cause.squash(cause), context)))
