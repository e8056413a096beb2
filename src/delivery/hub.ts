/**
 * One hub per process: owns every stream key a local session reads,
 * reference-counted, and turns each entry into an event once.
 *
 * An entry becomes a {@link DeliveryEvent}: its event and data lines framed
 * once into a shared buffer (only the `id:` line is per session). Entries that
 * break the producer contract (no `data`, an unsafe event name, too large) are
 * skipped here, counted, and logged once per stream; they still move positions
 * forward so nobody waits on them.
 *
 * Every batch carries the position it follows (`prevId`): a subscriber whose
 * own cursor is behind that knows it missed something and catches up from the
 * source (see Session). Live delivery, resume and slow-client catch-up are
 * therefore one mechanism.
 */
import type { Logger } from 'pino'
import { formatEventText, formatIdLine, isValidEventName } from '../core/frame.js'
import { ZERO_ID, compareIds, idBefore, idMs, isTimeCursor, type StreamId } from '../core/stream-id.js'
import type { SkipReason } from '../core/protocol.js'
import type { HistoryQueries, LiveFeed, RawEntry } from '../source/stream-source.js'

/** An entry as an event: its `event:` and `data:` lines, shared by every session. */
export class DeliveryEvent {
  private body_: Buffer | undefined

  constructor (
    readonly id: StreamId,
    /** The `event:` and `data:` lines as text. */
    readonly text: string
  ) {}

  /** The lines as bytes, encoded on first use (multi-channel streams write them with their own `id:`). */
  get body (): Buffer {
    if (this.body_ === undefined) this.body_ = Buffer.from(this.text, 'utf8')
    return this.body_
  }

  /**
   * The lines with the channel's name as the first `data:` line, for streams
   * that asked for it (`channel=data`), encoded on first use and shared like
   * {@link body}: an entry belongs to one channel, so there is one such form.
   */
  bodyWithChannel (channel: string): Buffer {
    this.withChannel_ ??= Buffer.from(withChannelLine(this.text, channel), 'utf8')
    return this.withChannel_
  }

  private withChannel_: Buffer | undefined
}

/** `event:` and `data:` lines with `data: <channel>` before the first data line. */
export function withChannelLine (text: string, channel: string): string {
  const at = text.startsWith('event: ') ? text.indexOf('\n') + 1 : 0
  return `${text.slice(0, at)}data: ${channel}\n${text.slice(at)}`
}

/** Entries read together, as events, in order. */
export class Batch {
  private framed_: Buffer | undefined
  private encodedBy: ((framedText: string) => Buffer) | undefined
  private encoded_: Buffer | undefined

  constructor (
    readonly events: readonly DeliveryEvent[],
    /** Id of the last entry read, delivered or skipped; a cursor may move to it. */
    readonly lastId: StreamId
  ) {}

  /**
   * Every event followed by its entry id as the `id:` line: exactly what a
   * one-channel stream writes for the whole batch (its event id is the entry
   * id). Built on first use and shared, so a fan-out to N such streams
   * writes one buffer N times instead of framing N times.
   */
  framed (): Buffer {
    this.framed_ ??= Buffer.from(this.framedText(), 'utf8')
    return this.framed_
  }

  /**
   * {@link framed} as a transport puts it on the wire (an HTTP/1.1 writer:
   * one chunk), made by `encode` from the framed text on first use and
   * shared like {@link framed}: a fan-out to N streams encodes once. One
   * slot, kept for the first `encode` asked: a replica serves one transport
   * that needs this (a second kind gets a fresh encoding each time).
   */
  encoded (encode: (framedText: string) => Buffer): Buffer {
    if (this.encodedBy === encode) return this.encoded_ as Buffer
    const bytes = encode(this.framedText())
    if (this.encodedBy === undefined) {
      this.encodedBy = encode
      this.encoded_ = bytes
    }
    return bytes
  }

  /** One string for the whole batch, encoded by the caller once: one allocation per batch. */
  private framedText (): string {
    let text = ''
    for (const ev of this.events) text += ev.text + formatIdLine(ev.id)
    return text
  }
}

/** A catch-up page (see {@link Hub.readPage}). */
export class Page extends Batch {
  constructor (
    events: readonly DeliveryEvent[],
    lastId: StreamId,
    /** History was trimmed past the cursor: the page is empty and the cursor must be checked. */
    readonly trimmed: boolean
  ) {
    super(events, lastId)
  }
}

