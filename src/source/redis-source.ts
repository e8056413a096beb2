/**
 * Redis Streams as the event source.
 *
 * Live reading: keys are spread over a few shards; each shard owns one
 * dedicated blocking connection running `XREAD COUNT c BLOCK b STREAMS ...`
 * with an explicit last id per key (never `$`: re-sent after a reconnect it
 * skips what was written during the outage). Ordinary commands (XRANGE,
 * XREVRANGE, the wake XADD) use one separate, auto-pipelined connection.
 *
 * A key added while its shard is blocked must be read at once, not after the
 * BLOCK timeout. `CLIENT UNBLOCK` needs admin rights that managed Redis often
 * withholds, so every shard also reads its own wake stream
 * (`<prefix>__gateway:wake:<instance>:<shard>`); an XADD to it ends the
 * blocked read, and the next read lists the new key. That needs only write
 * access under the key prefix.
 *
 * Every blocking XREAD lists all of its shard's keys, and Redis pays for each
 * listed key on every call: right for a few busy keys (topics), wrong for
 * thousands of quiet ones (per-user channels). When the server publishes
 * keyspace notifications for streams (`notify-keyspace-events` with `K` and
 * `t`), the notify reader is used instead: it subscribes to the keyspace
 * channel of each watched key and reads, with explicit ids, only the keys
 * that changed. Notifications are at-most-once, so every key is read again
 * after the subscriber reconnects, and once right after it is subscribed.
 */
import { randomBytes } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import { compareIds, type StreamId } from '../core/stream-id.js'
import type { EntriesListener, RawEntry, SourceState, StreamSource } from './stream-source.js'

export interface RedisSourceOptions {
  readonly url: string
  readonly keyPrefix: string
  readonly shards: number
  readonly blockMs: number
  /**
   * Blocking reader: most keys listed to Redis per second over all shards
   * (each XREAD lists its shard's every key); a shard waits between reads to
   * stay under it. 0 or unset: no wait.
   */
  readonly maxKeysPerSecond?: number
  readonly count: number
  /** `block`: sharded blocking XREAD; `notify`: keyspace notifications; `auto`: notify when the server has them on. */
  readonly mode: ReaderMode
  readonly logger: Logger
  /** Called after each XREAD with its round-trip time in seconds (metrics). */
  readonly onRead?: (seconds: number) => void
  readonly onReaderError?: () => void
  /** Called each time the command connection starts reconnecting. */
  readonly onReconnect?: () => void
}

type XReadReply = Array<[string, Array<[string, string[]]>]> | null

export type ReaderMode = 'auto' | 'block' | 'notify'

/** Reads watched keys live and reports their entries to the source. */
interface LiveReader {
  add (key: string, afterId: StreamId): void
  remove (key: string): void
  close (): Promise<void>
}

type Xread = (...args: string[]) => Promise<XReadReply>

const RECONNECT_BASE_MS = 100
const RECONNECT_MAX_MS = 5000
const WATCHDOG_GRACE_MS = 5000

function connectionOptions (extra: RedisOptions): RedisOptions {
  return {
    // RESP2 keeps XREAD/XRANGE replies in one known shape on every server.
    protocol: 2,
    lazyConnect: false,
    retryStrategy: (times: number) => Math.min(RECONNECT_BASE_MS * 2 ** Math.min(times, 10), RECONNECT_MAX_MS) + Math.floor(Math.random() * 100),
    ...extra,
  }
}

/** Connections whose commands must answer or fail (not wait out an outage). */
const REQUEST_REPLY: RedisOptions = { maxRetriesPerRequest: 1, enableOfflineQueue: true, commandTimeout: 10000 }

function createClient (url: string, extra: RedisOptions): Redis {
  if (url.startsWith('unix://')) return new Redis({ ...connectionOptions(extra), path: url.slice('unix://'.length) })
  return new Redis(url, connectionOptions(extra))
}

/**
 * Outage bookkeeping shared by the readers: the first failure is logged once,
 * every failure counted, retries back off exponentially, and the recovery is
 * logged once.
 */
class ReaderHealth {
  private failing = false
  private backoff = RECONNECT_BASE_MS

  constructor (private readonly opts: RedisSourceOptions) {}

