/**
 * An in-memory stream engine with the Redis Streams semantics the gateway
 * relies on: the embedded default for a first run (no Redis to install).
 * Single process, nothing persisted: history is lost on restart, and replicas
 * cannot share it. The contract test suite runs it against the Redis engine.
 *
 * What it mirrors, and why each matters:
 *  - Ids are made like XADD `*`: `<ms>-<seq>`, ms = max(clock, last ms), so
 *    ids keep increasing within a stream even if the clock goes back. A
 *    stream keeps its last id when its entries are trimmed or deleted (Redis
 *    keeps `last_id` in an empty stream), but a stream that expired is gone:
 *    one created again under the same key starts from the clock, as in Redis.
 *  - Trimming: MAXLEN (approximate is exact here) and MINID; XDEL. Reads see
 *    only what is retained, so gap detection (`has`, `head`) works as on Redis.
 *  - Expiry follows EXPIRE: checked on every access, and swept on an unref'd
 *    timer so expired streams also free their memory.
 *  - Live reading follows XREAD with an explicit last id per key: everything
 *    after the watched position, in order, never twice; entries trimmed
 *    before they were reported are not reported, as on Redis. The listener is
 *    never called from inside `append` or `watch`: a producer and the hub must
 *    not re-enter each other, so reports go out on a later turn of the event
 *    loop (`setImmediate`), which also gathers a burst of appends into one
 *    batch per key.
 *
 * Memory stays bounded: a producer that gives no `maxLen` gets the engine's
 * default per-stream cap.
 */
import { compareIds, isStreamId, type StreamId } from '../core/stream-id.js'
import type { EntriesListener, RawEntry, SourceState, StreamSource } from './stream-source.js'

export interface MemorySourceOptions {
  /** Entries kept per stream when a producer gives no `maxLen`. Default 10,000. */
  readonly defaultMaxLen?: number
  /** Most entries per listener call for one key (like XREAD COUNT). Default 512. */
  readonly count?: number
  /** How often expired streams are swept, in milliseconds. Default 1,000. */
  readonly sweepIntervalMs?: number
  /** Clock in milliseconds since the epoch (tests). Default `Date.now`. */
  readonly now?: () => number
}

export interface TrimOptions {
  /** Keep at most this many entries, the newest (XTRIM MAXLEN; `~` is exact here). */
  readonly maxLen?: number
  /** Remove entries with ids below this one (XTRIM MINID); `<ms>` alone means `<ms>-0`. */
  readonly minId?: StreamId
}

export interface AppendOptions extends TrimOptions {
  /** Time to live of the whole stream from now, in milliseconds (PEXPIRE after XADD). */
  readonly expireMs?: number
}

export const DEFAULT_MAX_LEN = 10000
const DEFAULT_COUNT = 512
const DEFAULT_SWEEP_MS = 1000
/** Trimmed slots at the front of an entry array before it is compacted. */
const COMPACT_AFTER = 1024

class MemoryStream {
  /** Entries in id order; the retained ones start at `start`. */
  entries: RawEntry[] = []
  start = 0
  /** Last id handed out, kept when entries are removed (Redis `last_id`). */
  lastMs = 0
  lastSeq = 0
  /** Entries ever appended (Redis `entries-added`). */
  added = 0
  expiresAt: number | undefined

  get length (): number {
    return this.entries.length - this.start
  }

  /** Index of the first retained entry whose id is above `id` (or `>= id` when `inclusive`). */
  indexAfter (id: StreamId, inclusive = false): number {
    let lo = this.start
    let hi = this.entries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const c = compareIds((this.entries[mid] as RawEntry).id, id)
      if (c > 0 || (inclusive && c === 0)) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  /** Drops the retained entries before index `to`; returns how many. */
  dropBefore (to: number): number {
    const n = to - this.start
    if (n <= 0) return 0
    this.entries.fill(EMPTY, this.start, to)
    this.start = to
    // Trimming from the front one entry per append must not shift the whole
    // array each time: compact only once the dead prefix is large.
    if (this.start >= COMPACT_AFTER && this.start * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.start)
      this.start = 0
    }
    return n
  }
}

const EMPTY: RawEntry = Object.freeze({ id: '0-0', fields: Object.freeze([]) })

function checkMaxLen (maxLen: number | undefined): void {
  if (maxLen !== undefined && !(Number.isSafeInteger(maxLen) && maxLen >= 0)) {
    throw new RangeError(`maxLen must be a whole number >= 0, got ${String(maxLen)}`)
  }
}

function normalizeMinId (minId: StreamId | undefined): StreamId | undefined {
  if (minId === undefined) return undefined
  if (/^(?:0|[1-9]\d{0,19})$/.test(minId) && isStreamId(`${minId}-0`)) return `${minId}-0`
  if (!isStreamId(minId)) throw new RangeError(`minId must be a stream id <ms>-<seq>, got "${minId}"`)
  return minId
}

