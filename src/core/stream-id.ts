/**
 * Redis stream entry ids (`<ms>-<seq>`) as plain strings, compared
 * numerically. Producers use `*` ids, so both parts fit in a double exactly
 * (ms is a Unix time, seq a per-ms counter); longer parts are compared by
 * length first, then as text, which is exact for unsigned decimals.
 */
export type StreamId = string

export const ZERO_ID: StreamId = '0-0'
const ID = /^(?:0|[1-9]\d{0,19})-(?:0|[1-9]\d{0,19})$/
const U64_MAX = '18446744073709551615'

/** Both parts are unsigned 64-bit: Redis refuses anything larger in every command. */
function fitsU64 (digits: string): boolean {
  return digits.length < U64_MAX.length || digits <= U64_MAX
}

export function isStreamId (value: string): boolean {
  if (!ID.test(value)) return false
  const dash = value.indexOf('-')
  return fitsU64(value.slice(0, dash)) && fitsU64(value.slice(dash + 1))
}

/**
 * Compares `a[aFrom, aTo)` with `b[bFrom, bTo)` as unsigned decimals with no
 * leading zeros: the longer is larger, else the first differing digit decides.
 * No slices: this runs several times per delivered event.
 */
function compareDecimal (a: string, aFrom: number, aTo: number, b: string, bFrom: number, bTo: number): number {
  const la = aTo - aFrom
  const lb = bTo - bFrom
  if (la !== lb) return la < lb ? -1 : 1
  for (let i = 0; i < la; i++) {
    const x = a.charCodeAt(aFrom + i)
    const y = b.charCodeAt(bFrom + i)
    if (x !== y) return x < y ? -1 : 1
  }
  return 0
}

/** Negative, zero or positive as `a` sorts before, with or after `b`. */
export function compareIds (a: StreamId, b: StreamId): number {
  if (a === b) return 0
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const c = compareDecimal(a, 0, da, b, 0, db)
  return c !== 0 ? c : compareDecimal(a, da + 1, a.length, b, db + 1, b.length)
}

/** Milliseconds part of an id (the time Redis stamped it). */
export function idMs (id: StreamId): number {
  return Number(id.slice(0, id.indexOf('-')))
}

const MAX_SEQ = '18446744073709551615'

/**
 * The largest id sorting before `id`: an exclusive cursor that makes a range
 * read start at `id` itself.
 */
export function idBefore (id: StreamId): StreamId {
  const dash = id.indexOf('-')
  const ms = id.slice(0, dash)
  const seq = id.slice(dash + 1)
  if (seq !== '0') return `${ms}-${(BigInt(seq) - 1n).toString()}`
  if (ms === '0') return ZERO_ID
  return `${(BigInt(ms) - 1n).toString()}-${MAX_SEQ}`
}

/** Exclusive cursor for "every entry stamped at or after `ms`". */
export function cursorForTime (ms: number): StreamId {
  return ms <= 0 ? ZERO_ID : idBefore(`${Math.floor(ms)}-0`)
}

/**
 * True for a cursor made by {@link cursorForTime}: a moment, not an entry (no
 * `*` id reaches the largest sequence number), so its absence is no gap.
 */
export function isTimeCursor (id: StreamId): boolean {
  return id.endsWith(`-${MAX_SEQ}`)
}
