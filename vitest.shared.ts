import type { ViteUserConfig } from "vitest/config"

/** What every package's vitest project shares: workspace packages resolve to their TypeScript source. */
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
    include: ["test/**/*.test.ts"]
  }
}
