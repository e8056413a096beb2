/**
 * What the readers fed by the server's own signals share (notify-reader.ts:
 * keyspace notifications; tracking-reader.ts: client-tracking
 * invalidations): a key is marked changed, and every key marked in one turn
 * of the event loop is read with one non-blocking XREAD per batch, each from
 * its last id. Redis work per event, not per watched key. The reader's own
 * probe stream is one more such key, read only when its signal comes, so a
 * probe seen proves the whole path (signal sent, delivered, read answering).
 *
 * The feed (what marks keys) is the reader's; this is the read loop.
 */
import type { Redis } from 'ioredis'
import { ZERO_ID, compareIds, type StreamId } from '../core/stream-id.js'
import { advance, type LiveReaderOptions, type ReaderHost, type XReadReply, type Xread } from './live-reader.js'
import { ProbeWaiters } from './probe-waiters.js'
import { DirtyQueue } from './dirty-queue.js'
import { ReaderHealth } from './reader-health.js'

/** Keys per XREAD. */
export const CHANGED_KEYS_BATCH = 256

/**
 * A key a reader follows. Its flags and the queue of dirty keys replace two
 * Sets of key strings: a Set's table is reallocated as it grows and shrinks
 * with every burst, and both the tables and the keys in flight were still
 * alive at young-generation collections, so each one copied and promoted
 * them (the per-user p99 tail, bench/RESULTS.md, Q2). Objects that live as
 * long as the key do not.
 */
export class WatchedKey {
  dirty = false
  reading = false
  removed = false
  constructor (readonly key: string, public afterId: StreamId) {}
}

/** The reader's own probe stream: read like a watched key, never emitted. */
export class ProbeKey extends WatchedKey {
  readonly waiters = new ProbeWaiters()
}

/** The keys of one reader, and the loop that reads those marked changed. */
export class ChangedKeys {
  readonly keys = new Map<string, WatchedKey>()
  readonly probeKey: ProbeKey
  readonly health: ReaderHealth
  /** Keys to read, each once; read in batches of CHANGED_KEYS_BATCH. */
  private readonly queue = new DirtyQueue<WatchedKey>(this)
  /** The batch being gathered during a pass of the queue. */
  private batch: WatchedKey[] = []
  private readonly countText: string
  private closed = false

  /**
   * @param reader the connection the XREADs go on (a dedicated one: behind
   * the auto-pipelined command connection the replies' strings outlived
   * several young-generation collections, the per-user p99 tail,
   * bench/RESULTS.md, Q2)
   * @param gate settled (or undefined) while reads may go on
   */
  constructor (
    private readonly opts: LiveReaderOptions,
    private readonly host: ReaderHost,
    private readonly reader: Redis,
    private readonly gate: () => Promise<void> | undefined
  ) {
    this.health = new ReaderHealth(opts)
    this.countText = String(opts.count)
    this.probeKey = new ProbeKey(`${opts.keyPrefix}__gateway:probe:${opts.instance}`, ZERO_ID)
    this.keys.set(this.probeKey.key, this.probeKey)
  }

  /** Writes a probe entry and resolves once its signal made the reader read it. */
  async probe (): Promise<void> {
    await this.probeKey.waiters.until(await this.host.append(this.probeKey.key))
  }

  * positions (): Iterable<[string, StreamId]> {
    for (const k of this.keys.values()) if (k !== this.probeKey) yield [k.key, k.afterId]
  }

  /**
   * Follows `key` from `afterId`: a known key is marked to be read from
   * there; a new one is added unmarked (its feed must be in place before its
   * first read, which the caller marks).
   */
  upsert (key: string, afterId: StreamId): { k: WatchedKey, known: boolean } {
    const known = this.keys.get(key)
    if (known !== undefined) {
      known.afterId = afterId
      this.markDirty(known)
      return { k: known, known: true }
    }
    const k = new WatchedKey(key, afterId)
    this.keys.set(key, k)
    return { k, known: false }
  }

  /** Forgets `key`; true when it was followed. */
  remove (key: string): boolean {
    const k = this.keys.get(key)
    if (k === undefined || k === this.probeKey) return false
    this.keys.delete(key)
    k.removed = true
    return true
  }

  /** The key named `key` changed (ignored when not followed). */
  changed (key: string): void {
    const k = this.keys.get(key)
    if (k !== undefined) this.markDirty(k)
  }

  /** Any key may have changed (a feed lost and back, a flushed table): read them all. */
  markAll (): void {
    for (const k of this.keys.values()) this.markDirty(k)
  }

  markDirty (k: WatchedKey): void {
    if (!this.closed) this.queue.mark(k)
  }

  /** @internal (DirtyQueueSink) a key to read: into the batch, read when full. */
  take (k: WatchedKey): void {
    this.batch.push(k)
    if (this.batch.length === CHANGED_KEYS_BATCH) {
      void this.read(this.batch)
      this.batch = []
    }
  }

  /** @internal (DirtyQueueSink) the pass ended: read what is gathered. */
  passed (): void {
    if (this.batch.length === 0) return
    void this.read(this.batch)
    this.batch = []
  }

  private async read (batch: WatchedKey[]): Promise<void> {
    // After a reconnect: no read until the source has checked the server
    // (and the reader armed its feed); the ids are taken after it (a reset
    // moves them back to 0-0).
    const gate = this.gate()
    if (gate !== undefined) await gate
    if (this.closed) return
    const n = batch.length
    const args: string[] = new Array<string>(3 + 2 * n)
    args[0] = 'COUNT'
    args[1] = this.countText
    args[2] = 'STREAMS'
    for (let i = 0; i < n; i++) {
      const k = batch[i] as WatchedKey
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
      if (this.queue.pending === 0) this.health.forget()
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
    // Signals that arrived during the read.
    this.queue.schedule()
  }

  private probed (entries: Array<[string, string[]]>): void {
    const k = this.probeKey
    const last = entries[entries.length - 1]
    if (last === undefined) return
    if (compareIds(last[0], k.afterId) > 0) k.afterId = last[0]
    k.waiters.read(last[0])
  }

  close (): void {
    this.closed = true
    this.health.forget()
  }
}
