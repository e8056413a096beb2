/**
 * The notify live reader: when the server publishes keyspace notifications
 * for streams (`notify-keyspace-events` with `K` and `t`), it subscribes to
 * the keyspace channel of each watched key and reads, with explicit ids,
 * only the keys that changed: Redis work per event, not per watched key.
 *
 * Notifications are at-most-once, so every key is read once right after it
 * is subscribed, and all of them again after the subscriber reconnects. The
 * reader's own probe stream (`<prefix>__gateway:probe:<instance>`) is read
 * only when its notification comes: a probe seen proves the whole path
 * (notifications published, delivered, and the read answering).
 */
import type { Redis } from 'ioredis'
import { ZERO_ID, compareIds, type StreamId } from '../core/stream-id.js'
import { advance, type LiveReader, type LiveReaderOptions, type ReaderHost, type XReadReply, type Xread } from './live-reader.js'
import { ProbeWaiters } from './probe-waiters.js'
import { ReaderHealth } from './reader-health.js'
import { REQUEST_REPLY } from './redis-connection.js'
import { ACL_RULES, isRefused } from './server-check.js'

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

/** Reads the watched keys that a keyspace notification says changed. */
export class NotifyReader implements LiveReader {
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
  private refusalTold = false
  private closed = false
  private readonly health: ReaderHealth
  private readonly flushNow = (): void => {
    this.scheduled = false
    this.flush()
  }

  private readonly probeKey: ProbeKey

  constructor (
    private readonly opts: LiveReaderOptions,
    private readonly host: ReaderHost
  ) {
    this.health = new ReaderHealth(opts)
    this.countText = String(opts.count)
    // A read fails during an outage (the loop backs off and marks its keys
    // again) instead of waiting forever.
    this.reader = opts.connection.connect({ ...REQUEST_REPLY, connectionName: 'sse-gateway:notify-reader', enableAutoPipelining: false })
    this.reader.on('error', () => { /* reported by the read loop */ })
    this.reader.on('close', () => { if (!this.closed) host.connectionLost() })
    this.channelPrefix = `__keyspace@${opts.db}__:`
    this.sub = opts.connection.connect({
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
    this.probeKey = new ProbeKey(`${opts.keyPrefix}__gateway:probe:${opts.instance}`, ZERO_ID)
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
      (err: unknown) => {
        this.markDirty(k)
        // Refused (ACL): no notification will come; the probe then times out
        // and the source falls back to blocking reads. Say which rule is missing.
        if (isRefused(err) && !this.refusalTold) {
          this.refusalTold = true
          const grant = ACL_RULES.notify(this.opts.keyPrefix)
          this.opts.logger.error({ err: { message: (err as Error).message }, grant }, `Redis refused SUBSCRIBE to keyspace channels: notifications cannot reach this reader, so live reads fall back to blocking XREAD once the probe misses (grant ${grant})`)
        }
      }
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
