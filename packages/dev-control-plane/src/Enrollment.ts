/**
 * `POST /v1/enroll` and `POST /v1/agent/renew` (spec §5.3, §5.4), with the real control
 * plane's checks in its order (the first failure wins). The bootstrap-nonces allowlist is
 * the set of nonces this control plane minted; a host's declared key is its `pubkey` in the
 * current `fleet.resolved`, so a host can only be certified for the key its publish named.
 *
 * @since 0.1.0
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { canonicalize, EnrollRequest, EnrollResponse, parseRfc3339, RenewRequest, RenewResponse } from "@nixfleet/proto"
import * as x509 from "@peculiar/x509"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import type { DevControlPlaneError } from "./DevControlPlaneError.js"
import { decodeJsonBody, errorResponse } from "./internal/http.js"
import { fingerprint, rawPublicKey, sameBytes } from "./internal/keys.js"
import type { SigningKey } from "./Signing.js"
import type { ControlPlaneState } from "./State.js"

/**
 * Signs a client certificate with CN `agent-<machineId>.<suffix>` for a public key (SPKI
 * PEM) and returns its PEM.
 *
 * @since 0.1.0
 */
export type Issuer = (machineId: string, publicKeyPem: string) => Effect.Effect<string, DevControlPlaneError>

/**
 * What the two routes need.
 *
 * @since 0.1.0
 */
export interface EnrollmentConfig {
  readonly state: ControlPlaneState
  /** Verifies bootstrap token signatures (`orgRootKey` of the trust file). */
  readonly orgRootKey: SigningKey
  /** `null` without TLS: there is no CA to sign with (500, as a control plane without a CA signer). */
  readonly issue: Issuer | null
}

interface CertificateRequest {
  readonly commonName: string
  readonly publicKeyPem: string
  readonly asymmetricKeyType: string | undefined
  /** The key bytes of the request's SPKI. */
  readonly raw: Uint8Array
}

/** A CSR that parses, is signed by its own key and has a CN; `null` otherwise. */
const parseRequest = (pem: string): Effect.Effect<CertificateRequest | null> =>
  Effect.promise(async () => {
    try {
      const request = new x509.Pkcs10CertificateRequest(pem)
      const commonName = request.subjectName.getField("CN")[0]
      if (commonName === undefined || !(await request.verify(Crypto.webcrypto))) return null
      const key = Crypto.createPublicKey({ key: Buffer.from(request.publicKey.rawData), format: "der", type: "spki" })
      return {
        commonName,
        publicKeyPem: key.export({ format: "pem", type: "spki" }).toString(),
        asymmetricKeyType: key.asymmetricKeyType,
        raw: rawPublicKey(key)
      }
    } catch {
      return null
    }
  })

const isEd25519 = (request: CertificateRequest): boolean =>
  request.asymmetricKeyType === "ed25519" && request.raw.length === 32

const now = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis))

/** The last two checks: a CA to sign with, then the issuance itself. */
const issue = (
  config: EnrollmentConfig,
  request: CertificateRequest,
  schema: typeof EnrollResponse | typeof RenewResponse
) =>
  Effect.gen(function*() {
    if (config.issue === null) return errorResponse(500, "no CA signer configured")
    const certPem = yield* Effect.either(config.issue(request.commonName, request.publicKeyPem))
    if (certPem._tag === "Left") {
      return errorResponse(400, "certificate issuance failed", { detail: certPem.left.message })
    }
    const notAfter = new x509.X509Certificate(certPem.right).notAfter
    const body = yield* Schema.encode(schema)({ certPem: certPem.right, notAfter }).pipe(Effect.orDie)
    return HttpServerResponse.unsafeJson(body)
  })

/**
 * `POST /v1/enroll`: replay (409), allowlist, validity and signature of the token (401),
 * the CSR (400), the CSR against the token (401), a fleet snapshot (503), the host in it
 * (401), an ed25519 key (400) equal to the declared one (401), the nonce recorded (409),
 * then issuance.
 *
 * @since 0.1.0
 */
export const enroll = Effect.fn("DevControlPlane.enroll")(
  function*(config: EnrollmentConfig, request: HttpServerRequest.HttpServerRequest) {
    const { value } = yield* decodeJsonBody(request, EnrollRequest, { requireContentType: true })
    const { claims, signature } = value.token
    const at = yield* now
    if (config.state.isNonceUsed(claims.nonce)) return errorResponse(409, "bootstrap token already used")
    const allowed = config.state.allowedNonce(claims.nonce)
    if (allowed === undefined || allowed.hostname !== claims.hostname) {
      return errorResponse(401, "bootstrap token nonce is not in the allowlist for this host")
    }
    if (allowed.expiresAt <= at) return errorResponse(401, "bootstrap token expired")
    const issuedAt = parseRfc3339(claims.issuedAt)
    const expiresAt = parseRfc3339(claims.expiresAt)
    if (issuedAt === undefined || expiresAt === undefined || at < issuedAt || at >= expiresAt) {
      return errorResponse(401, "bootstrap token expired or not yet valid")
    }
    if (!config.orgRootKey.verify(canonicalize(claims), Buffer.from(signature, "base64"))) {
      return errorResponse(401, "bootstrap token signature does not verify against the org root key")
    }
    const csr = yield* parseRequest(value.csrPem)
    if (csr === null) return errorResponse(400, "invalid CSR")
    if (csr.commonName !== claims.hostname || fingerprint(csr.raw) !== claims.expectedPubkeyFingerprint) {
      return errorResponse(401, "the CSR does not match the bootstrap token")
    }
    if (config.state.currentFleet() === null) return errorResponse(503, "no verified fleet.resolved snapshot")
    const declared = config.state.declaredKey(csr.commonName)
    if (declared === undefined) return errorResponse(401, "host not declared in fleet.resolved")
    if (!isEd25519(csr)) return errorResponse(400, "the CSR key is not an ed25519 key")
    if (declared === null || !sameBytes(declared, csr.raw)) {
      return errorResponse(401, "the CSR key is not the host key declared in fleet.resolved")
    }
    if (!config.state.useNonce(claims.nonce)) return errorResponse(409, "bootstrap token already used")
    yield* Effect.logDebug("host enrolled").pipe(
      Effect.annotateLogs({ hostname: csr.commonName, at: at.toISOString() })
    )
    return yield* issue(config, csr, EnrollResponse)
  }
)

/**
 * `POST /v1/agent/renew` for the host of the client certificate (`machineId`): the CSR
 * (400), an ed25519 key (400), a fleet snapshot (503), the host in it (401), its declared
 * key (401), then issuance. The new certificate's CN comes from the CSR, as upstream.
 *
 * @since 0.1.0
 */
export const renew = Effect.fn("DevControlPlane.renew")(
  function*(config: EnrollmentConfig, request: HttpServerRequest.HttpServerRequest, machineId: string) {
    const { value } = yield* decodeJsonBody(request, RenewRequest, { requireContentType: true })
    const csr = yield* parseRequest(value.csrPem)
    if (csr === null) return errorResponse(400, "invalid CSR")
    if (!isEd25519(csr)) return errorResponse(400, "the CSR key is not an ed25519 key")
    if (config.state.currentFleet() === null) return errorResponse(503, "no verified fleet.resolved snapshot")
    const declared = config.state.declaredKey(machineId)
    if (declared === undefined) return errorResponse(401, "host not declared in fleet.resolved")
    if (declared === null || !sameBytes(declared, csr.raw)) {
      return errorResponse(401, "the CSR key is not the host key declared in fleet.resolved")
    }
    return yield* issue(config, csr, RenewResponse)
  }
)
