/**
 * Stack traces of the bundled command line, mapped back to our TypeScript sources when they
 * are formatted, from the source maps next to the bundle's files.
 *
 * Node's own source map support (`--enable-source-maps`, `process.setSourceMapsEnabled`)
 * parses the map of every module as it loads and keeps it for the life of the process:
 * measured on the bundle, +70 ms on `nixfleet-agent --version` and about 9 MiB of heap
 * (80,000 small arrays) held by an idle daemon. Here nothing is read until a stack trace is
 * formatted, which is rare (an error rendered with its stack), and a parsed map is held only
 * weakly, until the next garbage collection.
 *
 * @internal
 */
import * as Fs from "node:fs"
import { SourceMap, type SourceMapPayload } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"

interface Mapped {
  readonly source: string
  readonly line: number
  readonly column: number
}

/**
 * A stack frame's text with its location in the bundle replaced by the location in our
 * sources; unchanged when the frame is not in the bundle or its map has nothing there.
 *
 * @internal
 */
export const mapFrame = (
  frame: NodeJS.CallSite,
  lookup: (file: string, line: number, column: number) => Mapped | undefined
): string => {
  const text = frame.toString()
  const file = frame.getFileName()
  const line = frame.getLineNumber()
  const column = frame.getColumnNumber()
  if (file === null || line === null || column === null) return text
  const mapped = lookup(file, line, column)
  return mapped === undefined
    ? text
    : text.replace(`${file}:${line}:${column}`, `${mapped.source}:${mapped.line}:${mapped.column}`)
}

/** V8's first line of a stack trace: `Name: message`. */
const header = (error: Error): string => {
  try {
    return Error.prototype.toString.call(error)
  } catch {
    return "<error>"
  }
}

/**
 * Formats stack traces with the frames of the bundle in `bundleDir` (a directory URL or
 * path) mapped to our sources, through `Error.prepareStackTrace`. Any failure to read or
 * use a map leaves the frame as V8 wrote it.
 *
 * @internal
 */
export const mapStackTraces = (bundleDir: string | URL): void => {
  const root = pathToFileURL(typeof bundleDir === "string" ? bundleDir : fileURLToPath(bundleDir)).href
  const prefix = root.endsWith("/") ? root : `${root}/`
  // null: the file has no usable map; a WeakRef: parsed, until the collector wants it back.
  const maps = new Map<string, WeakRef<SourceMap> | null>()

  const sourceMap = (url: string): SourceMap | undefined => {
    const cached = maps.get(url)
    if (cached === null) return undefined
    const held = cached?.deref()
    if (held !== undefined) return held
    try {
      const payload = JSON.parse(Fs.readFileSync(fileURLToPath(`${url}.map`), "utf8")) as SourceMapPayload
      const parsed = new SourceMap(payload)
      maps.set(url, new WeakRef(parsed))
      return parsed
    } catch {
      maps.set(url, null)
      return undefined
    }
  }

  const lookup = (file: string, line: number, column: number): Mapped | undefined => {
    const url = file.startsWith("file:") ? file : pathToFileURL(file).href
    if (!url.startsWith(prefix)) return undefined
    const entry = sourceMap(url)?.findEntry(line - 1, column - 1)
    if (entry === undefined || !("originalSource" in entry)) return undefined
    return {
      source: fileURLToPath(new URL(entry.originalSource, url)),
      line: entry.originalLine + 1,
      column: entry.originalColumn + 1
    }
  }

  Error.prepareStackTrace = (error, frames) =>
    header(error) + frames.map((frame) => {
      try {
        return `\n    at ${mapFrame(frame, lookup)}`
      } catch {
        return `\n    at ${String(frame)}`
      }
    }).join("")
}
