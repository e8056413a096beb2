/**
 * Server-Sent Events framing (WHATWG HTML, "Parsing an event stream").
 *
 * Security contract: nothing that reaches a client can forge a field. A parser
 * splits lines on CR, LF and CRLF alike, so data is split on all three and each
 * line gets its own `data:` prefix; event names and ids are checked for CR, LF
 * and NUL before they are framed, never escaped after.
 */
import { CONTROL_EVENT_PREFIX } from './protocol.js'

const LINE_BREAK = /\r\n|\r|\n/

/** True when `value` can be a field value: no CR, no LF, no NUL. */
export function isSafeFieldValue (value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x0a || c === 0x0d || c === 0x00) return false
  }
  return true
}

/**
 * Event names a producer may use: 1 to 128 characters, no control characters
 * (C0, DEL) at all. Names under `gateway.` are reserved for control events.
 */
export { CONTROL_EVENT_PREFIX }
export const MAX_EVENT_NAME_LENGTH = 128

export function isValidEventName (name: string): boolean {
  if (name.length === 0 || name.length > MAX_EVENT_NAME_LENGTH) return false
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return false
  }
  return !name.startsWith(CONTROL_EVENT_PREFIX)
}

/**
 * The part of an event that every session shares: optional `event:` line and
 * the `data:` lines. Ends with LF but not with the blank line: the per-session
 * `id:` line and the terminating blank line follow (see {@link formatIdLine}).
 * The event name must already be validated.
 */
export function formatEventBody (data: string, event?: string): Buffer {
  return Buffer.from(formatEventText(data, event), 'utf8')
}

/** {@link formatEventBody} as a string, for callers that add more before encoding once. */
export function formatEventText (data: string, event?: string): string {
  const text = event === undefined ? '' : `event: ${event}\n`
  // Most payloads (JSON) are one line: no split, no array.
  if (data.indexOf('\n') === -1 && data.indexOf('\r') === -1) return `${text}data: ${data}\n`
  let out = text
  const lines = data.split(LINE_BREAK)
  for (let i = 0; i < lines.length; i++) out += `data: ${lines[i]}\n`
  return out
}

/** Terminates an event: its `id:` line then the blank line that dispatches it. */
export function formatIdLine (id: string): string {
  return `id: ${id}\n\n`
}

/** A complete event with no id (control events that must not move the cursor). */
export function formatEvent (data: string, event?: string, id?: string): Buffer {
  return Buffer.from(formatEventText(data, event) + (id === undefined ? '\n' : formatIdLine(id)), 'utf8')
}

/** `retry:` line: how long EventSource waits before reconnecting, in ms. */
export function formatRetry (ms: number): string {
  return `retry: ${Math.max(0, Math.floor(ms))}\n\n`
}

/** A comment line: ignored by parsers, keeps proxies from closing idle streams. */
export const HEARTBEAT = ':\n\n'
