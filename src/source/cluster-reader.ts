/**
 * The cluster live reader, for a Redis Cluster (REDIS_CLUSTER_NODES): a
 * multi-key XREAD needs all its keys in one hash slot (CROSSSLOT
 * otherwise), so this reader reads one key per XREAD, non-blocking, from
 * its explicit last id, through an ioredis `Cluster` client that routes by
 * slot and follows MOVED and ASK (auto-pipelined: the reads of one node go
 * in one write).
 *
 * What says which keys to read is a **feed** per master (cluster-feed.ts):
 * client tracking in BCAST mode by default (no server setting), keyspace
 * notifications with READER_MODE=notify or on a node that refuses
 * tracking; each master has a connection of its own, re-listed whenever
 * the slot map changes (a failover, a slot moved, a master added). Both
 * are fire and forget: after a feed is (re)armed, the keys its master
 * serves are read again from their last ids, and after any topology
 * change every watched key is.
 *
 * The proof of flow covers every master: each has a probe stream of its own
 * (`<prefix>__gateway:probe:{<tag>}:<instance>`, the hash tag chosen so the
 * key lands on that master), read only when its feed names it. A
 * master whose probe is not seen is named ({@link ClusterReader.trouble}):
 * `/readyz` says `feed-silent 127.0.0.1:7002`.
 */
import type { Cluster } from 'ioredis'
import { ZERO_ID, compareIds, type StreamId } from '../core/stream-id.js'
import { isClusterFactory, keySlot, SLOTS, type ClusterConnectionFactory } from './cluster-connection.js'
import { errorSummary } from './live-health.js'
import { advance, type LiveReader, type LiveReaderOptions, type ReaderHost, type XReadReply } from './live-reader.js'
import { WatchedKey } from './changed-keys.js'
import { DirtyQueue } from './dirty-queue.js'
import { ProbeWaiters } from './probe-waiters.js'
import { ReaderHealth } from './reader-health.js'
import { REQUEST_REPLY } from './redis-connection.js'
import { masterFeed, type Feed, type FeedKind } from './cluster-feed.js'

/** Probes in a row a master's feed may miss, while its reads answer, before it is opened anew. */
export const SILENT_PROBES = 3

/** How often the slot map is asked for: a failover or a slot moved is seen within this, with no command to a moved slot. */
export const CLUSTER_REFRESH_MS = 1000

/** A master's probe stream: read like a watched key, never emitted. */
class ProbeKey extends WatchedKey {
  readonly waiters = new ProbeWaiters()
  constructor (key: string, readonly node: string) { super(key, ZERO_ID) }
}

/** Reads watched keys of a Redis Cluster when a master's feed says they changed. */
export class ClusterReader implements LiveReader {
  private readonly keys = new Map<string, WatchedKey>()
  /** Probe streams by key, and by the master they live on. */
  private readonly probeKeys = new Map<string, ProbeKey>()
  private readonly probeOf = new Map<string, ProbeKey>()
  private readonly feeds = new Map<string, Feed>()
  /** Each master's reads, so readiness can say which master fails. */
  private readonly healthOf = new Map<string, ReaderHealth>()
  private readonly client: Cluster
  private readonly factory: ClusterConnectionFactory
  /** Keys to read, each once; each read alone (a multi-key XREAD needs one slot). */
  private readonly queue = new DirtyQueue<WatchedKey>(this)
  private closed = false
  private fingerprint = ''
  private readonly refreshTimer: NodeJS.Timeout
  private readonly countText: string
  /** Per master, probes in a row that found the previous one still unseen. */
  private readonly silentRounds = new Map<string, number>()
  /** Masters whose silent feed was opened anew (said once until they flow again). */
  private readonly reopened = new Set<string>()
  /** What the feeds have said (a refusal, no notifications), once per node for the reader's life. */
  private readonly told = new Set<string>()
  /** What each master's feed tries first: tracking, or notifications when READER_MODE=notify. */
  private readonly prefer: FeedKind

  constructor (private readonly opts: LiveReaderOptions, private readonly host: ReaderHost) {
    if (!isClusterFactory(opts.connection)) throw new Error('the cluster reader needs a Redis Cluster connection (REDIS_CLUSTER_NODES)')
    this.factory = opts.connection
    this.countText = String(opts.count)
    this.prefer = opts.mode === 'notify' ? 'notify' : 'track'
    this.client = this.factory.cluster({ ...REQUEST_REPLY, connectionName: 'sse-gateway:cluster-reader', enableAutoPipelining: true })
    this.client.on('error', () => { /* reported by the reads */ })
    this.client.on('ready', () => { this.topology() })
    this.client.on('refresh', () => { this.topology() })
    this.refreshTimer = setInterval(() => { this.client.refreshSlotsCache() }, CLUSTER_REFRESH_MS)
    this.refreshTimer.unref()
    this.topology()
  }

