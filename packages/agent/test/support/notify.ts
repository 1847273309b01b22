/**
 * A stand-in for systemd's notification socket.
 */
import { Effect } from "effect"
import { createUnixDgramSocket } from "../../src/node/unixDgram.js"

/** One datagram: when it arrived and its lines. */
export interface Received {
  readonly at: number
  readonly lines: ReadonlyArray<string>
}

/** A datagram socket bound at `path`, collecting what arrives; closed with the scope. */
export const notifySocket = (path: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const socket = createUnixDgramSocket()
      if (socket instanceof Error) throw socket
      const received: Array<Received> = []
      socket.on("message", (buf) => received.push({ at: Date.now(), lines: buf.toString("utf8").split("\n") }))
      socket.bind(path)
      return { socket, received }
    }),
    ({ socket }) => Effect.sync(() => socket.close())
  )
