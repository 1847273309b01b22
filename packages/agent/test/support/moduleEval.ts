/**
 * The modules under nixpkgs' module system (scripts/nix/moduleEval.ts), and `describe` for
 * suites that need something the machine may lack.
 */
import { describe, it } from "@effect/vitest"
import { isCi, nixSuiteMode } from "@nixfleet/dev/NixFixtures"

export * from "../../../../scripts/nix/moduleEval.js"

/**
 * `describe` for a suite that needs something the machine may lack: run, skipped with one
 * line saying what is missing, or, with `CI` set, one failing test saying it.
 */
export const describeNeeding = (missing: string | undefined, name: string, body: () => void): void => {
  switch (nixSuiteMode(missing === undefined, isCi())) {
    case "run":
      describe(name, body)
      return
    case "skip":
      describe.skip(`${name} [skipped: ${missing}; with CI set this fails instead]`, body)
      return
    case "fail":
      describe(`${name} [${missing}, and CI is set]`, () => {
        it("has what it needs", () => {
          throw new Error(`${name}: ${missing} (CI is set, so this fails instead of being skipped)`)
        })
      })
      return
  }
}
