/**
 * The names of the files the agent keeps in its state directory, in a module of their own
 * so that `status` finds them without loading the runtime that writes them.
 *
 * @internal
 */
import * as Path from "node:path"

/**
 * The file the running agent keeps its last report in.
 *
 * @internal
 */
export const statusFile = (stateDir: string) => Path.join(stateDir, "status.json")

/**
 * The running agent's status socket.
 *
 * @internal
 */
export const statusSocket = (stateDir: string) => Path.join(stateDir, "agent.sock")

/**
 * The outbox's database file under the state directory.
 *
 * @internal
 */
export const DATABASE_FILE = "outbox.sqlite"