  /** Records a failed read; resolves when it is time to try again. */
  async failed (err: unknown): Promise<void> {
    if (!this.failing) {
      this.failing = true
      this.opts.logger.error({ err: errorSummary(err) }, 'stream reader lost Redis; retrying with backoff, reading resumes from explicit ids')
    }
    this.opts.onReaderError?.()
    await sleep(this.backoff)
    this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX_MS)
  }

  /** Records a read that answered, with its round trip since `started`. */
  succeeded (started: bigint): void {
    this.opts.onRead?.(Number(process.hrtime.bigint() - started) / 1e9)
    if (this.failing) {
      this.failing = false
      this.opts.logger.info('stream reader reading again')
    }
    this.backoff = RECONNECT_BASE_MS
  }
}

/**
 * Moves `key`'s position past the entries read and reports them. A key
 * re-added during the read may have a newer position: only what is after it
 * is kept, so nothing is reported twice.
 */
/**
 * Emits the entries of a read of `key` that follow `current` (a read can
 * repeat ones already seen) and returns the new position, or undefined when
 * nothing was new.
 */
function advance (source: RedisSource, key: string, current: StreamId, entries: Array<[string, string[]]>): StreamId | undefined {
  const first = entries[0]
  if (first === undefined) return undefined
  const fresh = compareIds(first[0], current) > 0 ? entries : entries.filter(e => compareIds(e[0], current) > 0)
  const last = fresh[fresh.length - 1]
  if (last === undefined) return undefined
  source.emit(key, fresh.map(toEntry))
  return last[0]
}

class Shard {
  readonly keys = new Map<string, StreamId>()
  private readonly conn: Redis
  private wakeId: StreamId = '0-0'
  private inFlight = false
  private wakeQueued = false
  private idle: (() => void) | undefined
  private closed = false
  private readonly health: ReaderHealth
  private lost: ((err: Error) => void) | undefined
  /** performance.now() when the last XREAD was sent. */
  private lastSentAt = -Infinity

  constructor (
    private readonly source: RedisSource,
    private readonly wakeKey: string,
    private readonly opts: RedisSourceOptions,
    private readonly pacing: Pacing,
  ) {
    this.health = new ReaderHealth(opts)
    this.conn = createClient(opts.url, {
      connectionName: 'sse-gateway:reader',
      enableAutoPipelining: false,
      // Our loop re-issues the read with fresh explicit ids after a reconnect;
      // ioredis must not replay the old command on its own.
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: null,
    })
    this.conn.on('error', () => { /* reported by the read loop */ })
    // ioredis drops an in-flight command on disconnect without settling it
    // (autoResendUnfulfilledCommands is off): fail the read ourselves.
    this.conn.on('close', () => {
      const lost = this.lost
      this.lost = undefined
      lost?.(new Error('Redis connection closed during XREAD'))
    })
    void this.loop()
  }

  add (key: string, afterId: StreamId): void {
    this.keys.set(key, afterId)
    this.wake()
  }

  remove (key: string): void {
    // No wake: the key leaves the list at the next read, within READER_BLOCK_MS.
    this.keys.delete(key)
  }

  private wake (): void {
    if (this.idle !== undefined) {
      const resume = this.idle
      this.idle = undefined
      resume()
      return
    }
    if (!this.inFlight || this.wakeQueued) return
    this.wakeQueued = true
    // Coalesce every key added in this tick into one wake.
    process.nextTick(() => { this.source.sendWake(this.wakeKey) })
  }

