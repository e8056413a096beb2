/**
 * The blocking live reader: keys are spread over a few shards; each shard
 * owns one dedicated blocking connection running
 * `XREAD COUNT c BLOCK b STREAMS ...` with an explicit last id per key
 * (never `$`: re-sent after a reconnect it skips what was written during the
 * outage). It needs nothing of the server but XREAD and XADD, so it reads
 * any standalone Redis.
 *
 * A key added while its shard is blocked must be read at once, not after the
 * BLOCK timeout. `CLIENT UNBLOCK` needs admin rights that managed Redis often
 * withholds, so every shard also reads its own wake stream
 * (`<prefix>__gateway:wake:<instance>:<shard>`); an XADD to it ends the
 * blocked read, and the next read lists the new key. That needs only write
 * access under the key prefix. The same stream carries the probe: a shard
 * proves it flows by reading an entry written to it now.
 *
 * Every blocking XREAD lists all of its shard's keys, and Redis pays for each
 * listed key on every call: right for a few busy keys (topics), wrong for
 * thousands of quiet ones (per-user channels, for which see notify-reader.ts).
 * READER_BLOCK_MAX_KEYS_PER_SECOND caps that work (Pacing).
 */
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { fnv1a } from '../core/hash.js'
import type { StreamId } from '../core/stream-id.js'
import { advance, sleep, type LiveReader, type LiveReaderOptions, type ReaderHost, type XReadReply, type Xread } from './live-reader.js'
import { ProbeWaiters } from './probe-waiters.js'
import { ReaderHealth } from './reader-health.js'

/** A read that outlives BLOCK by this much (ms) is on a dead connection. */
const WATCHDOG_GRACE_MS = 5000

/** One blocking connection and the keys it reads. */
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
    private readonly opts: LiveReaderOptions,
    private readonly host: ReaderHost,
    private readonly wakeKey: string,
    private readonly pacing: Pacing
  ) {
    this.health = new ReaderHealth(opts)
    this.conn = opts.connection.connect({
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
      const opts = this.opts
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

/** The shard a key is read by: stable for the key, spread over the shards. */
function shardOf (key: string, shards: number): number {
  return fnv1a(key) % shards
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

/** The sharded blocking reader: READER_SHARDS blocking connections, each reading a share of the keys. */
export class ShardedReader implements LiveReader {
  private readonly shards: Shard[]
  private readonly owner = new Map<string, Shard>()

  constructor (opts: LiveReaderOptions, host: ReaderHost) {
    const pacing = new Pacing(opts.maxKeysPerSecond, opts.shards, opts.logger)
    this.shards = Array.from({ length: opts.shards }, (_, i) =>
      new Shard(opts, host, `${opts.keyPrefix}__gateway:wake:${opts.instance}:${i}`, pacing))
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
