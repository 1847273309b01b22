/**
 * First-boot enrollment and certificate renewal: the bootstrap token file and the bodies
 * of `POST /v1/enroll` and `POST /v1/agent/renew`. All camelCase.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { parseRfc3339, Timestamp } from "./Timestamp.js"

const MIN_ARBITRARY = new Date("1970-01-01T00:00:00Z")
const MAX_ARBITRARY = new Date("2200-01-01T00:00:00Z")

/**
 * An RFC 3339 timestamp kept as the exact text it was read from. The token signature
 * covers the canonical JSON of the claims as the control plane re-serialises them, and
 * `nixfleet mint-token` stamps the claims with `Utc::now()`, sub-millisecond digits
 * included: turning them into a millisecond `Date` and back would change the signed bytes
 * and get the token refused.
 * Compare it with `parseRfc3339`.
 */
const SignedTimestamp = Schema.String.pipe(
  Schema.filter((text) => parseRfc3339(text) !== undefined, {
    message: (issue) => `expected an RFC 3339 timestamp, got ${JSON.stringify(issue.actual)}`
  })
).annotations({
  identifier: "SignedTimestamp",
  arbitrary: () => (fc) =>
    fc.date({ min: MIN_ARBITRARY, max: MAX_ARBITRARY, noInvalidDate: true }).map((date) => date.toISOString())
})

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/** Standard base64 with padding, not empty. */
const Base64 = Schema.String.pipe(
  Schema.filter((text) => text.length > 0 && BASE64.test(text), {
    message: (issue) => `expected standard padded base64, got ${JSON.stringify(issue.actual)}`
  })
).annotations({
  identifier: "Base64",
  arbitrary: () => (fc) =>
    fc.uint8Array({ minLength: 1, maxLength: 96 }).map((bytes) => btoa(String.fromCharCode(...bytes)))
})

/**
 * What a bootstrap token authorises: enrolling `hostname` with the key whose
 * base64(SHA-256(raw public key)) is `expectedPubkeyFingerprint`, between `issuedAt` and
 * `expiresAt`, once (`nonce`, 32 hex characters). The timestamps are kept as their exact
 * text (see above) because the claims are signed.
 *
 * @since 0.1.0
 */
export const BootstrapClaims = Schema.Struct({
  hostname: Schema.String,
  expectedPubkeyFingerprint: Schema.String,
  issuedAt: SignedTimestamp,
  expiresAt: SignedTimestamp,
  nonce: Schema.String
}).annotations({ identifier: "BootstrapClaims" })
/** @since 0.1.0 */
export type BootstrapClaims = typeof BootstrapClaims.Type

/**
 * The token file minted offline and signed by the org root key: `signature` is the
 * base64 ed25519 signature over the JCS form of `claims`. Only `version` 1 exists.
 *
 * @since 0.1.0
 */
export const BootstrapToken = Schema.Struct({
  version: Schema.Literal(1).annotations({
    message: (issue) => ({
      message: `unsupported bootstrap token version: ${JSON.stringify(issue.actual)}`,
      override: true
    })
  }),
  claims: BootstrapClaims,
  signature: Base64
}).annotations({ identifier: "BootstrapToken" })
/** @since 0.1.0 */
export type BootstrapToken = typeof BootstrapToken.Type

/**
 * The body of `POST /v1/enroll`: the token and a PEM PKCS#10 CSR whose subject CN is the
 * bare machine id and whose key is the host's SSH ed25519 key.
 *
 * @since 0.1.0
 */
export const EnrollRequest = Schema.Struct({
  token: BootstrapToken,
  csrPem: Schema.String
}).annotations({ identifier: "EnrollRequest" })
/** @since 0.1.0 */
export type EnrollRequest = typeof EnrollRequest.Type

/**
 * The issued client certificate (PEM) and its expiry.
 *
 * @since 0.1.0
 */
export const EnrollResponse = Schema.Struct({
  certPem: Schema.String,
  notAfter: Timestamp
}).annotations({ identifier: "EnrollResponse" })
/** @since 0.1.0 */
export type EnrollResponse = typeof EnrollResponse.Type

/**
 * The body of `POST /v1/agent/renew`: a CSR built as for enrollment. The new
 * certificate's CN comes from the CSR, so it must carry this host's own machine id.
 *
 * @since 0.1.0
 */
export const RenewRequest = Schema.Struct({
  csrPem: Schema.String
}).annotations({ identifier: "RenewRequest" })
/** @since 0.1.0 */
export type RenewRequest = typeof RenewRequest.Type

/**
 * The renewed certificate (PEM) and its expiry.
 *
 * @since 0.1.0
 */
export const RenewResponse = Schema.Struct({
  certPem: Schema.String,
  notAfter: Timestamp
}).annotations({ identifier: "RenewResponse" })
/** @since 0.1.0 */
export type RenewResponse = typeof RenewResponse.Type