  private async loop (): Promise<void> {
    while (!this.closed) {
      if (this.keys.size === 0) {
        await new Promise<void>(resolve => { this.idle = resolve })
        continue
      }
      // Redis spends about 2 µs per key an XREAD lists, blocked or not: with
      // thousands of keys, reading again at once would take a Redis core.
      // Wait out this shard's share of the key budget instead; entries then
      // arrive in bigger batches, and keys added meanwhile join this read.
      // One wait per read: keys added during it must not push it further.
      const wait = this.lastSentAt + this.pacing.intervalMs(this.keys.size + 1) - performance.now()
      if (wait >= 1) {
        this.pacing.paced(this.keys.size, wait)
        await sleep(wait)
        if (this.closed) return
        if (this.keys.size === 0) continue
      }
      this.lastSentAt = performance.now()
      const args: string[] = ['COUNT', String(this.opts.count), 'BLOCK', String(this.opts.blockMs), 'STREAMS']
      const ids: string[] = []
      for (const [key, id] of this.keys) { args.push(key); ids.push(id) }
      args.push(this.wakeKey)
      ids.push(this.wakeId)
      args.push(...ids)
      this.inFlight = true
      this.wakeQueued = false
      const started = process.hrtime.bigint()
      let reply: XReadReply
      let watchdog: NodeJS.Timeout | undefined
      try {
        const read = (this.conn as unknown as { xread: Xread }).xread(...args)
        const lost = new Promise<never>((_resolve, reject) => { this.lost = reject })
        // Watchdog: a read that outlives BLOCK by this much is on a dead
        // connection (a silent network failure): drop it and reconnect.
        watchdog = setTimeout(() => {
          this.conn.disconnect(true)
          this.lost?.(new Error(`XREAD gave no answer within READER_BLOCK_MS + ${WATCHDOG_GRACE_MS} ms`))
        }, this.opts.blockMs + WATCHDOG_GRACE_MS)
        watchdog.unref()
        reply = await Promise.race([read, lost])
        clearTimeout(watchdog)
        this.lost = undefined
      } catch (err) {
        clearTimeout(watchdog)
        this.lost = undefined
        this.inFlight = false
        if (this.closed) return
        await this.health.failed(err)
        continue
      }
      this.inFlight = false
      this.health.succeeded(started)
      if (reply === null) continue
      for (const [key, entries] of reply) {
        if (key === this.wakeKey) {
          const last = entries[entries.length - 1]
          if (last !== undefined) this.wakeId = last[0]
          continue
        }
        const current = this.keys.get(key)
        if (current === undefined) continue
        const next = advance(this.source, key, current, entries)
        if (next !== undefined) this.keys.set(key, next)
      }
    }
  }

  async close (): Promise<void> {
    this.closed = true
    this.idle?.()
    this.conn.disconnect()
  }
}

function toEntry (e: [string, string[]]): RawEntry {
  return { id: e[0], fields: e[1] }
}

function errorSummary (err: unknown): { message: string, code?: string } {
  if (err instanceof Error) return { message: err.message, ...('code' in err ? { code: String((err as { code: unknown }).code) } : {}) }
  return { message: String(err) }
}

async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`no answer in ${ms} ms`)) }, ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms).unref())
}

/** FNV-1a, for placing a key on a shard. */
function shardOf (key: string, shards: number): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0
  return h % shards
}

/** The blocking reader's key budget (READER_BLOCK_MAX_KEYS_PER_SECOND), shared by its shards. */
class Pacing {
  private logged = false

  constructor (
    private readonly maxKeysPerSecond: number,
    private readonly shards: number,
    private readonly logger: Logger,
  ) {}

  /** Least time between two reads of a shard that lists `keys` keys, in ms. */
  intervalMs (keys: number): number {
    return this.maxKeysPerSecond > 0 ? keys * this.shards * 1000 / this.maxKeysPerSecond : 0
  }

  paced (keys: number, waitMs: number): void {
    if (this.logged) return
    this.logged = true
    this.logger.info({ keysInShard: keys, shards: this.shards, waitMs: Math.round(waitMs), maxKeysPerSecond: this.maxKeysPerSecond },
      'the blocking reader lists many keys and now waits between reads to spare Redis (READER_BLOCK_MAX_KEYS_PER_SECOND); live events can wait that long. For many quiet keys, enable keyspace notifications (notify-keyspace-events Kt) for the notify reader (logged once)')
  }
}

class ShardedReader implements LiveReader {
  private readonly shards: Shard[]
  private readonly owner = new Map<string, Shard>()

  constructor (source: RedisSource, instance: string, opts: RedisSourceOptions) {
    const pacing = new Pacing(opts.maxKeysPerSecond ?? 0, opts.shards, opts.logger)
    this.shards = Array.from({ length: opts.shards }, (_, i) =>
      new Shard(source, `${opts.keyPrefix}__gateway:wake:${instance}:${i}`, opts, pacing))
  }

  add (key: string, afterId: StreamId): void {
    let shard = this.owner.get(key)
    if (shard === undefined) {
      shard = this.shards[shardOf(key, this.shards.length)] as Shard
      this.owner.set(key, shard)
    }
    shard.add(key, afterId)
  }

