/**
 * A scripted HTTP server on loopback standing in for the control plane's events endpoint:
 * it records every request and answers with whatever the test's script says.
 */
import { Effect } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

export interface RecordedRequest {
  readonly method: string
  readonly url: string
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

export interface Answer {
  readonly status: number
  readonly body?: string | Uint8Array
  readonly headers?: Readonly<Record<string, string>>
}

export interface FakeControlPlane {
  readonly url: string
  readonly requests: () => ReadonlyArray<RecordedRequest>
  /** Replaces the script. */
  readonly answer: (script: (request: RecordedRequest, index: number) => Answer) => void
}

export const fakeControlPlane = (
  script: (request: RecordedRequest, index: number) => Answer = () => ({ status: 204 })
) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Http.Server; readonly fake: FakeControlPlane }>((resume) => {
      const requests: Array<RecordedRequest> = []
      let current = script
      const server = Http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.on("end", () => {
          const request = {
            method: req.method ?? "",
            url: req.url ?? "",
            headers: req.headers,
            body: Buffer.concat(chunks).toString("utf8")
          }
          requests.push(request)
          const answer = current(request, requests.length - 1)
          res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers })
          res.end(
            typeof answer.body === "string" || answer.body === undefined ? answer.body ?? "" : Buffer.from(answer.body)
          )
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          server,
          fake: {
            url: `http://127.0.0.1:${port}`,
            requests: () => [...requests],
            answer: (next) => {
              current = next
            }
          }
        }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ fake }) => fake))