export interface Subscriber {
  /** New entries of `key` that follow `prevId`, in order. */
  onBatch (key: string, prevId: StreamId, batch: Batch): void
  /** The source lost these keys' history: each starts over from 0-0, or from its id in `from` (see ResetListener). */
  onReset (keys: readonly string[], from?: ReadonlyMap<string, StreamId>): void
}

export interface HubOptions {
  readonly maxEventBytes: number
  /** Most concurrent catch-up reads against the source. */
  readonly maxConcurrentReads: number
  readonly logger: Logger
  readonly onSkip?: (reason: SkipReason) => void
  /** Once per turn of the event loop: seconds from the id time of the batch that waited longest to the end of its fan-out. */
  readonly onDelivered?: (lagSeconds: number) => void
}

/**
 * A key read for local subscribers. Most keys (a user's own channel) have
 * one subscriber: it is held directly, and a Set is made only for a second
 * one (a Set costs about 130 bytes per idle stream, bench Q4).
 */
interface KeyState {
  one: Subscriber | undefined
  many: Set<Subscriber> | undefined
  position: StreamId
  /** Settles once the key's position is known (then replaced by {@link READY}). */
  ready: Promise<void>
}

const READY: Promise<void> = Promise.resolve()

/** What is retained of a stream around a cursor (see {@link Hub.inspect}). */
export interface Inspection {
  readonly exists: boolean
  readonly head: StreamId | undefined
  readonly tail: StreamId | undefined
}

function addSubscriber (state: KeyState, s: Subscriber): void {
  if (state.many !== undefined) state.many.add(s)
  else if (state.one === undefined) state.one = s
  else if (state.one !== s) {
    state.many = new Set([state.one, s])
    state.one = undefined
  }
}

/** Removes `s`; true when the key has no subscriber left. */
function removeSubscriber (state: KeyState, s: Subscriber): boolean {
  if (state.many !== undefined) {
    state.many.delete(s)
    return state.many.size === 0
  }
  if (state.one === s) state.one = undefined
  return state.one === undefined
}

const LOGGED_KEYS_LIMIT = 10000

export class Hub {
  private readonly keys = new Map<string, KeyState>()
  private readonly loggedSkips = new Set<string>()
  /** Catch-up reads under way, by question (see {@link Hub.shared}). */
  private readonly inFlight = new Map<string, Promise<unknown>>()
  /** Oldest entry time (ms) of the batches dispatched this tick; -1 when none. */
  private lagFromMs = -1
  private readonly reads: Semaphore

  /**
   * `live` tells the hub about new entries of the keys it watches; `history`
   * answers its catch-up and gap questions. One engine's source is both, but
   * the hub asks each only its own kind of question.
   */
  constructor (private readonly live: LiveFeed, private readonly history: HistoryQueries, private readonly opts: HubOptions) {
    this.reads = new Semaphore(opts.maxConcurrentReads)
    live.setListener((key, entries) => { this.dispatch(key, entries) })
    live.setResetListener?.((keys, from) => { this.reset(keys, from) })
  }

  /**
   * When the source's current dataset began (see HistoryQueries.epochMs):
   * a resume cursor older than this may point into lost history.
   */
  get epochMs (): number | undefined {
    return this.history.epochMs
  }

  /**
   * The source lost these keys' history: each starts over, and its
   * subscribers are told, each once with all of its keys (one gap event
   * naming every channel), after every position has moved.
   */
  private reset (keys: readonly string[], from?: ReadonlyMap<string, StreamId>): void {
    const told = new Map<Subscriber, string[]>()
    const tell = (s: Subscriber, key: string): void => {
      const list = told.get(s)
      if (list === undefined) told.set(s, [key])
      else list.push(key)
    }
    for (const key of keys) {
      const state = this.keys.get(key)
      if (state === undefined) continue
      state.position = from?.get(key) ?? ZERO_ID
      if (state.one !== undefined) tell(state.one, key)
      else if (state.many !== undefined) for (const s of state.many) tell(s, key)
    }
    for (const [s, list] of told) s.onReset(list, from)
  }

