/**
 * What tells the cluster reader (cluster-reader.ts) which keys of one
 * master changed: a **feed**, one connection to that master of its own
 * (keyspace notifications and client tracking are node-local, and ioredis
 * `Cluster` pub/sub listens on one node only, ioredis issue 1240).
 *
 * Two kinds, on the same connection:
 * - `track` (the default, no server setting): `CLIENT TRACKING on REDIRECT
 *   <its own id> BCAST PREFIX <KEY_PREFIX>`, then `SUBSCRIBE
 *   __redis__:invalidate`. BCAST reports every write under the prefix on
 *   that node, batched per event-loop turn of the server (an array of keys
 *   per message), without the keys having been read on this connection.
 *   So the reads stay on the ioredis `Cluster` client, which routes by slot
 *   and follows MOVED and ASK; a key that moves to another master is
 *   reported by that master's feed with nothing to re-arm. The standalone
 *   track reader (tracking-reader.ts) uses default mode instead, arming
 *   each key by reading it on the tracked connection, so that a key is
 *   reported only to the replicas that read it; in a cluster that would
 *   mean routing every read by hand over per-master connections, and the
 *   cluster's notification feed already hears every write under the prefix
 *   (a pattern subscription), which BCAST matches: measured on Redis
 *   7.0.15, 200,000 XADDs to one master with three feeds listening cost
 *   2.1-2.2 µs of Redis CPU each with BCAST, 2.2-2.4 µs with notifications
 *   (1.5 µs with none). BCAST keeps no per-key tracking table either.
 *   The connection is its own REDIRECT target: a RESP2 connection in
 *   pub/sub mode receives its own invalidations as messages. One
 *   connection, not two: no idle tracked connection for the server's
 *   `timeout` to close (pub/sub clients are exempt; measured), and no
 *   target that can vanish under a live tracking.
 * - `notify`: `PSUBSCRIBE __keyspace@0__:<KEY_PREFIX>*`, which needs
 *   `notify-keyspace-events` with `K` and `t` on the node. READER_MODE=notify
 *   asks for it; a `track` feed falls back to it on a node that refuses
 *   client tracking (an ACL without `CLIENT`, Redis older than 6), after
 *   saying which rule is missing. Each reconnect tries tracking again.
 *
 * Both are fire and forget: the feed calls `resync()` each time it is
 * (re)armed, and the reader then reads the node's keys again from their
 * last ids; `lost()` when its armed connection closed (the source checks
 * the server again). An invalidation naming no key (the node was flushed)
 * is a resync too.
 */
import type { Redis } from 'ioredis'
import { errorSummary } from './live-health.js'
import type { LiveReaderOptions } from './live-reader.js'
import type { ClusterConnectionFactory } from './cluster-connection.js'
import { ACL_RULES, isPermanent, isRefused, notificationsCoverStreams } from './server-check.js'
import { INVALIDATE_CHANNEL } from './tracking-reader.js'

/** What feeds one master: client tracking (BCAST) or keyspace notifications. */
export type FeedKind = 'track' | 'notify'

/** One master's feed. */
export interface Feed {
  readonly node: string
  /** What feeds it now (`notify` where tracking was refused); the preferred kind until first armed. */
  readonly kind: FeedKind
  close (): void
}

export interface FeedCallbacks {
  /** A key under the prefix was written on this node. */
  changed (key: string): void
  /** Changes may have been missed (the feed was (re)armed, or the node flushed): read this node's keys again. */
  resync (): void
  /** The armed connection closed. */
  lost (): void
}

/** The keyspace event of an XADD. */
const XADD = Buffer.from('xadd')
const KEYSPACE_PREFIX_BYTES = Buffer.byteLength('__keyspace@0__:')

/**
 * A feed of the master at `node` (`host:port`): `prefer` is `track` (and
 * falls back to `notify` on a node that refuses it) or `notify`. The
 * READER_MODE asked for (`opts.mode`) sets how loud a fallback is: an error
 * when `track` was asked for, a warning under `auto`. What it has said is
 * kept in `told` (the reader's, so a feed opened anew does not say it again).
 */
