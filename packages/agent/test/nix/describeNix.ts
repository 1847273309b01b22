/**
 * `describe` for suites that need real Nix (the fixtures themselves stay free of the test
 * runner, so that benchmarks can use them).
 */
import { describe, it } from "@effect/vitest"
import { isCi, NIX_MISSING, nixAvailable, nixSuiteMode } from "@nixfleet/dev/NixFixtures"
import { Effect } from "effect"

/**
 * Without Nix the suite is skipped, its title saying why, or, when `CI` is set, replaced by
 * a failing test saying why.
 */
export const describeNix = (name: string, body: () => void): void => {
  switch (nixSuiteMode(Effect.runSync(nixAvailable), isCi())) {
    case "run":
      describe(name, body)
      return
    case "skip":
      describe.skip(`${name} [skipped: ${NIX_MISSING}; with CI set this fails instead]`, body)
      return
    case "fail":
      describe(`${name} [${NIX_MISSING}, and CI is set]`, () => {
        it("needs Nix", () => {
          throw new Error(
            `${name}: ${NIX_MISSING} (PATH=${process.env["PATH"] ?? ""}). CI is set, so this suite fails instead of ` +
              "being skipped: install Nix (nix-store, nix-build, nix-env, nix) on the runner."
          )
        })
      })
      return
  }
}