function toFields (fields: Readonly<Record<string, string>> | readonly string[]): readonly string[] {
  let flat: string[]
  if (Array.isArray(fields)) {
    flat = [...(fields as readonly string[])]
    if (flat.length % 2 !== 0) throw new RangeError('fields must be field/value pairs: an even number of strings')
  } else {
    flat = Object.entries(fields as Readonly<Record<string, string>>).flat()
  }
  if (flat.length === 0) throw new RangeError('an entry needs at least one field/value pair')
  for (const f of flat) if (typeof f !== 'string') throw new TypeError('fields and values must be strings')
  return Object.freeze(flat)
}

export class MemorySource implements StreamSource {
  readonly state: SourceState = 'ready'
  private readonly streams = new Map<string, MemoryStream>()
  /** Keys of streams with a time to live, for the sweep. */
  private readonly expiring = new Set<string>()
  private sweeper: NodeJS.Timeout | undefined
  private readonly watched = new Map<string, StreamId>()
  private readonly dirty = new Set<string>()
  private scheduled = false
  private closed = false
  private listener: EntriesListener = () => {}
  private readonly now: () => number
  /** Entries kept per stream when a producer gives no `maxLen`. */
  readonly defaultMaxLen: number
  private readonly count: number
  private readonly sweepIntervalMs: number

  constructor (opts: MemorySourceOptions = {}) {
    this.defaultMaxLen = opts.defaultMaxLen ?? DEFAULT_MAX_LEN
    checkMaxLen(this.defaultMaxLen)
    this.count = Math.max(1, opts.count ?? DEFAULT_COUNT)
    this.sweepIntervalMs = Math.max(1, opts.sweepIntervalMs ?? DEFAULT_SWEEP_MS)
    this.now = opts.now ?? Date.now
  }

  // ---- producer side ----

  /**
   * Appends an entry with a new `*` id and returns it (XADD). Trims after
   * adding, with `maxLen` (default: the engine's cap) and `minId`, and sets
   * the stream's time to live when `expireMs` is given (a stream without one
   * keeps any it had, as XADD does).
   */
  append (key: string, fields: Readonly<Record<string, string>> | readonly string[], opts: AppendOptions = {}): StreamId {
    const flat = toFields(fields)
    checkMaxLen(opts.maxLen)
    const minId = normalizeMinId(opts.minId)
    if (opts.expireMs !== undefined && !Number.isFinite(opts.expireMs)) throw new RangeError('expireMs must be a number of milliseconds')
    let stream = this.live(key)
    if (stream === undefined) {
      stream = new MemoryStream()
      this.streams.set(key, stream)
    }
    const now = Math.floor(this.now())
    let ms = Math.max(now, stream.lastMs)
    let seq = ms === stream.lastMs ? stream.lastSeq + 1 : 0
    if (!Number.isSafeInteger(seq)) { ms++; seq = 0 }
    stream.lastMs = ms
    stream.lastSeq = seq
    const id = `${ms}-${seq}`
    stream.entries.push(Object.freeze({ id, fields: flat }))
    stream.added++
    this.trimStream(stream, opts.maxLen ?? this.defaultMaxLen, minId)
    if (opts.expireMs !== undefined) this.setExpiry(key, stream, opts.expireMs)
    if (this.watched.has(key)) this.markDirty(key)
    return id
  }

  /** Removes old entries (XTRIM); returns how many. Approximate trimming is exact here. */
  trim (key: string, opts: TrimOptions): number {
    checkMaxLen(opts.maxLen)
    const minId = normalizeMinId(opts.minId)
    const stream = this.live(key)
    return stream === undefined ? 0 : this.trimStream(stream, opts.maxLen, minId)
  }

  /** Removes one entry (XDEL); returns whether it was there. */
  delete (key: string, id: StreamId): boolean {
    const stream = this.live(key)
    if (stream === undefined || !isStreamId(id)) return false
    const i = stream.indexAfter(id, true)
    if (i >= stream.entries.length || (stream.entries[i] as RawEntry).id !== id) return false
    if (i === stream.start) stream.dropBefore(i + 1)
    else stream.entries.splice(i, 1)
    return true
  }

  /**
   * Sets the stream's time to live (PEXPIRE); returns whether the stream
   * exists. Zero or less removes it at once.
   */
  expire (key: string, ms: number): boolean {
    if (!Number.isFinite(ms)) throw new RangeError('ms must be a number of milliseconds')
    const stream = this.live(key)
    if (stream === undefined) return false
    this.setExpiry(key, stream, ms)
    return true
  }

  /** Number of retained entries (XLEN); 0 for a missing stream. */
  length (key: string): number {
    return this.live(key)?.length ?? 0
  }

  // ---- StreamSource ----

  get watchedKeys (): number {
    return this.watched.size
  }

