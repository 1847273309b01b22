/**
 * The dev tools use the agent as any embedder does: through `@nixfleet/agent`'s public root,
 * never a path into its sources (whose internals may change under them), and no relative
 * import leaves this package.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"

const SRC = Path.resolve(__dirname, "../src")

/** Every module specifier of `file`'s import and export declarations and dynamic imports. */
const specifiers = (file: string) =>
  [...Fs.readFileSync(file, "utf8").matchAll(/(?:\bfrom|\bimport)\s*\(?\s*"([^"]+)"/g)].map((match) => match[1] ?? "")

describe("the dev tools' imports", () => {
  const files = Fs.readdirSync(SRC, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => Path.join(SRC, file))

  it("name the agent by its root only, and stay inside the package otherwise", () => {
    expect(files.length).toBeGreaterThan(10)
    const refused = files.flatMap((file) =>
      specifiers(file)
        .filter((specifier) =>
          specifier.startsWith(".")
            ? Path.relative(SRC, Path.resolve(Path.dirname(file), specifier)).startsWith("..")
            : specifier.startsWith("@nixfleet/agent/")
        )
        .map((specifier) => `${Path.relative(SRC, file)}: ${specifier}`)
    )
    expect(refused).toStrictEqual([])
    // The check sees the agent's root where it is imported.
    expect(files.some((file) => specifiers(file).includes("@nixfleet/agent"))).toBe(true)
  })
})
