/**
 * The SSE `id:` of a multi-channel connection: a versioned cursor holding the
 * position (a stream entry id) of every channel, decodable by any replica.
 *
 * Version 1, in characters safe in a header and a URL (`0-9 a-z . _`):
 *
 *     1 ( "." <hash:6> <ms:base36> [ "_" <seq:base36> ] )+
 *
 * `hash` is the channel name's FNV-1a hash in 6 base-36 digits, so a cursor
 * never repeats channel names (they may be long or private) and a client that
 * changes its topic list keeps the positions of the channels it still reads.
 * A connection with one channel uses the bare entry id (`1700000000000-0`).
 */
import { fnv1a } from './hash.js'
import { isStreamId, type StreamId } from './stream-id.js'

export const CURSOR_VERSION = '1'
const HASH_WIDTH = 6
const HASH_SPACE = 36 ** HASH_WIDTH
const MAX_CURSOR_LENGTH = 4096
const SEGMENT = /^([0-9a-z]{6})([0-9a-z]{1,13})(?:_([0-9a-z]{1,13}))?$/

/** 6 base-36 digits of the FNV-1a hash of a channel name. */
export function channelHash (name: string): string {
  return (fnv1a(name) % HASH_SPACE).toString(36).padStart(HASH_WIDTH, '0')
}

function decimalToBase36 (decimal: string): string {
  return decimal.length <= 15 ? Number(decimal).toString(36) : BigInt(decimal).toString(36)
}

function base36ToDecimal (digits: string): string | undefined {
  if (digits.length > 1 && digits[0] === '0') return undefined
  if (digits.length <= 10) return String(parseInt(digits, 36))
  let n = 0n
  for (const ch of digits) n = n * 36n + BigInt(parseInt(ch, 36))
  return n < 2n ** 64n ? n.toString() : undefined
}

/** One channel's part of a cursor: `.` + hash + position. */
export function encodeSegment (hash: string, id: StreamId): string {
  const dash = id.indexOf('-')
  const ms = decimalToBase36(id.slice(0, dash))
  const seq = id.slice(dash + 1)
  return seq === '0' ? `.${hash}${ms}` : `.${hash}${ms}_${decimalToBase36(seq)}`
}

/** A cursor from the segments of every channel (see {@link encodeSegment}). */
export function encodeCursor (segments: readonly string[]): string {
  return CURSOR_VERSION + segments.join('')
}

export type DecodedCursor =
  | { readonly kind: 'bare', readonly id: StreamId }
  | { readonly kind: 'channels', readonly positions: ReadonlyMap<string, StreamId> }

/**
 * Decodes a cursor sent back as `Last-Event-ID`. Returns `undefined` for
 * anything that is not a cursor this gateway wrote (never throws).
 */
export function decodeCursor (text: string): DecodedCursor | undefined {
  if (text.length === 0 || text.length > MAX_CURSOR_LENGTH) return undefined
  if (isStreamId(text)) return { kind: 'bare', id: text }
  if (text[0] !== CURSOR_VERSION || text[1] !== '.') return undefined
  const positions = new Map<string, StreamId>()
  const parts = text.slice(2).split('.')
  for (const part of parts) {
    const m = SEGMENT.exec(part)
    if (m === null) return undefined
    const ms = base36ToDecimal(m[2] as string)
    const seq = m[3] === undefined ? '0' : base36ToDecimal(m[3])
    if (ms === undefined || seq === undefined) return undefined
    positions.set(m[1] as string, `${ms}-${seq}`)
  }
  return { kind: 'channels', positions }
}
