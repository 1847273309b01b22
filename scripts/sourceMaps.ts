/**
 * Source maps with full detail for our own code only: every mapping into the workspace's
 * sources is kept, and mappings into dependencies (node_modules) only where their source
 * line changes, so a frame in a dependency still names its file and line (the column is
 * that of the line's first mapping). The maps shrink to about a third; a stack trace is
 * formatted from them when one is needed (packages/agent/src/node/stackTraces.ts), and
 * parsing a smaller map is that much quicker. (Dropping the dependencies' mappings instead,
 * with unmapped segments, would not do: Node's SourceMap reads an unmapped segment as the
 * mapping before it.)
 */

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
const DIGIT = new Map([...BASE64].map((char, index) => [char, index]))

/** One segment of a line, absolute: [column] or [column, source, line, sourceColumn]. */
type Segment = readonly [number] | readonly [number, number, number, number]

const decodeLine = (text: string, state: { source: number; line: number; column: number }) => {
  const segments: Array<Segment> = []
  let column = 0
  for (const part of text === "" ? [] : text.split(",")) {
    const fields: Array<number> = []
    let value = 0
    let shift = 0
    for (const char of part) {
      const digit = DIGIT.get(char)
      if (digit === undefined) throw new Error(`source map: ${JSON.stringify(char)} is not base64`)
      value += (digit & 31) << shift
      if (digit & 32) {
        shift += 5
      } else {
        fields.push(value & 1 ? -(value >>> 1) : value >>> 1)
        value = 0
        shift = 0
      }
    }
    column += fields[0] ?? 0
    if (fields.length >= 4) {
      state.source += fields[1] ?? 0
      state.line += fields[2] ?? 0
      state.column += fields[3] ?? 0
      segments.push([column, state.source, state.line, state.column])
    } else {
      segments.push([column])
    }
  }
  return segments
}

const encode = (value: number) => {
  let rest = value < 0 ? (-value << 1) | 1 : value << 1
  let out = ""
  do {
    const digit = rest & 31
    rest >>>= 5
    out += BASE64[rest > 0 ? digit | 32 : digit]
  } while (rest > 0)
  return out
}

interface SourceMapV3 {
  readonly version: 3
  readonly sources: ReadonlyArray<string>
  readonly names?: ReadonlyArray<string>
  readonly mappings: string
  readonly [key: string]: unknown
}

/**
 * `map` with every mapping into the sources `detailed` accepts, one mapping per source
 * line into the others, and no names.
 */
export const reduceSourceMap = (map: SourceMapV3, detailed: (source: string) => boolean): SourceMapV3 => {
  const detail = map.sources.map(detailed)
  const decodeState = { source: 0, line: 0, column: 0 }
  const encodeState = { source: 0, line: 0, column: 0 }
  const lines = map.mappings.split(";").map((text) => {
    let previousColumn = 0
    /** The last segment written on this line, as [source, line]. */
    let written: readonly [number, number] | undefined
    const out: Array<string> = []
    for (const segment of decodeLine(text, decodeState)) {
      if (segment.length === 1) {
        out.push(encode(segment[0] - previousColumn))
        written = undefined
      } else {
        const [column, source, line, sourceColumn] = segment
        const sameLine = written !== undefined && written[0] === source && written[1] === line
        if (sameLine && detail[source] !== true) continue
        out.push(
          encode(column - previousColumn) + encode(source - encodeState.source) +
            encode(line - encodeState.line) + encode(sourceColumn - encodeState.column)
        )
        encodeState.source = source
        encodeState.line = line
        encodeState.column = sourceColumn
        written = [source, line]
      }
      previousColumn = segment[0]
    }
    return out.join(",")
  })
  return { ...map, names: [], mappings: lines.join(";") }
}
