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
 *
 * Live reads must prove they flow (see LiveHealth): every
 * READER_PROBE_INTERVAL_MS a probe entry is written where the live reader
 * must see it (each shard's wake stream; the notify reader's probe stream,
 * through a notification). A probe not seen in time makes the replica not
 * ready; in notify mode it also means notifications stopped (a restart lost
 * a `CONFIG SET notify-keyspace-events`), and the source falls back to
 * blocking reads. After every reconnect, before any live read, the source
 * checks what the server is (`redis_mode`), which reader suits it, and
 * whether it still holds the data this replica read (the epoch, below).
 *
 * The epoch: `<prefix>__gateway:epoch` holds a random token and the Redis
 * time at which it was written, set once per dataset (`SET NX`), checked
 * after every reconnect and read with every probe. A Redis that comes back
 * without it (restarted without persistence, flushed) may have lost
 * history: each watched key whose last read entry is gone (or that was
 * empty) starts over from 0-0 and its sessions are told (`gateway.gap`,
 * reason `reset`); a cursor older than the epoch's time is checked against
 * it at resume (see Session).
 */
import { randomBytes } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import { ZERO_ID, compareIds, type StreamId } from '../core/stream-id.js'
import type { StallReason } from '../core/protocol.js'
import { LiveHealth, errorSummary } from './live-health.js'
import type { EntriesListener, RawEntry, ResetListener, SourceState, StreamSource } from './stream-source.js'

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
  /**
   * Every this many ms a probe entry proves that live reads flow (see the
   * file header); 0 turns the probe off. Default 5000.
   */
  readonly probeIntervalMs?: number
  /** Live reads stopped flowing (metrics). */
  readonly onStall?: (reason: StallReason) => void
  /** The live reader changed: `to` is the new mode, `because` why (metrics). */
  readonly onModeChange?: (to: 'block' | 'notify', because: 'start' | 'server-setting' | 'probe-timeout') => void
  /** Redis lost the data this replica read (a new epoch): metrics. */
  readonly onDataLost?: () => void
}

type XReadReply = Array<[string, Array<[string, string[]]>]> | null

export type ReaderMode = 'auto' | 'block' | 'notify'

/** Reads watched keys live and reports their entries to its host. */
interface LiveReader {
  add (key: string, afterId: StreamId): void
  remove (key: string): void
  /** Resolves once an entry written now has been read live (a proof of flow). */
  probe (): Promise<void>
  /** Every key and the last id read live of it: where a reader that replaces this one starts. */
  positions (): Iterable<[string, StreamId]>
  close (): Promise<void>
}

/**
 * Probes waiting for the id of their entry to be read. Every waiter is kept
 * until an id at or past its own is read, so probes that overlap (one timed
 * out, the next under way) each settle.
 */
class ProbeWaiters {
  /** The newest id read of the probe stream. */
  private seen: StreamId = ZERO_ID
  private readonly waiting: Array<{ id: StreamId, resolve: () => void }> = []

  /** Resolves once `id` (or a later one) has been read. */
  async until (id: StreamId): Promise<void> {
    if (compareIds(this.seen, id) >= 0) return
    await new Promise<void>(resolve => { this.waiting.push({ id, resolve }) })
  }

  /** An id of the probe stream was read. */
  read (id: StreamId): void {
    if (compareIds(id, this.seen) <= 0) return
    this.seen = id
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const w = this.waiting[i] as { id: StreamId, resolve: () => void }
      if (compareIds(w.id, id) <= 0) {
        this.waiting.splice(i, 1)
        w.resolve()
      }
    }
  }

  get pending (): boolean {
    return this.waiting.length > 0
  }
}

/** What a live reader gets from the source: callbacks, not the source. */
interface ReaderHost {
  readonly opts: RedisSourceOptions
  readonly health: LiveHealth
  /** Entries of a watched key, in order (dropped once this reader is replaced). */
  emit (key: string, entries: RawEntry[]): void
  /** Settled while live reads may go on; pending after a reconnect until the server is checked. */
  gate (): Promise<void> | undefined
  /** Any connection to Redis closed: Redis may have restarted. */
  connectionLost (): void
  /** Appends to `key` (a wake or probe stream, MAXLEN 1, short expiry): its id. */
  append (key: string): Promise<StreamId>
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

