/**
 * The agent confined to a mount namespace of its own (`unshare -m`) whose state directory
 * is a small tmpfs, and shell commands run in that namespace (`nsenter`): the storage-fault
 * matrices fill, free and remount it under the running agent.
 */
import { Effect, type Scope } from "effect"
import { spawnSync } from "node:child_process"
import {
  agentNodeArgs,
  type AgentPaths,
  type ControlPlane,
  type Spawned,
  spawnProgram,
  TEST_MODES
} from "./processes.js"

/** Small enough to fill in milliseconds; large enough for the outbox, the ledger and the status file. */
const TMPFS_SIZE = "4m"

/** Why the agent cannot be confined here (not root, no unshare or nsenter); null when it can. */
export const confinementMissing = ((): string | null => {
  if (process.getuid?.() !== 0) return "not root"
  const probe = spawnSync("unshare", ["-m", "--propagation", "private", "true"], { encoding: "utf8" })
  if (probe.status !== 0) return `unshare -m does not work here (${probe.stderr.trim() || String(probe.error)})`
  if (spawnSync("nsenter", ["--version"]).status !== 0) return "nsenter is missing"
  return null
})()

/**
 * The agent in a mount namespace of its own over a fresh tmpfs at its state directory;
 * `prelude` runs in that namespace before the agent (e.g. filling the file system).
 */
export const startConfined = (
  cp: ControlPlane,
  host: AgentPaths,
  prelude = "",
  env: Readonly<Record<string, string>> = TEST_MODES
): Effect.Effect<Spawned, never, Scope.Scope> =>
  spawnProgram(
    "agent",
    "unshare",
    [
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount -t tmpfs -o size=${TMPFS_SIZE},mode=0700 tmpfs "$STATE_DIR" && ${prelude} exec "$@"`,
      "sh",
      process.execPath,
      ...agentNodeArgs(cp, host)
    ],
    { ...env, STATE_DIR: host.stateDir }
  )

/** Runs a shell command in the agent's mount namespace (where its tmpfs is). */
export const inNamespace = (agent: Spawned, script: string, env: Readonly<Record<string, string>> = {}) =>
  Effect.sync(() => {
    const result = spawnSync("nsenter", ["-t", String(agent.pid), "-m", "--", "sh", "-c", script], {
      encoding: "utf8",
      env: { ...process.env, ...env }
    })
    return { status: result.status, stdout: result.stdout, stderr: result.stderr }
  })

/** Fills the state directory's tmpfs (in a prelude or through nsenter). */
export const FILL = `dd if=/dev/zero of="$STATE_DIR/fill" bs=16k 2>/dev/null; sync;`
export const fill = (agent: Spawned, host: AgentPaths) => inNamespace(agent, FILL, { STATE_DIR: host.stateDir })
export const free = (agent: Spawned, host: AgentPaths) =>
  inNamespace(agent, `rm -f "$STATE_DIR/fill"`, { STATE_DIR: host.stateDir })
