import { fileURLToPath } from "node:url"
import type { ViteUserConfig } from "vitest/config"

/**
 * What every package's vitest project shares: workspace packages resolve to their TypeScript
 * source, and the build the process tests spawn (the CLI's bundle, the dev control plane's)
 * is brought up to date before the first test (scripts/testBuild.ts).
 */
export const shared: ViteUserConfig = {
  resolve: {
    conditions: ["@nixfleet/source"]
  },
  ssr: {
    resolve: {
      conditions: ["@nixfleet/source"]
    }
  },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: [fileURLToPath(new URL("./scripts/testBuild.ts", import.meta.url))]
  }
}
