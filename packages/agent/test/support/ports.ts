/**
 * Loopback ports for tests.
 */
import { Effect } from "effect"
import * as Net from "node:net"

/** A loopback port nothing listens on: bound, read and released (free until someone takes it). */
export const unusedPort = Effect.async<number>((resume) => {
  const server = Net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})