export function masterFeed (opts: LiveReaderOptions, factory: ClusterConnectionFactory, node: string, prefer: FeedKind, on: FeedCallbacks, told = new Set<string>()): Feed {
  const colon = node.lastIndexOf(':')
  const [host, port] = [node.slice(0, colon), Number(node.slice(colon + 1))]
  const pattern = `__keyspace@0__:${opts.keyPrefix}*`
  let closed = false
  let armed = false
  let kind: FeedKind = prefer
  const sub: Redis = factory.node(host, port, {
    connectionName: 'sse-gateway:cluster-feed',
    maxRetriesPerRequest: null,
    // Armed by hand on each ready (a new connection tracks nothing).
    autoResubscribe: false,
  })
  sub.on('error', () => { /* the probe and the reads report a dead master */ })

  /** Tracking toward this connection itself, then its channel; rejects when refused or lost. */
  const track = async (): Promise<void> => {
    const id = String(await sub.client('ID'))
    await sub.call('CLIENT', 'TRACKING', 'on', 'REDIRECT', id, 'BCAST', ...(opts.keyPrefix === '' ? [] : ['PREFIX', opts.keyPrefix]))
    await sub.subscribe(INVALIDATE_CHANNEL)
  }

  const refused = (err: unknown): void => {
    if (told.has(`refused ${node}`)) return
    told.add(`refused ${node}`)
    const grant = ACL_RULES.track()
    const message = `client tracking refused on the cluster node ${node} (Redis older than 6, or an ACL without it: grant ${grant}): its channels are read by keyspace notifications instead, which need notify-keyspace-events Kt on the node and the ACL rule ${ACL_RULES.clusterNotify(opts.keyPrefix)}`
    if (opts.mode === 'track') opts.logger.error({ err: errorSummary(err), node, grant }, message)
    else opts.logger.warn({ err: errorSummary(err), node, grant }, message)
  }

  /** Notifications: says once when the node does not publish them for streams (CONFIG GET, where allowed). */
  const notify = async (): Promise<void> => {
    try {
      const reply = await (sub.config('GET', 'notify-keyspace-events') as Promise<unknown>)
      const flags = Array.isArray(reply) ? String(reply[1] ?? '') : ''
      if (!notificationsCoverStreams(flags) && !told.has(`unfed ${node}`)) {
        told.add(`unfed ${node}`)
        opts.logger.error({ node, flags }, `the cluster node ${node} does not publish keyspace notifications for streams: its channels are not read live; ${prefer === 'track' ? `grant client tracking (${ACL_RULES.track()}) or ` : ''}set notify-keyspace-events Kt on every node (CONFIG SET, and in redis.conf so a restart keeps it)`)
      }
    } catch (err) {
      // CONFIG refused (managed Redis): the probe tells; an outage: the next ready arms again.
      if (!isPermanent(err)) throw err
    }
    try {
      await sub.psubscribe(pattern)
    } catch (err) {
      if (isRefused(err) && !told.has(`psubscribe ${node}`)) {
        told.add(`psubscribe ${node}`)
        const grant = ACL_RULES.clusterNotify(opts.keyPrefix)
        opts.logger.error({ err: errorSummary(err), node, grant }, `the cluster node ${node} refused PSUBSCRIBE to its keyspace channels: its channels are not read live (grant ${grant}${prefer === 'track' ? `, or client tracking: ${ACL_RULES.track()}` : ''})`)
      }
      throw err
    }
  }

  const arm = async (): Promise<void> => {
    let now: FeedKind = 'notify'
    if (prefer === 'track') {
      try {
        await track()
        now = 'track'
      } catch (err) {
        if (closed || !isPermanent(err)) throw err
        refused(err)
        // Tracking may be on without its channel: off, so that only notifications feed this connection.
        await sub.call('CLIENT', 'TRACKING', 'off').catch(() => {})
      }
    }
    if (now === 'notify') await notify()
    if (closed) return
    kind = now
    armed = true
    on.resync()
  }

  sub.on('ready', () => {
    // Lost again during it: the next ready arms again.
    void arm().catch(() => {})
  })
  sub.on('close', () => {
    if (closed || !armed) return
    armed = false
    on.lost()
  })
  // Invalidations, raw: an array of keys (or one), or null when the node was flushed.
  sub.on('messageBuffer', (_channel: Buffer, keys: Buffer[] | Buffer | null) => {
    if (keys === null) on.resync()
    else if (Array.isArray(keys)) for (const key of keys) on.changed(key.toString('utf8'))
    else on.changed(keys.toString('utf8'))
  })
  sub.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, event: Buffer) => {
    if (event.equals(XADD)) on.changed(channel.toString('utf8', KEYSPACE_PREFIX_BYTES))
  })
  return {
    node,
    get kind () { return kind },
    close () {
      closed = true
      sub.disconnect()
    },
  }
}
