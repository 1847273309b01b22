/**
 * The typed failures of the development control plane.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * Starting the control plane failed: the listener could not bind, generated material could
 * not be written, or certificate generation failed. `operation` says which step.
 *
 * @since 0.1.0
 */
export class DevControlPlaneError extends Data.TaggedError("DevControlPlaneError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  override get message(): string {
    const detail = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `dev control plane: ${this.operation}: ${detail}`
  }
}

/**
 * A rollout could not be published because its description is invalid (a channel outside
 * `[a-z0-9_-]+`, a duplicate host, a negative soak, a date RFC 3339 cannot express...).
 * The library API turns it into a defect, since it is a bug in the calling test; the
 * operator API answers 422 with `reason`.
 *
 * @since 0.1.0
 */
export class InvalidRollout extends Data.TaggedError("InvalidRollout")<{
  readonly reason: string
}> {
  override get message(): string {
    return `invalid rollout: ${this.reason}`
  }
}

/**
 * A bootstrap token could not be minted: an empty hostname, a key that is not an OpenSSH
 * ed25519 public key line, an expiry not after the issue time, a date RFC 3339 cannot
 * express. The library API turns it into a defect; the operator API answers 422.
 *
 * @since 0.1.0
 */
export class InvalidTokenRequest extends Data.TaggedError("InvalidTokenRequest")<{
  readonly reason: string
}> {
  override get message(): string {
    return `invalid bootstrap token request: ${this.reason}`
  }
}
