/**
 * What a publish describes, and how it is validated: the same rules for the library call
 * and for `POST /v1/operator/rollouts`, whose JSON carries dates as RFC 3339 text.
 *
 * @since 0.1.0
 */
import { Instant, OnHealthFailure, Timestamp } from "@nixfleet/proto"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { InvalidRollout } from "./DevControlPlaneError.js"
import { parseOpenSshEd25519 } from "./internal/keys.js"

/**
 * One rollout to publish.
 *
 * @since 0.1.0
 */
export interface PublishRollout {
  /** `[a-z0-9_-]+`: the channel, and the policy of the same name in `fleet.resolved`. */
  readonly channel: string
  /**
   * The hosts of the rollout (distinct hostnames), each with the closure it must run and,
   * optionally, its key as an OpenSSH `ssh-ed25519` public key line: `fleet.resolved`
   * declares it, and enrollment and renewal only certify that key for the host.
   */
  readonly hosts: ReadonlyArray<HostTarget>
  /** The channel policy's `onHealthFailure`; default `"rollback-and-halt"`. */
  readonly onHealthFailure?: "halt" | "rollback-and-halt"
  /** Default 0. `soak_due_at` = publish time + this many minutes; fractions work (0.05 = 3 s). */
  readonly soakMinutes?: number
  /** `meta.signedAt` of both artifacts; default now. Old or future dates make them stale or future-dated. */
  readonly signedAt?: Date
  /** Sign the rollout manifest with a key that is not in the trust file (fleet.resolved stays genuine). */
  readonly forge?: boolean
  /** Default true: queue one dispatch per host. */
  readonly dispatch?: boolean
  /**
   * The key of each host's platform in `fleet.resolved`: `"platform"` (default, later
   * upstream code) or `"system"` (the v0.2 reference's Rust type and Nix emitter).
   */
  readonly platformKey?: "platform" | "system"
}

/**
 * One host of a publish.
 *
 * @since 0.1.0
 */
export interface HostTarget {
  readonly hostname: string
  readonly targetClosure: string
  readonly pubkey?: string
}

const HostTargetSchema = Schema.Struct({
  hostname: Schema.NonEmptyString,
  targetClosure: Schema.NonEmptyString,
  pubkey: Schema.optionalWith(
    Schema.String.pipe(
      Schema.filter((line) => parseOpenSshEd25519(line) !== undefined, {
        message: () => "pubkey must be an OpenSSH ssh-ed25519 public key line"
      })
    ),
    { exact: true }
  )
})

const distinctHostnames = (hosts: ReadonlyArray<{ readonly hostname: string }>): boolean =>
  new Set(hosts.map((host) => host.hostname)).size === hosts.length

const fields = {
  channel: Schema.String.pipe(Schema.pattern(/^[a-z0-9_-]+$/, { message: () => "channel must match [a-z0-9_-]+" })),
  hosts: Schema.Array(HostTargetSchema).pipe(
    Schema.filter(distinctHostnames, { message: () => "hostnames must be distinct" })
  ),
  onHealthFailure: Schema.optionalWith(OnHealthFailure, { exact: true }),
  soakMinutes: Schema.optionalWith(Schema.Number.pipe(Schema.finite(), Schema.nonNegative()), { exact: true }),
  forge: Schema.optionalWith(Schema.Boolean, { exact: true }),
  dispatch: Schema.optionalWith(Schema.Boolean, { exact: true }),
  platformKey: Schema.optionalWith(Schema.Literal("platform", "system"), { exact: true })
}

/**
 * The JSON body of `POST /v1/operator/rollouts`: a {@link PublishRollout} with `signedAt`
 * as RFC 3339 text.
 *
 * @since 0.1.0
 */
export const PublishRolloutJson = Schema.Struct({
  ...fields,
  signedAt: Schema.optionalWith(Timestamp, { exact: true })
}).annotations({ identifier: "PublishRolloutJson" })

const PublishRolloutValue = Schema.Struct({
  ...fields,
  signedAt: Schema.optionalWith(Instant, { exact: true })
})

/**
 * A publish with every default applied.
 *
 * @since 0.1.0
 */
export interface ValidPublish {
  readonly channel: string
  readonly hosts: ReadonlyArray<HostTarget>
  readonly onHealthFailure: "halt" | "rollback-and-halt"
  readonly soakMinutes: number
  readonly signedAt: Date | null
  readonly forge: boolean
  readonly dispatch: boolean
  readonly platformKey: "platform" | "system"
}

/**
 * Checks a publish given by a caller and applies the defaults (`signedAt: null` = now).
 *
 * @since 0.1.0
 */
export const validate = (input: PublishRollout): Either.Either<ValidPublish, InvalidRollout> =>
  Schema.decodeUnknownEither(PublishRolloutValue)(input).pipe(
    Either.mapLeft((error) => new InvalidRollout({ reason: ParseResult.TreeFormatter.formatErrorSync(error) })),
    Either.map((valid) => ({
      channel: valid.channel,
      hosts: valid.hosts,
      onHealthFailure: valid.onHealthFailure ?? "rollback-and-halt",
      soakMinutes: valid.soakMinutes ?? 0,
      signedAt: valid.signedAt ?? null,
      forge: valid.forge ?? false,
      dispatch: valid.dispatch ?? true,
      platformKey: valid.platformKey ?? "platform"
    }))
  )
