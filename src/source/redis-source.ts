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
  readonly count: number
  readonly logger: Logger
  /** Called after each XREAD with its round-trip time in seconds (metrics). */
  readonly onRead?: (seconds: number) => void
  readonly onReaderError?: () => void
  /** Called each time the command connection starts reconnecting. */
  readonly onReconnect?: () => void
}

type XReadReply = Array<[string, Array<[string, string[]]>]> | null

const RECONNECT_BASE_MS = 100
const RECONNECT_MAX_MS = 5000

function connectionOptions (extra: RedisOptions): RedisOptions {
  return {
    // RESP2 keeps XREAD/XRANGE replies in one known shape on every server.
    protocol: 2,
    lazyConnect: false,
    retryStrategy: (times: number) => Math.min(RECONNECT_BASE_MS * 2 ** Math.min(times, 10), RECONNECT_MAX_MS) + Math.floor(Math.random() * 100),
    ...extra,
  }
}

function createClient (url: string, extra: RedisOptions): Redis {
  if (url.startsWith('unix://')) return new Redis({ ...connectionOptions(extra), path: url.slice('unix://'.length) })
  return new Redis(url, connectionOptions(extra))
}

class Shard {
  readonly keys = new Map<string, StreamId>()
  private readonly conn: Redis
  private wakeId: StreamId = '0-0'
  private inFlight = false
  private wakeQueued = false
  private idle: (() => void) | undefined
  private closed = false
  private failing = false
  private lost: ((err: Error) => void) | undefined

  constructor (
    private readonly source: RedisSource,
    private readonly wakeKey: string,
    private readonly opts: RedisSourceOptions,
  ) {
    this.conn = createClient(opts.url, {
      connectionName: 'sse-gateway:reader',
      enableAutoPipelining: false,
      // Our loop re-issues the read with fresh explicit ids after a reconnect;
      // ioredis must not replay the old command on its own.
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: null,
      // Watchdog: a read that outlives BLOCK by this much resolves as empty.
      blockingTimeout: opts.blockMs + 5000,
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
    let backoff = RECONNECT_BASE_MS
    while (!this.closed) {
      if (this.keys.size === 0) {
        await new Promise<void>(resolve => { this.idle = resolve })
        continue
      }
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
      try {
        const read = (this.conn as unknown as { xread: (...a: string[]) => Promise<XReadReply> }).xread(...args)
        const lost = new Promise<never>((_resolve, reject) => { this.lost = reject })
        reply = await Promise.race([read, lost])
        this.lost = undefined
      } catch (err) {
        this.lost = undefined
        this.inFlight = false
        if (this.closed) return
        if (!this.failing) {
          this.failing = true
          this.opts.logger.error({ err: errorSummary(err) }, 'stream reader lost Redis; retrying with backoff, reading resumes from explicit ids')
        }
        this.opts.onReaderError?.()
        await sleep(backoff)
        backoff = Math.min(backoff * 2, RECONNECT_MAX_MS)
        continue
      }
      this.inFlight = false
      this.opts.onRead?.(Number(process.hrtime.bigint() - started) / 1e9)
      if (this.failing) {
        this.failing = false
        this.opts.logger.info('stream reader reading again')
      }
      backoff = RECONNECT_BASE_MS
      if (reply === null) continue
      for (const [key, entries] of reply) {
        if (key === this.wakeKey) {
          const last = entries[entries.length - 1]
          if (last !== undefined) this.wakeId = last[0]
          continue
        }
        const current = this.keys.get(key)
        if (current === undefined || entries.length === 0) continue
        // A key re-added during the read may have a newer position: keep only
        // what is after it, so nothing is reported twice.
        const fresh = compareIds((entries[0] as [string, string[]])[0], current) > 0
          ? entries
          : entries.filter(e => compareIds(e[0], current) > 0)
        if (fresh.length === 0) continue
        this.keys.set(key, (fresh[fresh.length - 1] as [string, string[]])[0])
        this.source.emit(key, fresh.map(toEntry))
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

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms).unref())
}

/** FNV-1a, for placing a key on a shard. */
function shardOf (key: string, shards: number): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0
  return h % shards
}

export class RedisSource implements StreamSource {
  private readonly cmd: Redis
  private readonly shards: Shard[]
  private readonly owner = new Map<string, Shard>()
  private listener: EntriesListener = () => {}
  private wakeFailed = false
  private readonly instance = randomBytes(6).toString('hex')
  state: SourceState = 'connecting'

  constructor (private readonly opts: RedisSourceOptions) {
    this.cmd = createClient(opts.url, {
      connectionName: 'sse-gateway:commands',
      enableAutoPipelining: true,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      commandTimeout: 10000,
    })
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
    this.shards = Array.from({ length: opts.shards }, (_, i) =>
      new Shard(this, `${opts.keyPrefix}__gateway:wake:${this.instance}:${i}`, opts))
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
    return this.owner.size
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
    let shard = this.owner.get(key)
    if (shard === undefined) {
      shard = this.shards[shardOf(key, this.shards.length)] as Shard
      this.owner.set(key, shard)
    }
    shard.add(key, afterId)
  }

  unwatch (key: string): void {
    const shard = this.owner.get(key)
    if (shard === undefined) return
    this.owner.delete(key)
    shard.remove(key)
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
    const r = await this.cmd.xrevrange(key, '+', '-', 'COUNT', count)
    return r.map(e => e[0])
  }

  async range (key: string, afterId: StreamId, count: number): Promise<RawEntry[]> {
    const r = await this.cmd.xrange(key, `(${afterId}`, '+', 'COUNT', count)
    return r.map(toEntry)
  }

  async has (key: string, id: StreamId): Promise<boolean> {
    const r = await this.cmd.xrange(key, id, id)
    return r.length > 0
  }

  async close (): Promise<void> {
    await Promise.all(this.shards.map(s => s.close()))
    this.cmd.disconnect()
    this.state = 'down'
  }
}