  /** The masters and who serves each slot, as one string: a change of it is a topology change. */
  private slotMap (): string {
    const slots = this.client.slots
    let out = ''
    let owner: string | undefined
    for (let s = 0; s < SLOTS; s++) {
      const o = slots[s]?.[0]
      if (o !== owner) {
        out += `${s}:${o ?? '-'} `
        owner = o
      }
    }
    return out
  }

  /**
   * After every slot-map refresh: a feed for each master, none for a node
   * that no longer is one, a probe stream on each master, and, when the map
   * changed, every key read again (a key that moved, or a master promoted,
   * may hold entries no feed announced).
   */
  private topology (): void {
    if (this.closed) return
    const map = this.slotMap()
    if (map === this.fingerprint) return
    this.fingerprint = map
    const masters = new Set(this.client.slots.map(s => s[0]).filter((n): n is string => n !== undefined))
    for (const [node, feed] of this.feeds) {
      if (masters.has(node)) continue
      feed.close()
      this.feeds.delete(node)
      this.silentRounds.delete(node)
      this.reopened.delete(node)
      this.healthOf.get(node)?.forget()
      this.healthOf.delete(node)
    }
    for (const node of masters) {
      if (this.feeds.has(node)) continue
      this.openFeed(node)
    }
    this.placeProbes(masters)
    if (masters.size > 0) this.opts.logger.info({ masters: [...masters], feed: this.prefer }, `cluster topology: one live feed per master (${this.prefer === 'track' ? 'client tracking' : 'keyspace notifications'})`)
    this.markAll()
  }

  private openFeed (node: string): void {
    this.feeds.set(node, masterFeed(this.opts, this.factory, node, this.prefer, {
      changed: key => {
        const k = this.keys.get(key) ?? this.probeKeys.get(key)
        if (k !== undefined) this.markDirty(k)
      },
      resync: () => { this.markNode(node) },
      lost: () => { if (!this.closed) this.host.connectionLost() },
    }, this.told))
  }

  /**
   * Before each probe: a master whose probe stayed unseen for
   * SILENT_PROBES probes in a row while its reads answer gets its feed
   * opened anew, and so its keys read again. A connected feed can go quiet
   * with nothing closing (notifications turned off, a fallback feed on a
   * node without them, tracking lost in a way RESP2 does not tell); a new
   * one tries client tracking first again, so a right granted later (the
   * ACL fixed) is taken without a restart. Readiness names the master
   * meanwhile (`feed-silent`).
   */
  private reopenSilent (): void {
    for (const [node, probe] of this.probeOf) {
      const silent = probe.waiters.pending && this.healthOf.get(node)?.failingNow !== true
      if (!silent) {
        this.silentRounds.delete(node)
        this.reopened.delete(node)
        continue
      }
      const rounds = (this.silentRounds.get(node) ?? 0) + 1
      this.silentRounds.set(node, rounds)
      if (rounds < SILENT_PROBES) continue
      this.silentRounds.delete(node)
      if (!this.reopened.has(node)) {
        this.reopened.add(node)
        this.opts.logger.warn({ node, feed: this.feeds.get(node)?.kind }, `the live feed of the cluster node ${node} delivered no probe for ${SILENT_PROBES} probes while its reads answer: opening it anew (and again every ${SILENT_PROBES} probes while it stays silent)`)
      }
      this.feeds.get(node)?.close()
      this.openFeed(node)
    }
  }

  /** One probe stream per master, its hash tag chosen to land on it. */
  private placeProbes (masters: Set<string>): void {
    const slots = this.client.slots
    for (const [node, probe] of this.probeOf) {
      if (masters.has(node) && slots[keySlot(probe.key)]?.[0] === node) continue
      this.probeOf.delete(node)
      this.probeKeys.delete(probe.key)
      probe.removed = true
    }
    const missing = new Set([...masters].filter(n => !this.probeOf.has(n)))
    for (let i = 0; missing.size > 0 && i < 20 * SLOTS; i++) {
      const key = `${this.opts.keyPrefix}__gateway:probe:{p${i}}:${this.opts.instance}`
      const node = slots[keySlot(key)]?.[0]
      if (node === undefined || !missing.has(node)) continue
      missing.delete(node)
      const probe = new ProbeKey(key, node)
      this.probeOf.set(node, probe)
      this.probeKeys.set(key, probe)
    }
  }

  private markAll (): void {
    for (const k of this.keys.values()) this.markDirty(k)
    for (const k of this.probeKeys.values()) this.markDirty(k)
  }

