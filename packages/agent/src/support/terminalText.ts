/**
 * Text from outside (the control plane's error bodies, closure names, rollout ids, probe
 * output, setting values) made safe to print on a terminal: every control character is
 * shown as an escape (`\x1b`, `\x9b`, `\u202e`) rather than sent, so a hostile string
 * cannot set the window title, clear the screen, write the clipboard (OSC 52), forge lines
 * or reorder what is shown (bidi overrides).
 *
 * @internal
 */

/** C0 controls (tab and newline included: a value must stay on its line), DEL, C1, and the bidi controls. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

const escape = (char: string): string => {
  const code = char.charCodeAt(0)
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`
}

/**
 * `text` with every control character replaced by its escape.
 *
 * @internal
 */
export const printable = (text: string): string => text.replace(UNSAFE, escape)

/**
 * A value with every string in it made {@link printable} (dates and numbers kept).
 *
 * @internal
 */
export const printableDeep = <A>(value: A): A => {
  if (typeof value === "string") return printable(value) as A
  if (Array.isArray(value)) return value.map(printableDeep) as A
  if (value instanceof Date || value === null || typeof value !== "object") return value
  return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, printableDeep(inner)])) as A
}

/**
 * JSON text with the characters JSON leaves raw but a terminal may act on (DEL, the C1
 * controls, bidi controls) written as `\u` escapes: the same value, nothing for a terminal
 * to execute. (JSON already escapes C0.)
 *
 * @internal
 */
export const printableJson = (json: string): string =>
  json.replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`
  )
