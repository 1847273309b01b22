/**
 * `meta`: the signing metadata shared by every signed artifact (fleet.resolved, rollout
 * manifests, revocations, bootstrap nonces).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { U32 } from "./Numbers.js"
import { nullWhenAbsent, omittedWhenNull } from "./Optional.js"
import { Timestamp } from "./Timestamp.js"

/**
 * `signedAt` and `ciCommit` are plain serde `Option`s: written as `null` when unset,
 * because the Nix producer writes them that way and the canonical bytes must match.
 * `signatureAlgorithm` is the only key omitted when unset (artifacts stamped before it
 * existed never carry it); absent means `"ed25519"`. It stays a free string, as upstream:
 * verifiers never consult it (the trusted key's algorithm decides), so an unknown value
 * must not make a signed artifact unreadable. A missing `signedAt` is not a parse error;
 * verification refuses it as `NotSigned`.
 *
 * @since 0.1.0
 */
export const ArtifactMeta = Schema.Struct({
  schemaVersion: U32,
  signedAt: nullWhenAbsent(Timestamp),
  ciCommit: nullWhenAbsent(Schema.String),
  signatureAlgorithm: omittedWhenNull(Schema.String)
}).annotations({ identifier: "ArtifactMeta" })
/** @since 0.1.0 */
export type ArtifactMeta = typeof ArtifactMeta.Type