  constructor (private readonly host: ReaderHost) {}

  /** Records a failed read; resolves when it is time to try again. */
  async failed (err: unknown): Promise<void> {
    if (!this.failing) {
      this.failing = true
      this.host.opts.logger.error({ err: errorSummary(err) }, 'stream reader lost Redis; retrying with backoff, reading resumes from explicit ids')
    }
    this.host.health.readerFailed(this, err)
    this.host.opts.onReaderError?.()
    await sleep(this.backoff)
    this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX_MS)
  }

  /** Records a read that answered, with its round trip since `started`. */
  succeeded (started: bigint): void {
    this.host.opts.onRead?.(Number(process.hrtime.bigint() - started) / 1e9)
    if (this.failing) {
      this.failing = false
      this.host.opts.logger.info('stream reader reading again')
      this.host.health.readerSucceeded(this)
    }
    this.backoff = RECONNECT_BASE_MS
  }

  forget (): void {
    this.host.health.forget(this)
  }
}

/**
 * Emits the entries of a read of `key` that follow `current` (a read can
 * repeat ones already seen, and a key re-added during the read may have a
 * newer position) and returns the new position, or undefined when nothing
 * was new.
 */
function advance (host: ReaderHost, key: string, current: StreamId, entries: Array<[string, string[]]>): StreamId | undefined {
  const first = entries[0]
  if (first === undefined) return undefined
  const fresh = compareIds(first[0], current) > 0 ? entries : entries.filter(e => compareIds(e[0], current) > 0)
  const last = fresh[fresh.length - 1]
  if (last === undefined) return undefined
  host.emit(key, fresh.map(toEntry))
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
  /** Probes waiting for their wake entry to be read. */
  private readonly probes = new ProbeWaiters()
  /** Probes under way: an idle shard reads its wake stream for them. */
  private probing = 0

  constructor (
    private readonly host: ReaderHost,
    private readonly wakeKey: string,
    private readonly pacing: Pacing
  ) {
    const opts = host.opts
    this.health = new ReaderHealth(host)
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
      if (!this.closed) host.connectionLost()
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

  /**
   * Writes an entry to this shard's wake stream and resolves once the read
   * loop has read it: the shard's connection answers and its loop turns.
   * An idle shard (no keys) reads its wake stream alone for it.
   */
  async probe (): Promise<void> {
    this.probing++
    try {
      this.resumeIfIdle()
      await this.probes.until(await this.host.append(this.wakeKey))
    } finally {
      this.probing--
    }
  }

  positions (): Iterable<[string, StreamId]> {
    return this.keys
  }

  private resumeIfIdle (): boolean {
    const resume = this.idle
    if (resume === undefined) return false
    this.idle = undefined
    resume()
    return true
  }

  private wake (): void {
    if (this.resumeIfIdle()) return
    if (!this.inFlight || this.wakeQueued) return
    this.wakeQueued = true
    // Coalesce every key added in this tick into one wake.
    process.nextTick(() => {
      this.host.append(this.wakeKey).catch(() => { /* logged once by the source */ })
    })
  }

  private async loop (): Promise<void> {
    while (!this.closed) {
      if (this.keys.size === 0 && this.probing === 0) {
        // Nothing to read, so nothing can fail: an earlier failure no longer
        // holds readiness (the next read, if any, tells again).
        this.health.forget()
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
        if (this.keys.size === 0 && this.probing === 0) continue
      }
      // After a reconnect: no read until the source has checked the server
      // (right before the read, with the positions as the check left them).
      const gate = this.host.gate()
      if (gate !== undefined) {
        await gate
        continue
      }
      this.lastSentAt = performance.now()
      const opts = this.host.opts
      const args: string[] = ['COUNT', String(opts.count), 'BLOCK', String(opts.blockMs), 'STREAMS']
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
        // connection (a silent network failure, a frozen server): drop it
        // and reconnect.
        watchdog = setTimeout(() => {
          this.conn.disconnect(true)
          this.lost?.(new Error(`XREAD gave no answer within READER_BLOCK_MS + ${WATCHDOG_GRACE_MS} ms`))
        }, opts.blockMs + WATCHDOG_GRACE_MS)
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
          if (last !== undefined) {
            this.wakeId = last[0]
            this.probes.read(last[0])
          }
          continue
        }
        const current = this.keys.get(key)
        if (current === undefined) continue
        const next = advance(this.host, key, current, entries)
        if (next !== undefined) this.keys.set(key, next)
      }
    }
  }

  async close (): Promise<void> {
    this.closed = true
    this.health.forget()
    this.resumeIfIdle()
    this.conn.disconnect()
  }
}