  /**
   * The keys `node` serves by the slot map known now (and any whose slot
   * has no known owner): what its feed may have missed. A key that moved
   * there unseen is read at the topology change that shows it.
   */
  private markNode (node: string): void {
    const slots = this.client.slots
    const on = (k: WatchedKey): boolean => {
      const owner = slots[keySlot(k.key)]?.[0]
      return owner === undefined || owner === node
    }
    for (const k of this.keys.values()) if (on(k)) this.markDirty(k)
    for (const k of this.probeKeys.values()) if (on(k)) this.markDirty(k)
  }

  /**
   * Writes a probe entry on every master and resolves once each was read
   * after its feed named it: every feed delivers and every master answers.
   */
  async probe (): Promise<void> {
    // Before the first slot map: the probe waits for it (its timeout tells if it never comes).
    while (this.probeOf.size === 0 && !this.closed) await new Promise<void>(resolve => { this.client.once('refresh', resolve) })
    this.reopenSilent()
    const probes = [...this.probeOf.values()]
    await Promise.all(probes.map(async p => { await p.waiters.until(await this.host.append(p.key)) }))
  }

  /**
   * Which masters fail, for readiness: `feed-silent <node>` for those whose
   * probe is still unseen, `reader-error <node>` for those whose reads fail;
   * undefined when none.
   */
  trouble (): string | undefined {
    const failing = [...this.healthOf].filter(([, h]) => h.failingNow).map(([n]) => n)
    if (failing.length > 0) return `reader-error ${failing.sort().join(',')}`
    const silent = [...this.probeOf].filter(([, p]) => p.waiters.pending).map(([n]) => n)
    if (silent.length > 0) return `feed-silent ${silent.sort().join(',')}`
    return undefined
  }

  /** Each master, whether its reads answer and its last probe was seen, and what feeds it. */
  nodes (): Array<[string, boolean, FeedKind]> {
    return [...this.probeOf].map(([node, p]) => [node, !p.waiters.pending && this.healthOf.get(node)?.failingNow !== true, this.feeds.get(node)?.kind ?? this.prefer])
  }

  * positions (): Iterable<[string, StreamId]> {
    for (const k of this.keys.values()) yield [k.key, k.afterId]
  }

  add (key: string, afterId: StreamId): void {
    let k = this.keys.get(key)
    if (k === undefined) this.keys.set(key, k = new WatchedKey(key, afterId))
    else k.afterId = afterId
    this.markDirty(k)
  }

  remove (key: string): void {
    const k = this.keys.get(key)
    if (k === undefined) return
    this.keys.delete(key)
    k.removed = true
  }

  private markDirty (k: WatchedKey): void {
    if (!this.closed) this.queue.mark(k)
  }

  /** @internal (DirtyQueueSink) a key to read. */
  take (k: WatchedKey): void {
    void this.read(k)
  }

  /** @internal (DirtyQueueSink) each key is read as it is taken. */
  passed (): void {}

  /** The health record of the master serving `key` now. */
  private healthFor (key: string): ReaderHealth {
    const node = this.client.slots[keySlot(key)]?.[0] ?? '?'
    let h = this.healthOf.get(node)
    if (h === undefined) this.healthOf.set(node, h = new ReaderHealth(this.opts))
    return h
  }

  private async read (k: WatchedKey): Promise<void> {
    // After a reconnect: no read until the source has checked the server;
    // the id is taken after it (a reset moves it back to 0-0).
    const gate = this.host.gate()
    if (gate !== undefined) await gate
    if (this.closed) return
    const health = this.healthFor(k.key)
    const started = process.hrtime.bigint()
    let reply: XReadReply
    try {
      reply = await (this.client.xread('COUNT', this.countText, 'STREAMS', k.key, k.afterId) as Promise<XReadReply>)
    } catch (err) {
      k.reading = false
      if (this.closed) return
      this.opts.logger.debug({ err: errorSummary(err), key: k.key }, 'cluster read failed')
      await health.failed(err)
      this.markDirty(k)
      // Marked again while this read was out: read now.
      this.queue.schedule()
      return
    }
    health.succeeded(started)
    k.reading = false
    const entries = reply?.[0]?.[1] ?? []
    if (k instanceof ProbeKey) {
      const last = entries[entries.length - 1]
      if (last !== undefined) {
        if (compareIds(last[0], k.afterId) > 0) k.afterId = last[0]
        k.waiters.read(last[0])
      }
    } else {
      k.afterId = advance(this.host, k.key, k.afterId, entries) ?? k.afterId
    }
    // A full page: there may be more.
    if (entries.length >= this.opts.count) this.markDirty(k)
    // Changes that came during the read (this key's among them).
    this.queue.schedule()
  }

  async close (): Promise<void> {
    this.closed = true
    clearInterval(this.refreshTimer)
    for (const h of this.healthOf.values()) h.forget()
    for (const f of this.feeds.values()) f.close()
    this.feeds.clear()
    this.client.disconnect()
  }
}
