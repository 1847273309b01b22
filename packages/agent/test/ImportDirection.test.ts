/**
 * The lint rule that keeps the agent's imports pointing one way (scripts/eslint/layers.mjs),
 * run by ESLint with the repository's own configuration on files placed in the agent's
 * folders: an import against the direction, a development package and a relative path out
 * of the package are errors; imports down the layers and within a folder are not.
 */
import { describe, expect, it } from "@effect/vitest"
import { ESLint } from "eslint"
import * as Path from "node:path"

const REPO = Path.resolve(import.meta.dirname, "../../..")
const eslint = new ESLint({ cwd: REPO })

const problems = async (file: string, code: string) => {
  const [result] = await eslint.lintText(code, { filePath: Path.join(REPO, "packages/agent/src", file) })
  return (result?.messages ?? []).filter((message) => message.ruleId === "layers/import-direction")
    .map((message) => message.message)
}

describe("import direction", () => {
  it("refuses an import up the layers or across peers, naming what the folder may import", async () => {
    const up = await problems("runtime/Example.ts", "import type { StatusReport } from \"../status/StatusReport.js\"\n")
    expect(up).toHaveLength(1)
    expect(up[0]).toContain("runtime may import only from support/, config/, pipeline/, outbox/")
    expect(up[0]).toContain("is in status")
    const peer = await problems("probes/Example.ts", "export * from \"../observability/Metrics.js\"\n")
    expect(peer).toHaveLength(1)
    const lazy = await problems("support/Example.ts", "export const load = () => import(\"../cli/Cli.js\")\n")
    expect(lazy).toHaveLength(1)
  })

  it("refuses the development packages and relative paths out of the package", async () => {
    expect(await problems("cli/Example.ts", "export * from \"@nixfleet/dev-control-plane\"\n")).toHaveLength(1)
    expect(await problems("cli/Example.ts", "export * from \"@nixfleet/dev\"\n")).toHaveLength(1)
    expect(await problems("cli/Example.ts", "export * from \"../../../dev/src/Demo.js\"\n")).toHaveLength(1)
  })

  it("accepts imports down the layers, within a folder and of other packages by name", async () => {
    const code = "import { Reducer } from \"../runtime/Reducer.js\"\n" +
      "import { AgentConfig } from \"../config/AgentConfig.js\"\n" +
      "import { ControlPlaneClient } from \"./ControlPlaneClient.js\"\n" +
      "import { Event } from \"@nixfleet/state-machine\"\n" +
      "export { AgentConfig, ControlPlaneClient, Event, Reducer }\n"
    expect(await problems("controlplane/Example.ts", code)).toStrictEqual([])
  })
})
