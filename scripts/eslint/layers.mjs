/**
 * The agent's folders and the one direction its imports point (issue 20): a file may import
 * from its own folder and from the folders of a lower layer, never from its own layer's other
 * folders or from a higher layer. Each folder's README.md says what it owns; this table is
 * the rule, and `npm run lint` fails on an import against it.
 *
 * Also refused in the agent's sources: the dev tools and the dev control plane (development
 * packages, absent from a production install) and relative paths that leave the package.
 */
import * as Path from "node:path"

/** Lowest first; folders in one row are peers and do not import each other. */
export const LAYERS = [
  ["support"],
  ["config"],
  ["pipeline", "outbox"],
  ["runtime"],
  ["controlplane"],
  ["identity", "probes", "status", "observability"],
  ["AgentRuntime.ts"],
  ["NixfleetAgent.ts"],
  ["node"],
  ["cli"],
  ["index.ts", "bin.ts"]
]

const RANK = new Map(LAYERS.flatMap((row, rank) => row.map((folder) => [folder, rank])))
const DEV_PACKAGES = ["@nixfleet/dev", "@nixfleet/dev-control-plane"]
const SOURCE_ROOT = Path.join("packages", "agent", "src")

/** The folder (or root file) a path under the agent's `src` belongs to, or null outside it. */
const placeOf = (root, file) => {
  const relative = Path.relative(root, file)
  if (relative.startsWith("..") || Path.isAbsolute(relative)) return null
  return relative.split(Path.sep)[0]
}

const below = (rank) =>
  LAYERS.slice(0, rank).flat().map((folder) => folder.endsWith(".ts") ? folder : `${folder}/`).join(", ") ||
  "nothing outside itself"

/** @type {import("eslint").Rule.RuleModule} */
const importDirection = {
  meta: {
    type: "problem",
    docs: { description: "imports in packages/agent/src point down the layers of scripts/eslint/layers.mjs" },
    schema: []
  },
  create(context) {
    const file = context.filename
    const index = file.lastIndexOf(`${Path.sep}${SOURCE_ROOT}${Path.sep}`)
    if (index < 0) return {}
    const root = file.slice(0, index + SOURCE_ROOT.length + 1)
    const from = placeOf(root, file)
    const fromRank = RANK.get(from)
    const check = (node, specifier) => {
      if (typeof specifier !== "string") return
      if (DEV_PACKAGES.some((name) => specifier === name || specifier.startsWith(`${name}/`))) {
        context.report({ node, message: `${specifier} is a development package: the agent must not import it` })
        return
      }
      if (!specifier.startsWith(".")) return
      const to = placeOf(root, Path.resolve(Path.dirname(file), specifier).replace(/\.js$/, ".ts"))
      if (to === null) {
        context.report({ node, message: `${specifier} leaves the package: import other packages by name` })
        return
      }
      if (to === from || fromRank === undefined) return
      const toRank = RANK.get(to)
      if (toRank === undefined || toRank >= fromRank) {
        context.report({
          node,
          message: `${from} may import only from ${below(fromRank)} (see scripts/eslint/layers.mjs); ` +
            `${specifier} is in ${to}`
        })
      }
    }
    const source = (node) => node.source && node.source.type === "Literal" ? node.source.value : undefined
    return {
      ImportDeclaration: (node) => check(node, source(node)),
      ExportNamedDeclaration: (node) => check(node, source(node)),
      ExportAllDeclaration: (node) => check(node, source(node)),
      ImportExpression: (node) => check(node, source(node))
    }
  }
}

export const layersPlugin = { rules: { "import-direction": importDirection } }
