/**
 * The evidence probe: a read-only consumer of the compliance collector's signed evidence
 * file. The collector runs on its own timer; this probe never triggers it.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import {
  canonicalizeTextEither,
  type EvidenceControl,
  EvidenceFile,
  type ProbeMode,
  type ProbeSubResult,
  verifyEd25519
} from "@nixfleet/proto"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Path from "node:path"
import { openSshEd25519PublicKey } from "../support/sshKey.js"
import type { ControlModeDeclaration, ProbeDeclaration } from "./HealthChecks.js"
import type { ProbeOutcome } from "./ProbeOutcome.js"
import { describeParseError, failed, passed } from "./reason.js"

/** The evidence format this agent reads. */
const SUPPORTED_SCHEMA_VERSION = 1

const describe = (error: unknown): string => error instanceof Error ? error.message : String(error)

/**
 * `path` with its extension replaced by `json.sig` (Rust's `with_extension`):
 * `evidence.json` → `evidence.json.sig`, `evidence` → `evidence.json.sig`.
 */
const signaturePath = (path: string): string => {
  const { dir, name } = Path.parse(path)
  return Path.format({ dir, name: `${name}.json.sig` })
}

/** Standard base64 only: a lenient decoder would skip junk and check a different signature. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

const decodeEvidence = Schema.decodeUnknownEither(EvidenceFile)

/** How the probe selects controls: a whole framework, or an explicit list. */
type Selection =
  | { readonly _tag: "Framework"; readonly framework: string }
  | { readonly _tag: "Custom" }

/**
 * Step 6, one control: its effective mode and override reason, then its sub-results.
 * Framework mode: `controlOverrides[id]` (mode and reason) else the probe's mode (no
 * reason); one sub-result per article of that framework, one without article if the list
 * is empty, none if the control does not cover it. Custom mode: `controls[id]` (mode and
 * reason, possibly "") else the control is not selected; one sub-result per (framework,
 * article) of the control, or a single `custom` one if it names no framework.
 */
const subResultsOf = (
  declaration: ProbeDeclaration,
  selection: Selection,
  control: EvidenceControl
): ReadonlyArray<ProbeSubResult> => {
  const declarations = selection._tag === "Framework" ? declaration.controlOverrides : declaration.controls
  // Own keys only: a control id such as "constructor" must not find a prototype member.
  const declared: ControlModeDeclaration | undefined = Object.hasOwn(declarations, control.controlId)
    ? declarations[control.controlId]
    : undefined
  const effectiveMode: ProbeMode = declared?.mode ?? (selection._tag === "Framework" ? declaration.mode : "disabled")
  if (effectiveMode === "disabled") return []
  const overrideReason = declared?.reason ?? null
  const status = control.passed ? "pass" as const : "fail" as const
  const row = (framework: string, article: string | null): ProbeSubResult => ({
    controlId: control.controlId,
    status,
    framework,
    article,
    effectiveMode,
    overrideReason
  })
  const rows = (framework: string, articles: ReadonlyArray<string>) =>
    articles.length === 0 ? [row(framework, null)] : articles.map((article) => row(framework, article))
  if (selection._tag === "Framework") {
    const articles = Object.hasOwn(control.frameworkArticles, selection.framework)
      ? control.frameworkArticles[selection.framework]
      : undefined
    return articles === undefined ? [] : rows(selection.framework, articles)
  }
  const frameworks = Object.entries(control.frameworkArticles)
  return frameworks.length === 0
    ? [row("custom", null)]
    : frameworks.flatMap(([framework, articles]) => rows(framework, articles))
}

/**
 * Steps 1–8 of the evidence algorithm (agent-runtime §7.3), every failure a reason. The
 * host key is `<sshHostKeyFile>.pub`, `sshHostKeyFile` being the agent's
 * `--ssh-host-key-file` (upstream only read the environment variable).
 *
 * @since 0.1.0
 */
