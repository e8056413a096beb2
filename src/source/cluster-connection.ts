/**
 * How the gateway reaches a Redis Cluster (REDIS_CLUSTER_NODES): an ioredis
 * `Cluster` client, which routes every single-key command by hash slot and
 * follows `MOVED` and `ASK` (the command connection, the queries, the
 * publisher, the CLI), and plain connections to one node each (the live
 * reader's per-master feeds: keyspace notifications are node-local, and
 * ioredis `Cluster` pub/sub listens on one node only, ioredis issue 1240).
 *
 * The factory is a {@link RedisConnectionFactory} too: its `connect` opens
 * a connection to the first seed node, for what asks one node (INFO). The
 * gateway's code that must route by slot asks {@link isClusterFactory} and
 * calls `cluster` instead.
 *
 * Every connection the factory opens (the Cluster client's to each node, its
 * slot refreshes, and each `node()`) takes the same {@link RedisAccess}: the
 * user and password, and TLS when the seeds are `rediss://` (config.ts).
 * With TLS, the seeds are connected by the names given, not by the address
 * ioredis would first resolve them to (its `dnsLookup`): a certificate names
 * the host (a managed service's configuration endpoint), seldom its address.
 * The other nodes are connected at the address the cluster announces and
 * checked against it, or against `tls.servername` (REDIS_TLS_SERVERNAME)
 * when the certificates name a host the announced addresses do not.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { BASE_OPTIONS, DIAGNOSE, accessOptions, firstError, guardSockets, reconnectDelayMs, type RedisAccess, type RedisConnectionFactory } from './redis-connection.js'

export interface ClusterNode {
  readonly host: string
  readonly port: number
}

/** Opens connections to one Redis Cluster. */
export interface ClusterConnectionFactory extends RedisConnectionFactory {
  readonly kind: 'cluster'
  readonly seeds: readonly ClusterNode[]
  /**
   * A client that routes by slot. `options` are per-node connection options,
   * except `lazyConnect` and `enableOfflineQueue`, which apply to the whole
   * client; never auto-pipelined (see below).
   */
  cluster (options: RedisOptions, clusterOptions?: ClusterOptions): Cluster
  /** A connection to one node (a master's live feed). */
  node (host: string, port: number, options: RedisOptions): Redis
}

/** `host:port` (IPv6 in brackets), or either as a `redis://` or `rediss://` URL (config.ts tells TLS from it), as a node address. */
export function parseClusterNode (text: string): ClusterNode {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(text.trim().replace(/^rediss?:\/\//, '').replace(/\/$/, ''))
  if (m === null) throw new Error(`"${text}" is not host:port`)
  return { host: m[1] as string, port: Number(m[2]) }
}

/** Options that belong to the whole Cluster client, not to each node's connection. */
const CLUSTER_LEVEL = ['lazyConnect', 'enableOfflineQueue', 'enableAutoPipelining'] as const

export function clusterConnection (seeds: readonly ClusterNode[], access?: RedisAccess): ClusterConnectionFactory {
  if (seeds.length === 0) throw new Error('a Redis Cluster needs at least one seed node')
  // Every node takes the same user, password and TLS (see the file header).
  const security = accessOptions(access)
  const node = (host: string, port: number, options: RedisOptions): Redis => guardSockets(new Redis({ ...BASE_OPTIONS, ...security, ...options, host, port }))
  return {
    kind: 'cluster',
    seeds,
    connect (options) {
      const seed = seeds[0] as ClusterNode
      return node(seed.host, seed.port, options)
    },
    node,
    async explain () {
      const seed = seeds[0] as ClusterNode
      return await firstError(node(seed.host, seed.port, DIAGNOSE), ['PING'])
    },
    cluster (options, clusterOptions = {}) {
      const perNode: RedisOptions = { ...BASE_OPTIONS, ...security, ...options }
      const whole: Record<string, unknown> = {}
      for (const name of CLUSTER_LEVEL) {
        if (perNode[name] !== undefined) whole[name] = perNode[name]
        delete perNode[name]
      }
      return new Cluster(seeds.map(s => ({ host: s.host, port: s.port })), {
        redisOptions: perNode,
        clusterRetryStrategy: reconnectDelayMs,
        // A failover or a slot in migration: wait and retry rather than fail.
        retryDelayOnFailover: 200,
        retryDelayOnClusterDown: 200,
        retryDelayOnTryAgain: 100,
        maxRedirections: 16,
        // No periodic refresh here: ioredis re-arms its refresh timer when a
        // refresh in flight ends after disconnect(), which then keeps the
        // process alive. The cluster reader refreshes on its own timer
        // (CLUSTER_REFRESH_MS); every client refreshes on MOVED.
        slotsRefreshInterval: 0,
        slotsRefreshTimeout: 2000,
        enableOfflineQueue: true,
        ...whole,
        // ioredis retries a cluster pipeline after MOVED or ASK only when every
        // command in it was redirected alike: an auto-pipelined batch with one
        // key of a slot being moved failed with MOVED. Each command is its own
        // request, so each follows its redirection.
        enableAutoPipelining: false,
        // TLS: each seed by its name, as given (see the file header).
        ...(security.tls !== undefined ? { dnsLookup: keepHostName } : {}),
        ...clusterOptions,
      })
    },
  }
}

/** A `dnsLookup` that resolves nothing: the host name is connected to, and its certificate checked against it. */
function keepHostName (address: string, callback: (err: Error | null, address: string) => void): void {
  callback(null, address)
}

export function isClusterFactory (c: RedisConnectionFactory | undefined): c is ClusterConnectionFactory {
  return (c as Partial<ClusterConnectionFactory> | undefined)?.kind === 'cluster'
}

/** The number of hash slots of a Redis Cluster. */
export const SLOTS = 16384

const CRC16_TABLE = ((): Uint16Array => {
  const table = new Uint16Array(256)
  for (let i = 0; i < 256; i++) {
    let crc = i << 8
    for (let j = 0; j < 8; j++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
    table[i] = crc
  }
  return table
})()

/** The hash slot of `key` (CRC16/XMODEM of its hash tag, or of the whole key), as Redis Cluster computes it. */
export function keySlot (key: string): number {
  let bytes = Buffer.from(key, 'utf8')
  const open = bytes.indexOf(0x7b) // {
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1) // }
    if (close > open + 1) bytes = bytes.subarray(open + 1, close)
  }
  let crc = 0
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ b) & 0xff] as number)
  return crc % SLOTS
}
