/**
 * The node flags and environment of the agent's bin script, as its shebang sets them
 * (`#!/usr/bin/env -S NAME=value … node --flag …`); nix/node-flags.nix reads the same line
 * for the flake's wrapper.
 */
export interface ShebangSettings {
  readonly env: Readonly<Record<string, string>>
  readonly nodeFlags: ReadonlyArray<string>
}

/** The settings of the script whose text is `text`. */
export const shebangSettings = (text: string): ShebangSettings => {
  const words = (text.split("\n")[0] ?? "").replace(/^#!\S*env\s+-S\s+/, "").split(/\s+/).filter((w) => w !== "")
  const node = words.indexOf("node")
  const env = Object.fromEntries(
    words.slice(0, Math.max(node, 0)).flatMap((word) => {
      const eq = word.indexOf("=")
      return eq > 0 ? [[word.slice(0, eq), word.slice(eq + 1)] as const] : []
    })
  )
  return { env, nodeFlags: node < 0 ? [] : words.slice(node + 1) }
}
