/**
 * The track live reader: server-assisted client tracking (Redis >= 6), with
 * no server setting and no admin command. Its read connection turns on
 * `CLIENT TRACKING on REDIRECT <id of its subscriber>`; from then on, every
 * key it has read with XREAD is tracked by the server, and the next write to
 * it sends one `__redis__:invalidate` message naming the key to the
 * subscriber (`SUBSCRIBE __redis__:invalidate`). The reader then reads that
 * key (with the other keys changed in the same turn, changed-keys.ts) from
 * its last id, which arms it again. Redis work per event, not per watched
 * key, as with keyspace notifications, but nothing to configure.
 *
 * Choices (docs/engine.md has the measurements):
 * - RESP2 with REDIRECT, two connections: every connection of the gateway
 *   speaks RESP2, and ioredis 6 over RESP3 reads the invalidate push but
 *   emits no event for it.
 * - Default mode, not BCAST: a key is reported only to the replicas that
 *   read it (BCAST PREFIX reports every write under the prefix to every
 *   replica), and only once per read. Not OPTIN: every read of this
 *   connection is meant to arm. NOLOOP is moot: it writes nothing.
 * - An invalidate with no key (`null`: the table was flushed, FLUSHALL or
 *   FLUSHDB) means any key may have changed: every key is read again.
 * - Invalidations are at-most-once: after either connection reconnects (the
 *   subscriber comes back with a new client id), tracking is turned on again
 *   and every key read again from its last id; until then no read goes out
 *   (a read on an untracked connection would arm nothing).
 * - A key no longer watched stays in the server's table until its next
 *   write, which is then ignored. The table costs Redis memory per tracked
 *   key (`tracking_total_keys`, bounded by `tracking-table-max-keys`; a key
 *   evicted from it is reported as changed, so it is read and tracked again).
 *
 * The probe stream is just another tracked key: a probe seen proves that
 * invalidations are sent, delivered and followed by a read.
 */
import type { Redis } from 'ioredis'
import type { StreamId } from '../core/stream-id.js'
import { errorSummary } from './live-health.js'
import { ChangedKeys } from './changed-keys.js'
import type { LiveReader, LiveReaderOptions, ReaderHost } from './live-reader.js'
import { REQUEST_REPLY } from './redis-connection.js'

/** The channel a RESP2 REDIRECT target receives invalidations on. */
export const INVALIDATE_CHANNEL = '__redis__:invalidate'

/** Reads the watched keys that a client-tracking invalidation names. */
export class TrackingReader implements LiveReader {
  private readonly changed: ChangedKeys
  /** The tracked connection: every XREAD on it arms its keys. */
  private readonly reader: Redis
  /** Receives the invalidations (RESP2 pub/sub). */
  private readonly sub: Redis
  /** The subscriber's client id while it is subscribed, else undefined. */
  private subId: string | undefined
  private readerReady = false
  /** Tracking is on for the current connections: reads may go out. */
  private armed = false
  private arming: Promise<void>
  private openArming: () => void = () => {}
  private turningOn = false
  private turnAgain = false
  private refusedLogged = false
  private closed = false

  constructor (
    private readonly opts: LiveReaderOptions,
    private readonly host: ReaderHost
  ) {
    this.arming = this.newArming()
    this.reader = opts.connection.connect({ ...REQUEST_REPLY, connectionName: 'sse-gateway:track-reader', enableAutoPipelining: false })
    this.reader.on('error', () => { /* reported by the read loop */ })
    this.reader.on('close', () => {
      this.readerReady = false
      this.disarm('read')
    })
    this.reader.on('ready', () => {
      this.readerReady = true
      void this.turnOn()
    })
    this.changed = new ChangedKeys(opts, host, this.reader, () => this.gate())
    this.sub = opts.connection.connect({
      connectionName: 'sse-gateway:track',
      maxRetriesPerRequest: null,
      // Subscribed by hand after CLIENT ID, on each ready.
      autoResubscribe: false,
    })
    this.sub.on('error', () => { /* the command connection reports outages */ })
    this.sub.on('close', () => {
      this.subId = undefined
      this.disarm('subscriber')
    })
    this.sub.on('ready', () => { void this.subscribe() })
    // The raw form: the keys come as Buffers, or null for "every key".
    this.sub.on('messageBuffer', (_channel: Buffer, keys: Buffer[] | Buffer | null) => {
      if (keys === null) {
        this.changed.markAll()
        return
      }
      if (Array.isArray(keys)) for (const key of keys) this.changed.changed(key.toString('utf8'))
      else this.changed.changed(keys.toString('utf8'))
    })
  }

