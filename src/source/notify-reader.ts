/**
 * The notify live reader: when the server publishes keyspace notifications
 * for streams (`notify-keyspace-events` with `K` and `t`), it subscribes to
 * the keyspace channel of each watched key and reads, with explicit ids,
 * only the keys that changed: Redis work per event, not per watched key
 * (the read loop is changed-keys.ts, shared with the tracking reader).
 *
 * Notifications are at-most-once, so every key is read once right after it
 * is subscribed, and all of them again after the subscriber reconnects. The
 * reader's own probe stream (`<prefix>__gateway:probe:<instance>`) is read
 * only when its notification comes: a probe seen proves the whole path
 * (notifications published, delivered, and the read answering).
 */
import type { Redis } from 'ioredis'
import type { StreamId } from '../core/stream-id.js'
import { ChangedKeys, type WatchedKey } from './changed-keys.js'
import type { LiveReader, LiveReaderOptions, ReaderHost } from './live-reader.js'
import { REQUEST_REPLY } from './redis-connection.js'
import { ACL_RULES, isRefused } from './server-check.js'

/** The keyspace event of an XADD. */
const XADD = Buffer.from('xadd')

/** Reads the watched keys that a keyspace notification says changed. */
export class NotifyReader implements LiveReader {
  private readonly changed: ChangedKeys
  /** XREADs on a connection of their own (see ChangedKeys). */
  private readonly reader: Redis
  private readonly sub: Redis
  private readonly channelPrefix: string
  private refusalTold = false
  private closed = false

  constructor (
    private readonly opts: LiveReaderOptions,
    host: ReaderHost
  ) {
    // A read fails during an outage (the loop backs off and marks its keys
    // again) instead of waiting forever.
    this.reader = opts.connection.connect({ ...REQUEST_REPLY, connectionName: 'sse-gateway:notify-reader', enableAutoPipelining: false })
    this.reader.on('error', () => { /* reported by the read loop */ })
    this.reader.on('close', () => { if (!this.closed) host.connectionLost() })
    this.changed = new ChangedKeys(opts, host, this.reader, () => host.gate())
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
        const channels = [...this.changed.keys.keys()].map(key => this.channelPrefix + key)
        this.sub.subscribe(...channels).then(
          () => { this.changed.markAll() },
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
      this.changed.changed(channel.toString('utf8', prefixBytes))
    })
    // Read only when its notification comes: a probe proves the whole path.
    this.subscribe(this.changed.probeKey)
  }

  /**
   * Writes a probe entry and resolves once a notification made the reader
   * read it: notifications arrive and reads answer.
   */
  async probe (): Promise<void> {
    await this.changed.probe()
  }

  positions (): Iterable<[string, StreamId]> {
    return this.changed.positions()
  }

  add (key: string, afterId: StreamId): void {
    const { k, known } = this.changed.upsert(key, afterId)
    if (!known) this.subscribe(k)
  }

  private subscribe (k: WatchedKey): void {
    // Entries written before the subscription took effect sent no
    // notification: read the key once it is in place.
    this.sub.subscribe(this.channelPrefix + k.key).then(
      () => { this.changed.markDirty(k) },
      (err: unknown) => {
        this.changed.markDirty(k)
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
    if (this.changed.remove(key)) this.sub.unsubscribe(this.channelPrefix + key).catch(() => {})
  }

  async close (): Promise<void> {
    this.closed = true
    this.changed.close()
    this.sub.disconnect()
    this.reader.disconnect()
  }
}
