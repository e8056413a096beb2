/**
 * Sentinel-managed Redis: every connection asks the Sentinels for the
 * current master of one name and connects there (ioredis `{ sentinels,
 * name, role: 'master' }`). A failover moves each connection on its own: the
 * killed or demoted master's sockets close (or a blocked read gets
 * `UNBLOCKED`), ioredis asks the Sentinels again, and, connected, checks the
 * node really is a master (a demoted one is refused and asked again).
 * Sentinel itself ends the normal clients of a master it demotes (`CLIENT
 * KILL TYPE normal` in the reconfiguration), so no `failoverDetector` is
 * needed: it would open one more Sentinel connection per connection, and
 * one made while its connection closes outlives it (a process that never
 * exits, seen in tests).
 *
 * What the gateway's own loops add: each live reader re-reads from its
 * explicit last ids once the source has checked the new master (the gate in
 * redis-source.ts), and that check notices the master changed (its run id)
 * and looks for the entries read so far: a promoted replica that lacked
 * some (asynchronous replication) is told as `gateway.gap`.
 *
 * TLS and credentials: the Sentinels are asked with their own user and
 * password (REDIS_SENTINEL_USERNAME/PASSWORD), the data nodes with
 * REDIS_URL's or REDIS_USERNAME/PASSWORD; TLS on each side as
 * {@link sentinelTls} decides (one `rediss://` anywhere: both), with the
 * same CA, client certificate and server name (REDIS_TLS_*) on both.
 */
import { Redis, type RedisOptions } from 'ioredis'
import { sentinelTls, type Config } from '../core/config.js'
import { accessOptions, BASE_OPTIONS, DIAGNOSE, firstError, guardSockets, reconnectDelayMs, type RedisAccess, type RedisConnectionFactory } from './redis-connection.js'

/** Where the Sentinels are and which master they watch (REDIS_SENTINELS and friends). */
export interface SentinelTarget {
  /** `host:port` each (IPv6 as `[::1]:26379`). */
  readonly sentinels: readonly string[]
  /** The monitored master's name. */
  readonly master: string
  /** ACL user and password of the Sentinels themselves. */
  readonly sentinelUsername?: string
  readonly sentinelPassword?: string
  /**
   * The data nodes' credentials, db and TLS, as `redis[s]://[user:password@]<master>[/db]`;
   * its host and port are not used (the Sentinels say where the master is).
   */
  readonly url?: string
}

/** `host:port` or `[v6]:port` (or either as a `redis://` or `rediss://` URL) as ioredis takes a Sentinel address. */
export function sentinelAddress (entry: string): { host: string, port: number } {
  const text = entry.trim().replace(/^rediss?:\/\//, '').replace(/\/$/, '')
  const colon = text.lastIndexOf(':')
  const host = text.slice(0, colon)
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(text.slice(colon + 1)) }
}

/** The data nodes' settings from the URL (user, password, db), without its host, port and scheme. */
function dataNodeOptions (url: string | undefined): RedisOptions {
  if (url === undefined) return {}
  const u = new URL(url)
  const db = u.pathname.replace('/', '')
  return {
    ...(u.username !== '' ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password !== '' ? { password: decodeURIComponent(u.password) } : {}),
    ...(db !== '' ? { db: Number(db) } : {}),
  }
}

/**
 * Connections to whichever node the Sentinels name master of `target.master`,
 * reached with `access` (config.redisAccess: REDIS_USERNAME/REDIS_PASSWORD
 * and, for a rediss:// REDIS_URL, the REDIS_TLS_* files) on every data
 * connection; config.ts refuses a credential given both there and in the URL.
 */
export function sentinelConnection (target: SentinelTarget, access?: RedisAccess): RedisConnectionFactory {
  const sentinels = target.sentinels.map(sentinelAddress)
  const { tls: material, ...credentials } = accessOptions(access)
  const tls = sentinelTls(target.sentinels, target.url)
  // `tls` is an object in ioredis's options ({} for the system's CAs).
  const tlsOptions = typeof material === 'object' ? material : {}
  const dataNode: RedisOptions = {
    ...dataNodeOptions(target.url),
    ...credentials,
    // ioredis connects to the master the Sentinels name with TLS only when told.
    ...(tls.dataNodes ? { tls: { ...tlsOptions }, enableTLSForSentinelMode: true } : {}),
  }
  const sentinelAccess: RedisOptions = {
    ...(target.sentinelUsername !== undefined ? { sentinelUsername: target.sentinelUsername } : {}),
    ...(target.sentinelPassword !== undefined ? { sentinelPassword: target.sentinelPassword } : {}),
    ...(tls.sentinels ? { sentinelTLS: { ...tlsOptions } } : {}),
  }
  return {
    async explain () {
      // What ioredis asks a Sentinel, on a connection made as it makes one.
      const first = sentinels[0] as { host: string, port: number }
      return await firstError(new Redis({
        ...DIAGNOSE,
        ...first,
        protocol: 2,
        ...(target.sentinelUsername !== undefined ? { username: target.sentinelUsername } : {}),
        ...(target.sentinelPassword !== undefined ? { password: target.sentinelPassword } : {}),
        ...(tls.sentinels ? { tls: { ...tlsOptions } } : {}),
      }), ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', target.master])
    },
    connect (options) {
      return guardSockets(new Redis({
        ...BASE_OPTIONS,
        ...dataNode,
        // While a failover is under way the Sentinels still name the dead
        // master for a few seconds: keep asking, with the same backoff as
        // the connection's own (never give up: that is the outage's end).
        sentinelRetryStrategy: reconnectDelayMs,
        ...options,
        sentinels,
        name: target.master,
        role: 'master',
        ...sentinelAccess,
      }))
    },
  }
}

/** The Sentinel target REDIS_SENTINELS and friends describe, or undefined without them. */
export function sentinelTargetOf (config: Pick<Config, 'redisSentinels' | 'redisSentinelMaster' | 'redisSentinelUsername' | 'redisSentinelPassword' | 'redisUrl'>): SentinelTarget | undefined {
  if (config.redisSentinels.length === 0 || config.redisSentinelMaster === undefined) return undefined
  return {
    sentinels: config.redisSentinels,
    master: config.redisSentinelMaster,
    ...(config.redisSentinelUsername !== undefined ? { sentinelUsername: config.redisSentinelUsername } : {}),
    ...(config.redisSentinelPassword !== undefined ? { sentinelPassword: config.redisSentinelPassword } : {}),
    ...(config.redisUrl !== undefined ? { url: config.redisUrl } : {}),
  }
}
