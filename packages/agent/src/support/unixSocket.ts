/**
 * Unix stream sockets at a path: how long the path may be, and whether something answers
 * there.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Net from "node:net"

/**
 * The longest socket path in bytes: `sun_path` holds 108 with its terminating NUL.
 *
 * @internal
 */
export const MAX_SOCKET_PATH = 107

/**
 * Whether something accepts connections on `path` (a socket left by a killed process does
 * not). The connection is closed at once.
 *
 * @internal
 */
export const socketAnswers = (path: string): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const socket = Net.connect({ path })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
    return Effect.sync(() => socket.destroy())
  })