  /** Keys with at least one subscriber. */
  get size (): number {
    return this.keys.size
  }

  /**
   * Adds a subscriber to `key` and resolves with the key's live position:
   * every entry after it will reach the subscriber (as a batch, or through a
   * catch-up it runs itself). Rejects if the source cannot be read.
   */
  async subscribe (key: string, subscriber: Subscriber): Promise<StreamId> {
    let state = this.keys.get(key)
    if (state === undefined) {
      const fresh: KeyState = { one: undefined, many: undefined, position: ZERO_ID, ready: READY }
      fresh.ready = this.history.tail(key).then(tail => {
        fresh.position = tail ?? ZERO_ID
        fresh.ready = READY
        // Still wanted? Every subscriber may have left while we waited.
        if (this.keys.get(key) === fresh) this.live.watch(key, fresh.position)
      })
      this.keys.set(key, fresh)
      state = fresh
    }
    addSubscriber(state, subscriber)
    try {
      await state.ready
    } catch (err) {
      this.unsubscribe(key, subscriber)
      if (this.keys.get(key) === state) this.keys.delete(key)
      throw err
    }
    return state.position
  }

  unsubscribe (key: string, subscriber: Subscriber): void {
    const state = this.keys.get(key)
    if (state === undefined) return
    if (removeSubscriber(state, subscriber)) {
      this.keys.delete(key)
      this.live.unwatch(key)
    }
  }

  /** Last position read live for `key`, or undefined if nobody reads it. */
  position (key: string): StreamId | undefined {
    return this.keys.get(key)?.position
  }

  /**
   * Reads entries after `afterId` from the source (catch-up), bounded in
   * concurrency. The oldest retained id is read right after the page: if it
   * is newer than `afterId`, history was trimmed past the cursor (a producer
   * trimming while a client catches up from near the end of retention), the
   * page may not follow the cursor, and it comes back empty with `trimmed`.
   */
  async readPage (key: string, afterId: StreamId, count: number): Promise<Page> {
    return await this.shared(`page\u0000${key}\u0000${afterId}\u0000${count}`, async () => await this.readPageNow(key, afterId, count))
  }

  private async readPageNow (key: string, afterId: StreamId, count: number): Promise<Page> {
    const [entries, head] = await this.reads.run(() => Promise.all([
      this.history.range(key, afterId, count), this.history.head(key),
    ]))
    // 0-0 and a since= moment name no entry: nothing to check them against.
    const named = afterId !== ZERO_ID && !isTimeCursor(afterId)
    // Just before the head is where a reported gap leaves a cursor: nothing lost.
    if (named && (head === undefined ? entries.length > 0 : compareIds(head, afterId) > 0 && idBefore(head) !== afterId)) {
      return new Page([], afterId, true)
    }
    const batch = this.toBatch(key, entries, afterId, false)
    return new Page(batch.events, batch.lastId, false)
  }

  /**
   * Exclusive cursor from which the newest `count` entries of `key` are read:
   * the entry just before them, or 0-0 when the stream holds no more than
   * `count`. A real entry, not a computed id: a client may send it back in a
   * multi-channel `Last-Event-ID`, and a cursor naming no entry reads as a gap.
   */
  async cursorForLast (key: string, count: number): Promise<StreamId> {
    const ids = await this.reads.run(() => this.history.newestIds(key, count + 1))
    return ids.length <= count ? ZERO_ID : ids[count] as StreamId
  }

  /** Entries ever removed from `key` (see HistoryQueries.entriesRemoved). */
  async entriesRemoved (key: string): Promise<number | undefined> {
    return await this.reads.run(() => this.history.entriesRemoved(key))
  }

  /** What is retained of `key` around `cursor`: for gap detection. */
  async inspect (key: string, cursor: StreamId): Promise<Inspection> {
    return await this.shared(`inspect\u0000${key}\u0000${cursor}`, async () => {
      const [exists, head, tail] = await this.reads.run(() => Promise.all([
        this.history.has(key, cursor), this.history.head(key), this.history.tail(key),
      ]))
      return { exists, head, tail }
    })
  }

