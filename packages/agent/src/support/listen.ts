/**
 * `--metrics-listen`'s syntax, in a module of its own so that the command line checks it
 * without loading the metrics exporter.
 *
 * @internal
 */

/**
 * Where to listen: `port`, `host:port` or `[ipv6]:port`; a bare port is loopback.
 *
 * @internal
 */
export const parseListen = (value: string): { readonly host: string; readonly port: number } | undefined => {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(value.trim())
  if (match === null) return undefined
  const port = Number(match[3])
  if (port < 1 || port > 65535) return undefined
  return { host: match[1] ?? match[2] ?? "127.0.0.1", port }
}
