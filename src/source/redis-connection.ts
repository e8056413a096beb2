/**
 * How the gateway opens a connection to Redis: one factory for every
 * connection it holds (the command connection, each live reader's, the
 * publisher's) and for the command line's. A factory knows where Redis is
 * and how to reach it; the caller says what the connection is for (its
 * name, its timeouts, whether commands wait out an outage).
 *
 * One implementation today, {@link standaloneConnection}: one Redis at a
 * `redis://`, `rediss://` or `unix:///path/redis.sock` URL. A Sentinel
 * connection (ioredis `{ sentinels, name }`, so a failover moves every
 * connection to the new primary) is one more file implementing
 * {@link RedisConnectionFactory}, plus its line in {@link connectionFor}.
 *
 * Credentials and TLS ({@link RedisAccess}, built from the settings once, in
 * config.ts) are the same for every connection a factory opens: each
 * factory passes them through {@link accessOptions}.
 */
import { Redis, type RedisOptions } from 'ioredis'
import type { RedisAccess } from '../core/config.js'

export type { RedisAccess }

/** Opens connections to one Redis deployment. */
export interface RedisConnectionFactory {
  /**
   * A new connection with the gateway's defaults (RESP2, reconnect with
   * backoff and jitter) under `options` (which win). Connects at once
   * unless `options.lazyConnect`.
   */
  connect (options: RedisOptions): Redis
  /**
   * Why no connection can be made, found with one plain connection to the
   * first node this factory asks (a cluster's seed, a Sentinel), or
   * undefined when that one works. For the factories whose ioredis clients
   * drop the error underneath (a Cluster's slot refresh and a Sentinel
   * lookup report only "Connection is closed" when a TLS handshake or a
   * login failed there); the others have none.
   */
  explain? (): Promise<Error | undefined>
}

/**
 * The error `client` (lazy, made for this) fails with when it connects and
 * sends `command`, or undefined when it answers; it is disconnected after.
 */
export async function firstError (client: Redis, command: [string, ...string[]]): Promise<Error | undefined> {
  let first: Error | undefined
  client.on('error', (err: Error) => { first ??= err })
  try {
    await client.connect()
    await client.call(...command)
    return undefined
  } catch (err) {
    return first ?? (err as Error)
  } finally {
    client.disconnect()
  }
}

const GUARDED = Symbol('sse-gateway guarded socket')
function ignoreLaterError (): void {}

/**
 * `client`, with every socket it opens kept from crashing the process:
 * ioredis listens for one `error` per socket (`once`), and a TLS socket may
 * emit two (a refused certificate, then the server's alert read after it),
 * the second with no listener, which throws from the event loop. On the
 * first error of each socket (ioredis reports it as the client's `error`,
 * synchronously), a listener that ignores any later one goes on it;
 * ioredis has already said what went wrong.
 */
export function guardSockets<T extends Redis> (client: T): T {
  client.on('error', () => {
    const stream = (client as unknown as { stream?: (NodeJS.EventEmitter & { [GUARDED]?: true }) }).stream
    if (stream === undefined || stream[GUARDED] === true) return
    stream[GUARDED] = true
    stream.on('error', ignoreLaterError)
  })
  return client
}

/** Options of the one-off connection that {@link RedisConnectionFactory.explain} makes. */
export const DIAGNOSE: Readonly<RedisOptions> = Object.freeze({ lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 5000, connectionName: 'sse-gateway:diagnose' })

/** First reconnect delay, in ms; doubled per attempt. */
export const RECONNECT_BASE_MS = 100
/** Longest wait between reconnect attempts (before jitter), in ms. */
export const RECONNECT_MAX_MS = 5000

/**
 * Exponential backoff with up to 100 ms of jitter, so the replicas that lost
 * one Redis do not all come back in the same millisecond.
 */
export function reconnectDelayMs (times: number): number {
  return Math.min(RECONNECT_BASE_MS * 2 ** Math.min(times, 10), RECONNECT_MAX_MS) + Math.floor(Math.random() * 100)
}

/** What every connection starts from; a caller's options override them. */
export const BASE_OPTIONS: Readonly<RedisOptions> = Object.freeze({
  // RESP2 keeps XREAD/XRANGE replies in one known shape on every server.
  protocol: 2,
  lazyConnect: false,
  retryStrategy: reconnectDelayMs,
})

/**
 * For connections whose commands must answer or fail, not wait out an
 * outage (the command connection, the notify reader's reads).
 */
export const REQUEST_REPLY: Readonly<RedisOptions> = Object.freeze({ maxRetriesPerRequest: 1, enableOfflineQueue: true, commandTimeout: 10000 })

/**
 * The ioredis options for `access`: `username`/`password` (sent with AUTH on
 * every connect) and `tls` (the CA replaces the system's; cert and key for
 * mutual TLS). The server's certificate is checked against the host
 * connected to, as Node does by default. For a Sentinel's `sentinelTLS` or
 * a Cluster's `redisOptions`, the same object.
 */
export function accessOptions (access: RedisAccess | undefined): RedisOptions {
  if (access === undefined) return {}
  return {
    ...(access.username !== undefined ? { username: access.username } : {}),
    ...(access.password !== undefined ? { password: access.password } : {}),
    ...(access.tls !== undefined ? { tls: { ...access.tls } } : {}),
  }
}

/**
 * One standalone Redis (a primary, or a replica of one) at `url`, reached
 * with `access` (credentials in the URL count too: config.ts refuses the
 * same credential in both places).
 */
export function standaloneConnection (url: string, access?: RedisAccess): RedisConnectionFactory {
  const socket = url.startsWith('unix://') ? url.slice('unix://'.length) : undefined
  const security = accessOptions(access)
  return {
    connect (options) {
      const merged = { ...BASE_OPTIONS, ...security, ...options }
      return guardSockets(socket !== undefined ? new Redis({ ...merged, path: socket }) : new Redis(url, merged))
    },
  }
}

/**
 * The connection factory for a REDIS_URL. Each deployment kind that needs
 * its own way to connect adds one line here (a Sentinel URL scheme, say).
 */
export function connectionFor (url: string, access?: RedisAccess): RedisConnectionFactory {
  return standaloneConnection(url, access)
}