  private newArming (): Promise<void> {
    return new Promise<void>(resolve => { this.openArming = resolve })
  }

  /** Reads wait for the source's check and for tracking to be on. */
  private gate (): Promise<void> | undefined {
    const hosts = this.host.gate()
    if (this.armed) return hosts
    return hosts === undefined ? this.arming : Promise.all([hosts, this.arming]).then(() => {})
  }

  /**
   * A connection closed: its tracking (or the target of it) is gone. No
   * read fails meanwhile (none goes out), so the loss is reported here, as
   * a failed read would be: logged once, counted, readiness held until the
   * reads after the re-arm answer.
   */
  private disarm (which: 'read' | 'subscriber'): void {
    if (this.closed) return
    if (this.armed) {
      this.armed = false
      this.arming = this.newArming()
    }
    void this.changed.health.failed(new Error(`the track reader's ${which} connection closed`))
    this.host.connectionLost()
  }

  /** On each ready of the subscriber: its (new) client id, then the subscription. */
  private async subscribe (): Promise<void> {
    try {
      const id = String(await this.sub.client('ID'))
      await this.sub.subscribe(INVALIDATE_CHANNEL)
      if (this.closed) return
      this.subId = id
      await this.turnOn()
    } catch (err) {
      if (this.closed) return
      // Lost again (the next ready retries) or refused (CLIENT ID: said once).
      this.refused(err)
    }
  }

  /**
   * Turns tracking on for the read connection, pointed at the subscriber,
   * once both are connected; then every key is read (and so armed) again.
   */
  private async turnOn (): Promise<void> {
    if (this.turningOn) {
      this.turnAgain = true
      return
    }
    this.turningOn = true
    try {
      do {
        this.turnAgain = false
        const id = this.subId
        if (id === undefined || !this.readerReady || this.closed) return
        try {
          await this.reader.call('CLIENT', 'TRACKING', 'on', 'REDIRECT', id)
        } catch (err) {
          if (this.closed) return
          this.refused(err)
          await this.changed.health.failed(err)
          this.turnAgain = true
          continue
        }
        if (id !== this.subId || !this.readerReady) continue
        this.armed = true
        this.openArming()
        // Writes while tracking was off sent nothing: read every key.
        this.changed.markAll()
      } while (this.turnAgain && !this.closed)
    } finally {
      this.turningOn = false
    }
  }

  private refused (err: unknown): void {
    if (this.refusedLogged || !/NOPERM|unknown (sub)?command/i.test((err as Error)?.message ?? '')) return
    this.refusedLogged = true
    this.opts.logger.error({ err: errorSummary(err) }, 'cannot turn on client tracking: the track reader needs Redis >= 6 and the ACL rules +client|tracking and +client|id (and +subscribe on the channel __redis__:invalidate)')
  }

  async probe (): Promise<void> {
    await this.changed.probe()
  }

  positions (): Iterable<[string, StreamId]> {
    return this.changed.positions()
  }

  add (key: string, afterId: StreamId): void {
    const { k, known } = this.changed.upsert(key, afterId)
    // Its first read arms it (once tracking is on).
    if (!known) this.changed.markDirty(k)
  }

  remove (key: string): void {
    // Still tracked by the server until its next write, which is ignored.
    this.changed.remove(key)
  }

  async close (): Promise<void> {
    this.closed = true
    this.changed.close()
    this.openArming()
    this.sub.disconnect()
    this.reader.disconnect()
  }
}