function toEntry (e: [string, string[]]): RawEntry {
  return { id: e[0], fields: e[1] }
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
    private readonly logger: Logger
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

  constructor (host: ReaderHost, instance: string) {
    const opts = host.opts
    const pacing = new Pacing(opts.maxKeysPerSecond ?? 0, opts.shards, opts.logger)
    this.shards = Array.from({ length: opts.shards }, (_, i) =>
      new Shard(host, `${opts.keyPrefix}__gateway:wake:${instance}:${i}`, pacing))
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

  /** Every shard reads an entry written to its wake stream now. */
  async probe (): Promise<void> {
    await Promise.all(this.shards.map(s => s.probe()))
  }

  * positions (): Iterable<[string, StreamId]> {
    for (const shard of this.shards) yield * shard.positions()
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

/** The notify reader's own probe stream: read like a watched key, never emitted. */
class ProbeKey extends NotifyKey {
  readonly waiters = new ProbeWaiters()
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
  private readonly opts: RedisSourceOptions
  private readonly flushNow = (): void => {
    this.scheduled = false
    this.flush()
  }

  private readonly probeKey: ProbeKey

  constructor (
    private readonly host: ReaderHost,
    db: number,
    instance: string
  ) {
    const opts = host.opts
    this.opts = opts
    this.health = new ReaderHealth(host)
    this.countText = String(opts.count)
    // A read fails during an outage (the loop backs off and marks its keys
    // again) instead of waiting forever.
    this.reader = createClient(opts.url, { ...REQUEST_REPLY, connectionName: 'sse-gateway:notify-reader', enableAutoPipelining: false })
    this.reader.on('error', () => { /* reported by the read loop */ })
    this.reader.on('close', () => { if (!this.closed) host.connectionLost() })
    this.channelPrefix = `__keyspace@${db}__:`
    this.sub = createClient(opts.url, {
      connectionName: 'sse-gateway:notify',
      maxRetriesPerRequest: null,
      // Our own resubscribe (below): ioredis's leaves its promise unhandled,
      // and a reader closed during it (a fallback right after a reconnect)
      // would end the process with an unhandled rejection.
      autoResubscribe: false,
    })
    this.sub.on('error', () => { /* the command connection reports outages */ })
    this.sub.on('close', () => { if (!this.closed) host.connectionLost() })
    let connectedBefore = false
    this.sub.on('ready', () => {
      if (connectedBefore && !this.closed) {
        // A new connection has no subscriptions: subscribe again, then read
        // every key (notifications sent while we were away are lost).
        const channels = [...this.keys.keys()].map(key => this.channelPrefix + key)
        this.sub.subscribe(...channels).then(
          () => { for (const k of this.keys.values()) this.markDirty(k) },
          () => { /* closed or lost again: the next ready subscribes again */ }
        )
      }
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
    // Read only when its notification comes: a probe proves the whole path.
    this.probeKey = new ProbeKey(`${opts.keyPrefix}__gateway:probe:${instance}`, ZERO_ID)
    this.subscribe(this.probeKey)
  }

  /**
   * Writes a probe entry and resolves once a notification made the reader
   * read it: notifications arrive and reads answer.
   */
  async probe (): Promise<void> {
    await this.probeKey.waiters.until(await this.host.append(this.probeKey.key))
  }

  * positions (): Iterable<[string, StreamId]> {
    for (const k of this.keys.values()) if (k !== this.probeKey) yield [k.key, k.afterId]
  }

  add (key: string, afterId: StreamId): void {
    const known = this.keys.get(key)
    if (known !== undefined) {
      known.afterId = afterId
      this.markDirty(known)
      return
    }
    this.subscribe(new NotifyKey(key, afterId))
  }

  private subscribe (k: NotifyKey): void {
    this.keys.set(k.key, k)
    // Entries written before the subscription took effect sent no
    // notification: read the key once it is in place.
    this.sub.subscribe(this.channelPrefix + k.key).then(
      () => { this.markDirty(k) },
      () => { this.markDirty(k) }
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
    // After a reconnect: no read until the source has checked the server;
    // the ids are taken after it (a reset moves them back to 0-0).
    const gate = this.host.gate()
    if (gate !== undefined) await gate
    if (this.closed) return
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
      // Every key of the failed read left meanwhile: nothing will read, so
      // nothing can succeed; the failure no longer holds readiness.
      if (this.dirty.length === 0) this.health.forget()
      return
    }
    this.health.succeeded(started)
    for (const k of batch) k.reading = false
    for (const [key, entries] of reply ?? []) {
      const k = this.keys.get(key)
      if (k === undefined) continue
      if (k === this.probeKey) {
        this.probed(entries)
        continue
      }
      // The key's own string: the reply's copy dies young.
      k.afterId = advance(this.host, k.key, k.afterId, entries) ?? k.afterId
      // A full page: there may be more.
      if (entries.length >= this.opts.count) this.markDirty(k)
    }
    // Notifications that arrived during the read.
    if (this.dirty.length > 0) this.scheduleFlush()
  }

  private probed (entries: Array<[string, string[]]>): void {
    const k = this.probeKey
    const last = entries[entries.length - 1]
    if (last === undefined) return
    if (compareIds(last[0], k.afterId) > 0) k.afterId = last[0]
    k.waiters.read(last[0])
  }

  async close (): Promise<void> {
    this.closed = true
    this.health.forget()
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

const DEFAULT_PROBE_INTERVAL_MS = 5000

/** Probes in a row that must go unseen before live reads count as stopped. */
const PROBE_MISSES = 2

/** Errors that retrying the same command will not mend: no such command, no permission, a read-only replica. */
function isPermanent (err: unknown): boolean {
  return /unknown command|NOPERM|READONLY|syntax error|wrong number of arguments/i.test((err as Error)?.message ?? '')
}

export class RedisSource implements StreamSource {
  private readonly cmd: Redis
  private reader: LiveReader | undefined
  /** Watched keys and the id they were watched from. */
  private readonly watched = new Map<string, StreamId>()
  private listener: EntriesListener = () => {}
  private resetListener: ResetListener = () => {}
  /** The live reading strategy in use, once {@link start} has chosen it. */
  mode: 'block' | 'notify' | undefined
  private wakeFailed = false
  private epochFailed = false
  private readonly instance = randomBytes(6).toString('hex')
  state: SourceState = 'connecting'
  readonly health: LiveHealth
  private readonly epochKey: string
  /** The epoch this replica read under (the key's whole value), once known. */
  private epoch: string | undefined
  /** Redis time (ms) at which the current dataset's epoch was written. */
  epochMs: number | undefined
  /** Pending while the server is being checked after a (re)connect: live reads wait. */
  private gated: Promise<void> | undefined
  private openGate: (() => void) | undefined
  private checking = false
  /** Connections lost so far: a loss during a check makes it run again. */
  private losses = 0
  /** The reader mode the last server check chose. */
  private checkedMode: 'block' | 'notify' | undefined
  private closed = false
  private probeTimer: NodeJS.Timeout | undefined
  /** Bumped to retire a probe loop when a new one starts. */
  private probeRound = 0
  private probeMisses = 0
  /** Notifications did not arrive although the setting claimed them (until the next reconnect). */
  private notificationsFailed = false
  private readonly probeIntervalMs: number

  constructor (private readonly opts: RedisSourceOptions) {
    this.health = new LiveHealth({ logger: opts.logger, onStall: opts.onStall })
    this.epochKey = `${opts.keyPrefix}__gateway:epoch`
    this.probeIntervalMs = opts.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS
    this.cmd = createClient(opts.url, { ...REQUEST_REPLY, connectionName: 'sse-gateway:commands', enableAutoPipelining: true })
    this.cmd.on('ready', () => {
      if (this.state !== 'ready') opts.logger.info('redis ready')
      this.state = 'ready'
    })
    this.cmd.on('error', (err: Error) => {
      if (this.state !== 'down') opts.logger.error({ err: errorSummary(err) }, 'redis unreachable')
      this.state = 'down'
    })
    this.cmd.on('close', () => { this.connectionLost() })
    this.cmd.on('end', () => { this.state = 'down' })
    this.cmd.on('reconnecting', () => { opts.onReconnect?.() })
  }

  /** Why live reads do not flow now, or undefined when they do (readiness). */
  get liveReason (): string | undefined {
    return this.health.reason
  }

  /**
   * Checks the server, chooses the live reader and starts the proof of flow.
   * With `auto`, the reader follows keyspace notifications when the server
   * has them on for streams (CONFIG GET, which managed Redis may refuse:
   * then sharded blocking reads, which work everywhere). A Redis that does
   * not answer within 3 s does not hold the start: the check runs when it
   * does, and live reads wait for it.
   */
  async start (): Promise<void> {
    if (this.reader !== undefined) return
    // As after a reconnect: the first server check, with live reads held.
    this.connectionLost()
    try {
      await withTimeout(this.gated ?? Promise.resolve(), 3000)
    } catch {
      this.opts.logger.info('Redis does not answer yet; live reads start once it does and the server is checked')
    }
    this.useReader(this.checkedMode ?? (this.opts.mode === 'notify' ? 'notify' : 'block'), 'start')
    this.startProbing()
  }

  /**
   * After a (re)connect, before any live read: what the server is, whether
   * it still holds the data read so far (the epoch), and which live reader
   * suits it. Resolves with the reader mode to use.
   */
  private async checkServer (): Promise<'block' | 'notify'> {
    let serverMode: string | undefined
    try {
      const info = String(await this.cmd.info('server'))
      serverMode = /^redis_mode:(\S+)/m.exec(info)?.[1]
    } catch (err) {
      // INFO may be withheld (ACLs): the probe and the reads still tell.
      if (!isPermanent(err)) throw err
      if (/unknown command/i.test((err as Error).message)) serverMode = 'unknown'
    }
    this.health.serverMode(serverMode)
    // A Cluster node or a Sentinel: not readable by this version, and not
    // ready (LiveHealth says why); nothing more to check.
    if (serverMode !== undefined && serverMode !== 'standalone') return 'block'
    await this.checkEpoch()
    if (this.opts.mode === 'block') return 'block'
    const wanted = await this.modeBySetting()
    // Unknown (CONFIG refused): `notify` keeps what it has (notify at start;
    // the probe tells if notifications do not come), `auto` reads by blocking.
    return wanted ?? (this.opts.mode === 'notify' ? this.mode ?? 'notify' : 'block')
  }

  /**
   * The reader the server's `notify-keyspace-events` calls for, asked for or
   * not (a server that does not publish them cannot be read by
   * notification); undefined where CONFIG is refused (managed Redis).
   */
  private async modeBySetting (): Promise<'block' | 'notify' | undefined> {
    try {
      const reply = await (this.cmd.config('GET', 'notify-keyspace-events') as Promise<unknown>)
      return notificationsCoverStreams(Array.isArray(reply) ? String(reply[1] ?? '') : '') ? 'notify' : 'block'
    } catch (err) {
      if (!isPermanent(err)) throw err
      if (this.mode === undefined && this.opts.mode === 'auto') this.opts.logger.info({ err: errorSummary(err) }, 'cannot read notify-keyspace-events; using blocking reads')
      return undefined
    }
  }

  /**
   * Between reconnects, with each probe: the reader follows the setting both
   * ways (an operator who turns notifications off, or back on with CONFIG
   * SET, needs no restart). Not back to notify after notifications failed to
   * arrive although the setting claimed them: that waits for a reconnect.
   */
  private async followSetting (): Promise<void> {
    if (this.opts.mode === 'block' || this.reader === undefined) return
    const wanted = await this.modeBySetting().catch(() => undefined)
    if (wanted === undefined || wanted === this.mode || this.gated !== undefined || this.closed) return
    if (wanted === 'notify' && this.notificationsFailed) return
    this.useReader(wanted, 'server-setting')
  }

  /**
   * Sets the epoch if the dataset has none (`SET NX`, then `GET`: Redis 6.2
   * has no `SET NX GET`) and compares it with the one this replica read
   * under. A different one (or none where one was) means Redis may have lost
   * data: each watched key whose last read entry is gone, or that was still
   * empty, starts over from 0-0, and its sessions are told. A key whose
   * entry is still there lost nothing (the epoch alone was evicted or
   * deleted): its sessions read on, with no duplicate.
   */
  private async checkEpoch (): Promise<void> {
    let value: string | null
    try {
      // Redis's clock, not ours: cursors hold Redis ids, and are compared with it.
      const [seconds, micros] = await this.cmd.time() as [string | number, string | number]
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
      await this.cmd.set(this.epochKey, `${randomBytes(8).toString('hex')}:${now}`, 'NX')
      value = await this.cmd.get(this.epochKey)
    } catch (err) {
      if (!isPermanent(err)) throw err
      if (!this.epochFailed) {
        this.epochFailed = true
        this.opts.logger.error({ err: errorSummary(err), key: this.epochKey }, 'cannot keep the epoch, so a Redis that loses its data (a restart without persistence) cannot be told to clients: grant TIME, SET and GET on the key, on a primary')
      }
      return
    }
    this.epochFailed = false
    const epoch = value ?? ''
    const colon = epoch.indexOf(':')
    const ms = Number(epoch.slice(colon + 1))
    const epochMs = colon > 0 && Number.isFinite(ms) ? ms : undefined
    const before = this.epoch
    if (before !== undefined && before !== epoch) {
      // Until the resets are done the old epoch stays: a check that fails
      // half-way runs again and still sees the change.
      const lost: string[] = []
      await Promise.all([...(this.reader?.positions() ?? this.watched)].map(async ([key, id]) => {
        if (id === ZERO_ID || !(await this.has(key, id))) lost.push(key)
      }))
      // Keys whose last session left during those reads are not watched again.
      const reset = lost.filter(key => this.watched.has(key))
      if (reset.length > 0) {
        this.opts.logger.error({ key: this.epochKey, streams: this.watched.size, lost: reset.length }, 'Redis lost its data (its epoch changed: restarted without persistence, flushed, or replaced): the streams whose last read entry is gone start over, and their clients are told with gateway.gap (reason reset)')
        this.opts.onDataLost?.()
        for (const key of reset) {
          this.watched.set(key, ZERO_ID)
          this.reader?.add(key, ZERO_ID)
        }
        this.resetListener(reset)
      } else {
        this.opts.logger.info({ key: this.epochKey, streams: this.watched.size }, 'the epoch key was replaced (evicted or deleted), but every stream still holds its last read entry: nothing was lost')
      }
    }
    this.epoch = epoch
    this.epochMs = epochMs
  }

  /** Any connection dropped: Redis may have restarted; no live read until the server is checked again. */
  private connectionLost (): void {
    if (this.closed) return
    this.losses++
    if (this.gated === undefined) this.gated = new Promise<void>(resolve => { this.openGate = resolve })
    if (!this.checking) void this.recheck()
  }

  /** Runs the server check until it passes with no connection lost meanwhile, then lets live reads go on. */
  private async recheck (): Promise<void> {
    this.checking = true
    // The first check at start-up is not a stall: the replica is not serving yet.
    const first = this.reader === undefined
    if (!first) this.health.checking(true)
    let backoff = RECONNECT_BASE_MS
    let logged = false
    try {
      while (!this.closed) {
        const losses = this.losses
        if (this.state !== 'ready') {
          await this.ready(1000).catch(() => {})
          continue
        }
        try {
          const mode = await this.checkServer()
          if (this.losses !== losses) continue
          this.checkedMode = mode
          this.notificationsFailed = false
          if (this.reader !== undefined && mode !== this.mode) this.useReader(mode, 'server-setting')
          break
        } catch (err) {
          if (this.closed) return
          // Worth a line when connected: an outage is reported already.
          if (!logged && this.state === 'ready') {
            logged = true
            this.opts.logger.warn({ err: errorSummary(err) }, 'cannot check the Redis server after a reconnect; live reads wait, retrying')
          }
          await sleep(backoff)
          backoff = Math.min(backoff * 2, RECONNECT_MAX_MS)
        }
      }
    } finally {
      this.checking = false
      this.health.checking(false)
      const open = this.openGate
      this.gated = undefined
      this.openGate = undefined
      open?.()
    }
    // Prove the flow again now rather than at the next interval: readiness
    // comes back as soon as reads do.
    if (!this.closed && this.reader !== undefined) this.startProbing()
  }

  /** Replaces the live reader (or makes the first): the new one starts where the old one got to. */
  private useReader (mode: 'block' | 'notify', because: 'start' | 'server-setting' | 'probe-timeout'): void {
    const old = this.reader
    const previous = this.mode
    const reader: LiveReader = mode === 'notify'
      ? new NotifyReader(this.hostFor(() => this.reader === reader), this.cmd.options.db ?? 0, this.instance)
      : new ShardedReader(this.hostFor(() => this.reader === reader), this.instance)
    const positions = new Map(old?.positions() ?? this.watched)
    this.reader = reader
    this.mode = mode
    for (const key of this.watched.keys()) reader.add(key, positions.get(key) ?? this.watched.get(key) as StreamId)
    if (old !== undefined) {
      void old.close()
      const message = because === 'probe-timeout'
        ? 'keyspace notifications stopped arriving (was notify-keyspace-events lost in a restart?): live reads now use sharded blocking XREAD'
        : `live reads now use ${mode === 'notify' ? 'keyspace notifications' : 'sharded blocking XREAD'}: the server's notify-keyspace-events ${mode === 'notify' ? 'covers' : 'no longer covers'} streams`
      if (mode === 'block') this.opts.logger.error({ from: previous, to: mode, because }, message)
      else this.opts.logger.info({ from: previous, to: mode, because }, message)
    } else {
      this.opts.logger.info({ mode }, mode === 'notify'
        ? 'live reads follow keyspace notifications (notify-keyspace-events covers streams)'
        : this.opts.mode === 'auto'
          ? 'live reads use sharded blocking XREAD; for many per-user channels enable keyspace notifications (CONFIG SET notify-keyspace-events Kt) so only changed keys are read'
          : 'live reads use sharded blocking XREAD')
    }
    this.opts.onModeChange?.(mode, because)
  }

  private hostFor (current: () => boolean): ReaderHost {
    return {
      opts: this.opts,
      health: this.health,
      emit: (key, entries) => {
        // A replaced reader's last reads are dropped: the new one reads them again.
        if (current()) this.listener(key, entries)
      },
      gate: () => this.gated,
      connectionLost: () => { if (current()) this.connectionLost() },
      append: async key => await this.append(key),
    }
  }

  /**
   * The proof of flow, every probeIntervalMs: the live reader must read an
   * entry written now within the interval (plus the blocking reader's pacing
   * wait). PROBE_MISSES in a row make live reads count as stopped; in notify
   * mode, while the reads themselves answer, that means notifications
   * stopped: fall back to blocking reads. Each probe also rereads the epoch,
   * so a Redis flushed without a reconnect is caught too.
   */
  private startProbing (): void {
    if (this.probeIntervalMs <= 0 || this.closed) return
    clearTimeout(this.probeTimer)
    const round = ++this.probeRound
    this.scheduleProbe(round, 0)
  }

  private scheduleProbe (round: number, delayMs: number): void {
    if (this.closed || round !== this.probeRound) return
    this.probeTimer = setTimeout(() => { void this.runProbe(round) }, delayMs)
    this.probeTimer.unref()
  }

  private async runProbe (round: number): Promise<void> {
    const reader = this.reader
    if (reader === undefined || this.closed) return
    const current = (): boolean => round === this.probeRound && this.reader === reader && !this.closed
    if (this.state !== 'ready' || this.gated !== undefined) {
      // Not connected, or being checked: readiness already says so.
      this.scheduleProbe(round, this.probeIntervalMs)
      return
    }
    // A blocked read wakes at once for the probe, but a shard may first wait
    // out its share of the key budget (Pacing): about watched keys / budget.
    const budget = this.opts.maxKeysPerSecond ?? 0
    const pacingMs = this.mode === 'block' && budget > 0 ? this.watched.size * 1000 / budget : 0
    const timeoutMs = Math.max(this.probeIntervalMs, 1000) + pacingMs
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>(resolve => {
      timer = setTimeout(() => { resolve('timeout') }, timeoutMs)
      timer.unref()
    })
    try {
      const [outcome, epoch] = await Promise.all([
        Promise.race([reader.probe().then(() => 'seen' as const), timedOut]),
        this.epochFailed ? Promise.resolve(this.epoch) : this.cmd.get(this.epochKey).catch(() => this.epoch),
      ])
      if (!current()) return
      if (epoch !== this.epoch && this.epoch !== undefined) {
        // Flushed (or the epoch deleted) with no reconnect: check as after one.
        this.connectionLost()
        return
      }
      if (outcome === 'seen') {
        this.probeMisses = 0
        this.health.probed(undefined)
      } else if (this.gated === undefined && this.state === 'ready' && ++this.probeMisses >= PROBE_MISSES) {
        this.health.probed('probe-timeout')
        if (this.mode === 'notify' && this.health.reason === 'probe-timeout') {
          this.probeMisses = 0
          this.notificationsFailed = true
          this.useReader('block', 'probe-timeout')
        }
      }
    } catch (err) {
      if (!current()) return
      if (/NOPERM/.test((err as Error).message)) {
        // The probe needs XADD under the prefix, as the wake streams do.
        this.opts.logger.warn({ err: errorSummary(err) }, `cannot write the probe stream: readiness cannot prove that live reads flow (grant XADD on ${this.opts.keyPrefix}__gateway:*)`)
        this.health.probed(undefined)
        return
      }
      // Not connected: the connection state already says so.
      if (this.state === 'ready' && this.gated === undefined) this.health.probed('probe-error', err)
    } finally {
      clearTimeout(timer)
    }
    if (current()) await this.followSetting()
    this.scheduleProbe(round, this.probeIntervalMs)
  }

  /** Resolves when the command connection is ready (or rejects after `ms`). */
  async ready (ms = 10000): Promise<void> {
    if (this.state === 'ready') return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error(`Redis not ready after ${ms} ms`)) }, ms)
      timer.unref()
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

  setResetListener (listener: ResetListener): void {
    this.resetListener = listener
  }

  /** XADD to a wake or probe stream (MAXLEN 1, expiring): its id. */
  private async append (key: string): Promise<StreamId> {
    try {
      const reply = await this.cmd.multi()
        .xadd(key, 'MAXLEN', '1', '*', 'w', '1')
        .pexpire(key, 60000)
        .exec()
      const [err, id] = reply?.[0] ?? [new Error('no reply'), undefined]
      if (err !== null && err !== undefined) throw err
      return id as StreamId
    } catch (err) {
      if (!this.wakeFailed && /NOPERM/.test((err as Error).message)) {
        this.wakeFailed = true
        this.opts.logger.warn({ err: errorSummary(err) }, `cannot write the wake stream ${key}: new keys are read within READER_BLOCK_MS instead of at once (grant XADD on ${this.opts.keyPrefix}__gateway:*)`)
      }
      throw err
    }
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
    this.closed = true
    clearTimeout(this.probeTimer)
    const open = this.openGate
    this.gated = undefined
    open?.()
    await this.reader?.close()
    this.cmd.disconnect()
    this.state = 'down'
  }
}