export const runEvidence: (
  declaration: ProbeDeclaration,
  sshHostKeyFile: string
) => Effect.Effect<ProbeOutcome, never, FileSystem.FileSystem> = Effect.fn("probe.evidence")(
  function*(declaration: ProbeDeclaration, sshHostKeyFile: string) {
    yield* Effect.annotateCurrentSpan("evidencePath", declaration.evidencePath)
    // 1. Exactly one selection.
    const hasControls = Object.keys(declaration.controls).length > 0
    if (declaration.framework === null && !hasControls) {
      return yield* Effect.fail("evidence probe: neither framework nor controls declared")
    }
    if (declaration.framework !== null && hasControls) {
      return yield* Effect.fail("evidence probe: framework and controls both set (XOR violation)")
    }
    const selection: Selection = declaration.framework !== null
      ? { _tag: "Framework", framework: declaration.framework }
      : { _tag: "Custom" }

    // 2. The evidence file and its detached signature (base64 text of 64 bytes).
    const fs = yield* FileSystem.FileSystem
    const read = (path: string, label = "read") =>
      fs.readFileString(path).pipe(Effect.mapError((error) => `evidence probe: ${label} ${path}: ${error.message}`))
    const text = yield* read(declaration.evidencePath)
    const sigPath = signaturePath(declaration.evidencePath)
    const sigText = (yield* read(sigPath)).trim()
    if (!BASE64.test(sigText)) return yield* Effect.fail(`evidence probe: ${sigPath}: signature is not base64`)
    const signature = Buffer.from(sigText, "base64")
    if (signature.length !== 64) {
      return yield* Effect.fail(`evidence probe: sig length ${signature.length} != 64`)
    }

    // 3. The host's public key, from the OpenSSH `.pub` line next to the private key.
    const pubPath = `${sshHostKeyFile}.pub`
    const pubLine = yield* read(pubPath, "read host pubkey")
    const publicKey = yield* Effect.try({
      try: () => openSshEd25519PublicKey(pubLine),
      catch: (error) => `evidence probe: host pubkey ${pubPath}: ${describe(error)}`
    })

    // 4. LOADBEARING: the collector signs the JCS form while the file on disk is
    // pretty-printed (jq); the signature only ever matches the re-canonicalised text.
    const canonical = canonicalizeTextEither(text)
    if (Either.isLeft(canonical)) return yield* Effect.fail(`evidence probe: parse: ${canonical.left.reason}`)
    if (!verifyEd25519(publicKey.toString("base64"), canonical.right, signature)) {
      return yield* Effect.fail("evidence probe: signature verify failed")
    }

    // 5. What is read is the canonical text, exactly the signed bytes (so maps come in
    // key order). The version is checked before the rest of the shape, so that a newer
    // collector's file gets the upgrade hint rather than a decoding error.
    const json: unknown = JSON.parse(canonical.right)
    const version = typeof json === "object" && json !== null && "schemaVersion" in json ? json.schemaVersion : null
    if (typeof version === "number" && version !== SUPPORTED_SCHEMA_VERSION) {
      return yield* Effect.fail(
        `evidence probe: schemaVersion ${version} unsupported (agent expects ${SUPPORTED_SCHEMA_VERSION}); ` +
          "upgrade nixfleet-compliance"
      )
    }
    const evidence = decodeEvidence(json)
    if (Either.isLeft(evidence)) {
      return yield* Effect.fail(`evidence probe: parse: ${describeParseError(evidence.left)}`)
    }

    // 6. Sub-results; disabled controls are dropped.
    const subResults = evidence.right.controls.flatMap((control) => subResultsOf(declaration, selection, control))

    // 7. Nothing matched: the probe checks nothing, which is a failure.
    if (subResults.length === 0) {
      return yield* Effect.fail(
        selection._tag === "Framework"
          ? `evidence probe: no controls match framework '${selection.framework}'`
          : "evidence probe: no controls matched the explicit selection"
      )
    }

    // 8. Only enforce-mode sub-results decide; observe failures stay visible.
    const enforcedPass = subResults.every((sub) => sub.effectiveMode !== "enforce" || sub.status === "pass")
    if (enforcedPass) return { ...passed, subResults }
    const descriptor = selection._tag === "Framework" ? selection.framework : "custom-controls"
    return failed(`evidence probe: ${descriptor}: at least one enforce-mode control failed`, subResults)
  },
  Effect.catchAll((reason: string) => Effect.succeed(failed(reason)))
)
