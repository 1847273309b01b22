/**
 * A hostile control plane, as a process of its own: it stands between the agent and a
 * real (dev) control plane, forwards every request and the genuine signed artifacts, and
 * forges only the unsigned answers. `POST /_hostile/snapshots` with a JSON array of
 * snapshots (camelCase, as the wire has them) makes every heartbeat answer carry them, in
 * place of the real control plane's snapshots of the same rollouts.
 *
 *   node --import tsx hostileProxy.ts <upstream url>
 *
 * Prints `{"url": "..."}` on stdout once it listens on 127.0.0.1.
 */
import * as Http from "node:http"

const upstream = process.argv[2]
if (upstream === undefined) throw new Error("usage: hostileProxy.ts <upstream url>")

let forged: ReadonlyArray<{ readonly rolloutId: string }> = []

const readBody = (request: Http.IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(Buffer.concat(chunks)))
    request.on("error", reject)
  })

/** The real answer's snapshots, those of a forged rollout replaced by the forgery. */
const forgeHeartbeat = (text: string) => {
  const answer = JSON.parse(text === "" ? "{}" : text) as { bootstrap_rollouts?: Array<{ rolloutId: string }> }
  const forgedIds = new Set(forged.map((snapshot) => snapshot.rolloutId))
  const genuine = (answer.bootstrap_rollouts ?? []).filter((snapshot) => !forgedIds.has(snapshot.rolloutId))
  return JSON.stringify({ ...answer, bootstrap_rollouts: [...genuine, ...forged] })
}

const server = Http.createServer((request, response) => {
  void (async () => {
    const body = await readBody(request)
    if (request.url === "/_hostile/snapshots" && request.method === "POST") {
      forged = JSON.parse(body.toString("utf8")) as typeof forged
      response.writeHead(204).end()
      return
    }
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(request.headers)) {
      if (typeof value === "string" && name !== "host" && name !== "content-length") headers[name] = value
    }
    const answer = await fetch(`${upstream}${request.url ?? "/"}`, {
      method: request.method ?? "GET",
      headers,
      ...(body.length > 0 ? { body } : {})
    })
    let payload = Buffer.from(await answer.arrayBuffer())
    if (request.url === "/v1/agent/heartbeat" && answer.ok) payload = Buffer.from(forgeHeartbeat(payload.toString()))
    const out: Record<string, string> = {}
    answer.headers.forEach((value, name) => {
      if (name !== "content-length" && name !== "transfer-encoding" && name !== "content-encoding") out[name] = value
    })
    response.writeHead(answer.status, out).end(payload)
  })().catch((error: unknown) => {
    response.writeHead(502).end(String(error))
  })
})

server.listen(0, "127.0.0.1", () => {
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no address")
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${address.port}` })}\n`)
})
