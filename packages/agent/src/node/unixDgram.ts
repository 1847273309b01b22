/**
 * Unix datagram sockets, which Node does not have (`dgram` is UDP only): the `unix-dgram`
 * native module, an optional dependency loaded only when needed, so a host where it did
 * not build still runs the agent (without systemd notifications).
 *
 * @internal
 */
import { createRequire } from "node:module"

/**
 * The part of `unix-dgram`'s socket the agent uses.
 *
 * @internal
 */
export interface UnixDgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback: (error?: Error) => void): void
  bind(path: string): void
  close(): void
  on(event: "message", listener: (buf: Buffer) => void): this
  on(event: "error", listener: (error: Error) => void): this
  once(event: "listening", listener: () => void): this
  once(event: "error", listener: (error: Error) => void): this
}

interface UnixDgramModule {
  createSocket(type: "unix_dgram"): UnixDgramSocket
}

/**
 * A new unbound datagram socket, or the reason there is none.
 *
 * @internal
 */
export const createUnixDgramSocket = (): UnixDgramSocket | Error => {
  try {
    const module = createRequire(import.meta.url)("unix-dgram") as UnixDgramModule
    return module.createSocket("unix_dgram")
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error))
  }
}
