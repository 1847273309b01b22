import { availableParallelism } from "node:os"
import { defineConfig } from "vitest/config"
import projects from "./vitest.workspace.js"

export default defineConfig({
  test: {
    projects,
    // At least three test files at a time (vitest's default is one fewer than the cores:
    // one, on two): most of the suite waits on timers and on the processes it spawns, so
    // files overlap well even on two cores.
    maxWorkers: Math.max(3, availableParallelism() - 1)
  }
})