  setListener (listener: EntriesListener): void {
    this.listener = listener
  }

  watch (key: string, afterId: StreamId): void {
    if (this.closed) return
    this.watched.set(key, afterId)
    // Entries after `afterId` may already be there: report them too.
    this.markDirty(key)
  }

  unwatch (key: string): void {
    this.watched.delete(key)
    this.dirty.delete(key)
  }

  async tail (key: string): Promise<StreamId | undefined> {
    const s = this.live(key)
    return s === undefined || s.length === 0 ? undefined : (s.entries[s.entries.length - 1] as RawEntry).id
  }

  async head (key: string): Promise<StreamId | undefined> {
    const s = this.live(key)
    return s === undefined || s.length === 0 ? undefined : (s.entries[s.start] as RawEntry).id
  }

  async newestIds (key: string, count: number): Promise<StreamId[]> {
    const s = this.live(key)
    const ids: StreamId[] = []
    if (s === undefined) return ids
    for (let i = s.entries.length - 1; i >= s.start && ids.length < count; i--) ids.push((s.entries[i] as RawEntry).id)
    return ids
  }

  async range (key: string, afterId: StreamId, count: number): Promise<RawEntry[]> {
    return this.rangeNow(key, afterId, count)
  }

  async entriesRemoved (key: string): Promise<number | undefined> {
    const stream = this.live(key)
    return stream === undefined ? 0 : stream.added - stream.length
  }

  async has (key: string, id: StreamId): Promise<boolean> {
    const s = this.live(key)
    if (s === undefined || !isStreamId(id)) return false
    const i = s.indexAfter(id, true)
    return i < s.entries.length && (s.entries[i] as RawEntry).id === id
  }

  /** Stops live reporting and the expiry sweep; the data stays readable. */
  async close (): Promise<void> {
    this.closed = true
    this.watched.clear()
    this.dirty.clear()
    clearInterval(this.sweeper)
    this.sweeper = undefined
  }

  // ---- inside ----

  /** The stream at `key` unless it is absent or expired (an expired one is removed). */
  private live (key: string): MemoryStream | undefined {
    const s = this.streams.get(key)
    if (s === undefined) return undefined
    if (s.expiresAt !== undefined && s.expiresAt <= this.now()) {
      this.remove(key)
      return undefined
    }
    return s
  }

  private remove (key: string): void {
    this.streams.delete(key)
    this.expiring.delete(key)
    if (this.expiring.size === 0) {
      clearInterval(this.sweeper)
      this.sweeper = undefined
    }
  }

  private setExpiry (key: string, stream: MemoryStream, ms: number): void {
    if (ms <= 0) {
      this.remove(key)
      return
    }
    stream.expiresAt = this.now() + ms
    this.expiring.add(key)
    if (this.sweeper === undefined && !this.closed) {
      this.sweeper = setInterval(() => { this.sweep() }, this.sweepIntervalMs)
      this.sweeper.unref()
    }
  }

  private sweep (): void {
    // live() removes what has expired.
    for (const key of [...this.expiring]) this.live(key)
  }

  private trimStream (stream: MemoryStream, maxLen: number | undefined, minId: StreamId | undefined): number {
    let removed = 0
    if (minId !== undefined) removed += stream.dropBefore(stream.indexAfter(minId, true))
    if (maxLen !== undefined && stream.length > maxLen) removed += stream.dropBefore(stream.entries.length - maxLen)
    return removed
  }

  private rangeNow (key: string, afterId: StreamId, count: number): RawEntry[] {
    const s = this.live(key)
    if (s === undefined || count <= 0) return []
    const from = s.indexAfter(afterId)
    return s.entries.slice(from, Math.min(s.entries.length, from + count))
  }

  private markDirty (key: string): void {
    this.dirty.add(key)
    if (this.scheduled || this.closed) return
    this.scheduled = true
    setImmediate(() => { this.flush() })
  }

  /**
   * Reports every dirty watched key's entries after its position, at most
   * `count` per key per turn (a longer backlog continues on the next turn, so
   * a burst cannot hold the event loop).
   */
  private flush (): void {
    this.scheduled = false
    const keys = [...this.dirty]
    this.dirty.clear()
    let i = 0
    try {
      for (; i < keys.length; i++) {
        const key = keys[i] as string
        const position = this.watched.get(key)
        if (position === undefined) continue
        const entries = this.rangeNow(key, position, this.count)
        const last = entries[entries.length - 1]
        if (last === undefined) continue
        // Moved before the call: whatever the listener does, nothing is reported twice.
        this.watched.set(key, last.id)
        if (entries.length === this.count) this.markDirty(key)
        this.listener(key, entries)
      }
    } finally {
      // A listener that threw must not cost the other keys their entries.
      for (i++; i < keys.length; i++) this.markDirty(keys[i] as string)
    }
  }
}