  remove (key: string): void {
    const shard = this.owner.get(key)
    if (shard === undefined) return
    this.owner.delete(key)
    shard.remove(key)
  }

  async close (): Promise<void> {
    await Promise.all(this.shards.map(s => s.close()))
  }
}

/** The keyspace event of an XADD. */
const XADD = Buffer.from('xadd')

/** Keys per XREAD of the notify reader. */
const NOTIFY_BATCH = 256

/**
 * A key the notify reader follows. Its flags and the reader's queue of dirty
 * keys replace two Sets of key strings: a Set's table is reallocated as it
 * grows and shrinks with every burst, and both the tables and the keys in
 * flight were still alive at young-generation collections, so each one
 * copied and promoted them (the per-user p99 tail, bench/RESULTS.md, Q2).
 * Objects that live as long as the key do not.
 */
class NotifyKey {
  dirty = false
  reading = false
  removed = false
  constructor (readonly key: string, public afterId: StreamId) {}
}

class NotifyReader implements LiveReader {
  private readonly keys = new Map<string, NotifyKey>()
  /**
   * XREADs on a connection of their own, not the auto-pipelined command
   * connection: behind auto-pipelining the replies' strings outlived
   * several young-generation collections (1.4 MB promoted per scavenge at
   * 5,000 events/s against 0.3 MB here), and the longer scavenges that
   * followed were the per-user p99 tail (bench/RESULTS.md, Q2).
   */
  private readonly reader: Redis
  /** Keys to read, each once (its `dirty` flag); swapped with `spare` at each flush. */
  private dirty: NotifyKey[] = []
  private spare: NotifyKey[] = []
  private readonly sub: Redis
  private readonly channelPrefix: string
  private readonly countText: string
  private scheduled = false
  private closed = false
  private readonly health: ReaderHealth
  private readonly flushNow = (): void => {
    this.scheduled = false
    this.flush()
  }

  constructor (
    private readonly source: RedisSource,
    db: number,
    private readonly opts: RedisSourceOptions,
  ) {
    this.health = new ReaderHealth(opts)
    this.countText = String(opts.count)
    // A read fails during an outage (the loop backs off and marks its keys
    // again) instead of waiting forever.
    this.reader = createClient(opts.url, { ...REQUEST_REPLY, connectionName: 'sse-gateway:notify-reader', enableAutoPipelining: false })
    this.reader.on('error', () => { /* reported by the read loop */ })
    this.channelPrefix = `__keyspace@${db}__:`
    this.sub = createClient(opts.url, {
      connectionName: 'sse-gateway:notify',
      maxRetriesPerRequest: null,
      autoResubscribe: true,
    })
    this.sub.on('error', () => { /* the command connection reports outages */ })
    let connectedBefore = false
    this.sub.on('ready', () => {
      // Notifications sent while we were away are lost: read every key again.
      if (connectedBefore) for (const k of this.keys.values()) this.markDirty(k)
      connectedBefore = true
    })
    // The raw form: ioredis then makes no strings of the channel and event;
    // the key is decoded straight from the bytes after the prefix, only to
    // look it up.
    const prefixBytes = Buffer.byteLength(this.channelPrefix)
    this.sub.on('messageBuffer', (channel: Buffer, event: Buffer) => {
      if (!event.equals(XADD)) return
      const k = this.keys.get(channel.toString('utf8', prefixBytes))
      if (k !== undefined) this.markDirty(k)
    })
  }

  add (key: string, afterId: StreamId): void {
    const known = this.keys.get(key)
    if (known !== undefined) {
      known.afterId = afterId
      this.markDirty(known)
      return
    }
    const k = new NotifyKey(key, afterId)
    this.keys.set(key, k)
    // Entries written before the subscription took effect sent no
    // notification: read the key once it is in place.
    this.sub.subscribe(this.channelPrefix + key).then(
      () => { this.markDirty(k) },
      () => { this.markDirty(k) },
    )
  }

  remove (key: string): void {
    const k = this.keys.get(key)
    if (k === undefined) return
    this.keys.delete(key)
    k.removed = true
    this.sub.unsubscribe(this.channelPrefix + key).catch(() => {})
  }

  private markDirty (k: NotifyKey): void {
    if (this.closed || k.removed || k.dirty) return
    k.dirty = true
    this.dirty.push(k)
    this.scheduleFlush()
  }