  /**
   * Joins a read already under way for the same question: clients resuming
   * from the same id (a reconnect storm after a deploy) share one read and
   * one framed page instead of each asking Redis. A read that started a
   * moment before the caller asked is still correct for it: a catch-up pages
   * on until it reaches the live position, and checks retention per page.
   */
  private async shared<T> (id: string, work: () => Promise<T>): Promise<T> {
    const running = this.inFlight.get(id) as Promise<T> | undefined
    if (running !== undefined) return await running
    const read = work()
    this.inFlight.set(id, read)
    try {
      return await read
    } finally {
      if (this.inFlight.get(id) === read) this.inFlight.delete(id)
    }
  }

  private dispatch (key: string, entries: readonly RawEntry[]): void {
    const state = this.keys.get(key)
    if (state === undefined || entries.length === 0) return
    const prevId = state.position
    const batch = this.toBatch(key, entries, prevId, true)
    state.position = batch.lastId
    if (state.one !== undefined) state.one.onBatch(key, prevId, batch)
    else if (state.many !== undefined) for (const s of state.many) s.onBatch(key, prevId, batch)
    if (this.opts.onDelivered !== undefined && batch.events.length > 0) this.noteDelivered(batch.lastId)
  }

  /**
   * One lag observation per turn (a read from Redis dispatches many keys at
   * once): the batch that waited longest. Per batch, the histogram update
   * was a noticeable share of per-event work with many one-event batches.
   */
  private noteDelivered (lastId: StreamId): void {
    const ms = idMs(lastId)
    if (this.lagFromMs === -1) {
      this.lagFromMs = ms
      process.nextTick(() => {
        const from = this.lagFromMs
        this.lagFromMs = -1
        this.opts.onDelivered?.(Math.max(0, Date.now() - from) / 1000)
      })
    } else if (ms < this.lagFromMs) this.lagFromMs = ms
  }

  /**
   * `live`: read by the live reader. A contract-breaking entry is counted and
   * logged only then, once per replica, not again by every catch-up that
   * reads past it.
   */
  private toBatch (key: string, entries: readonly RawEntry[], afterId: StreamId, live: boolean): Batch {
    const events: DeliveryEvent[] = []
    for (const entry of entries) {
      const event = this.toEvent(key, entry, live)
      if (event !== undefined) events.push(event)
    }
    const last = entries[entries.length - 1]
    return new Batch(events, last === undefined ? afterId : last.id)
  }

  private toEvent (key: string, entry: RawEntry, live: boolean): DeliveryEvent | undefined {
    let data: string | undefined
    let event: string | undefined
    const f = entry.fields
    for (let i = 0; i + 1 < f.length; i += 2) {
      if (f[i] === 'data' && data === undefined) data = f[i + 1]
      else if (f[i] === 'event' && event === undefined) event = f[i + 1]
    }
    if (data === undefined) return this.skip(key, entry.id, 'no-data', live)
    if (event === '') event = undefined
    if (event !== undefined && !isValidEventName(event)) return this.skip(key, entry.id, 'bad-event-name', live)
    if (data.length > this.opts.maxEventBytes || Buffer.byteLength(data) > this.opts.maxEventBytes) {
      return this.skip(key, entry.id, 'too-large', live)
    }
    return new DeliveryEvent(entry.id, formatEventText(data, event))
  }

  private skip (key: string, id: StreamId, reason: SkipReason, live: boolean): undefined {
    if (!live) return undefined
    this.opts.onSkip?.(reason)
    if (!this.loggedSkips.has(key)) {
      if (this.loggedSkips.size >= LOGGED_KEYS_LIMIT) this.loggedSkips.clear()
      this.loggedSkips.add(key)
      this.opts.logger.warn({ key, entryId: id, reason }, 'skipped a stream entry that breaks the producer contract (logged once per stream)')
    }
    return undefined
  }
}

/** Bounds concurrent async work; waiters run in arrival order. */
export class Semaphore {
  private active = 0
  private readonly waiting: Array<() => void> = []

  constructor (private readonly limit: number) {}

  async run<T> (work: () => Promise<T>): Promise<T> {
    // A released slot passes straight to the next waiter, so the limit holds.
    if (this.active >= this.limit) await new Promise<void>(resolve => this.waiting.push(resolve))
    else this.active++
    try {
      return await work()
    } finally {
      const next = this.waiting.shift()
      if (next !== undefined) next()
      else this.active--
    }
  }
}