  /** Gathers every notification of this turn of the event loop into few reads. */
  private scheduleFlush (): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(this.flushNow)
  }

  private flush (): void {
    const queued = this.dirty
    this.dirty = this.spare
    let batch: NotifyKey[] = []
    for (const k of queued) {
      if (k.removed) {
        k.dirty = false
        continue
      }
      // Being read: read again once that read is back (it stays dirty).
      if (k.reading) {
        this.dirty.push(k)
        continue
      }
      k.dirty = false
      k.reading = true
      batch.push(k)
      if (batch.length === NOTIFY_BATCH) {
        void this.read(batch)
        batch = []
      }
    }
    queued.length = 0
    this.spare = queued
    if (batch.length > 0) void this.read(batch)
  }

  private async read (batch: NotifyKey[]): Promise<void> {
    const n = batch.length
    const args: string[] = new Array<string>(3 + 2 * n)
    args[0] = 'COUNT'
    args[1] = this.countText
    args[2] = 'STREAMS'
    for (let i = 0; i < n; i++) {
      const k = batch[i] as NotifyKey
      args[3 + i] = k.key
      args[3 + n + i] = k.afterId
    }
    const started = process.hrtime.bigint()
    let reply: XReadReply
    try {
      reply = await (this.reader as unknown as { xread: Xread }).xread(...args)
    } catch (err) {
      for (const k of batch) k.reading = false
      if (this.closed) return
      await this.health.failed(err)
      for (const k of batch) this.markDirty(k)
      return
    }
    this.health.succeeded(started)
    for (const k of batch) k.reading = false
    for (const [key, entries] of reply ?? []) {
      const k = this.keys.get(key)
      if (k === undefined) continue
      // The key's own string: the reply's copy dies young.
      k.afterId = advance(this.source, k.key, k.afterId, entries) ?? k.afterId
      // A full page: there may be more.
      if (entries.length >= this.opts.count) this.markDirty(k)
    }
    // Notifications that arrived during the read.
    if (this.dirty.length > 0) this.scheduleFlush()
  }

  async close (): Promise<void> {
    this.closed = true
    this.sub.disconnect()
    this.reader.disconnect()
  }
}

/**
 * Whether the server publishes keyspace notifications for stream commands:
 * `K` (keyspace channel) and `t` (streams) or `A` (all classes).
 */
export function notificationsCoverStreams (flags: string): boolean {
  return flags.includes('K') && (flags.includes('t') || flags.includes('A'))
}

export class RedisSource implements StreamSource {
  private readonly cmd: Redis
  private reader: LiveReader | undefined
  private readonly watched = new Map<string, StreamId>()
  private listener: EntriesListener = () => {}
  /** The live reading strategy in use, once {@link start} has chosen it. */
  mode: 'block' | 'notify' | undefined
  private wakeFailed = false
  private readonly instance = randomBytes(6).toString('hex')
  state: SourceState = 'connecting'

  constructor (private readonly opts: RedisSourceOptions) {
    this.cmd = createClient(opts.url, { ...REQUEST_REPLY, connectionName: 'sse-gateway:commands', enableAutoPipelining: true })
    this.cmd.on('ready', () => {
      if (this.state !== 'ready') opts.logger.info('redis ready')
      this.state = 'ready'
    })
    this.cmd.on('error', (err: Error) => {
      if (this.state !== 'down') opts.logger.error({ err: errorSummary(err) }, 'redis unreachable')
      this.state = 'down'
    })
    this.cmd.on('end', () => { this.state = 'down' })
    this.cmd.on('reconnecting', () => { opts.onReconnect?.() })
  }

  /**
   * Chooses the live reader. With `auto`, asks the server whether keyspace
   * notifications cover streams (CONFIG GET, which managed Redis may refuse:
   * then sharded blocking reads, which work everywhere).
   */
  async start (): Promise<void> {
    if (this.reader !== undefined) return
    let mode: 'block' | 'notify' = this.opts.mode === 'notify' ? 'notify' : 'block'
    if (this.opts.mode === 'auto') {
      try {
        const reply = await withTimeout(this.cmd.config('GET', 'notify-keyspace-events') as Promise<unknown>, 3000)
        const flags = Array.isArray(reply) ? String(reply[1] ?? '') : ''
        if (notificationsCoverStreams(flags)) mode = 'notify'
      } catch (err) {
        this.opts.logger.info({ err: errorSummary(err) }, 'cannot read notify-keyspace-events; using blocking reads')
      }
    }
    this.mode = mode
    this.reader = mode === 'notify'
      ? new NotifyReader(this, (this.cmd.options.db ?? 0), this.opts)
      : new ShardedReader(this, this.instance, this.opts)
    for (const [key, id] of this.watched) this.reader.add(key, id)
    this.opts.logger.info({ mode }, mode === 'notify'
      ? 'live reads follow keyspace notifications (notify-keyspace-events covers streams)'
      : this.opts.mode === 'auto'
        ? 'live reads use sharded blocking XREAD; for many per-user channels enable keyspace notifications (CONFIG SET notify-keyspace-events Kt) so only changed keys are read'
        : 'live reads use sharded blocking XREAD')
  }

  /** Resolves when the command connection is ready (or rejects after `ms`). */
  async ready (ms = 10000): Promise<void> {
    if (this.state === 'ready') return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error(`Redis not ready after ${ms} ms`)) }, ms)
      const onReady = (): void => { cleanup(); resolve() }
      const cleanup = (): void => { clearTimeout(timer); this.cmd.off('ready', onReady) }
      this.cmd.on('ready', onReady)
    })
  }

  get watchedKeys (): number {
    return this.watched.size
  }

  setListener (listener: EntriesListener): void {
    this.listener = listener
  }

  /** @internal called by shards */
  emit (key: string, entries: RawEntry[]): void {
    this.listener(key, entries)
  }

  /** @internal called by shards: ends a shard's blocked read. */
  sendWake (wakeKey: string): void {
    this.cmd.multi()
      .xadd(wakeKey, 'MAXLEN', '1', '*', 'w', '1')
      .pexpire(wakeKey, 60000)
      .exec()
      .catch((err: unknown) => {
        if (!this.wakeFailed) {
          this.wakeFailed = true
          this.opts.logger.warn({ err: errorSummary(err) }, `cannot write the wake stream ${wakeKey}: new keys are read within READER_BLOCK_MS instead of at once (grant XADD on ${this.opts.keyPrefix}__gateway:*)`)
        }
      })
  }

  watch (key: string, afterId: StreamId): void {
    this.watched.set(key, afterId)
    this.reader?.add(key, afterId)
  }

  unwatch (key: string): void {
    if (!this.watched.delete(key)) return
    this.reader?.remove(key)
  }

  async tail (key: string): Promise<StreamId | undefined> {
    const r = await this.cmd.xrevrange(key, '+', '-', 'COUNT', 1)
    return r[0]?.[0]
  }

  async head (key: string): Promise<StreamId | undefined> {
    const r = await this.cmd.xrange(key, '-', '+', 'COUNT', 1)
    return r[0]?.[0]
  }

  async newestIds (key: string, count: number): Promise<StreamId[]> {
    // COUNT 0 answers nil, not an empty list.
    if (count <= 0) return []
    const r = await this.cmd.xrevrange(key, '+', '-', 'COUNT', count)
    return (r ?? []).map(e => e[0])
  }

  async range (key: string, afterId: StreamId, count: number): Promise<RawEntry[]> {
    if (count <= 0) return []
    const r = await this.cmd.xrange(key, `(${afterId}`, '+', 'COUNT', count)
    return (r ?? []).map(toEntry)
  }

  async entriesRemoved (key: string): Promise<number | undefined> {
    let info: unknown
    try {
      info = await this.cmd.xinfo('STREAM', key)
    } catch (err) {
      if (/no such key/i.test((err as Error).message)) return 0
      throw err
    }
    const flat = Array.isArray(info) ? info as unknown[] : []
    const field = (name: string): number | undefined => {
      const i = flat.indexOf(name)
      return i === -1 ? undefined : Number(flat[i + 1])
    }
    const added = field('entries-added')
    const length = field('length')
    return added === undefined || length === undefined ? undefined : added - length
  }

  async has (key: string, id: StreamId): Promise<boolean> {
    const r = await this.cmd.xrange(key, id, id)
    return r.length > 0
  }

  async close (): Promise<void> {
    await this.reader?.close()
    this.cmd.disconnect()
    this.state = 'down'
  }
}
