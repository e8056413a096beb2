/**
 * The Redis engine: a connection factory for REDIS_URL (redis-connection.ts)
 * or for the master the Sentinels name (sentinel-connection.ts), shared by
 * the source (its command connection and live readers) and the publisher.
 */
import type { Config } from '../core/config.js'
import type { Engine, EngineDeps } from './engine.js'
import { connectionFor } from './redis-connection.js'
import { clusterConnection, parseClusterNode } from './cluster-connection.js'
import { RedisControlStore } from './redis-control.js'
import { RedisPublisher } from './redis-publisher.js'
import { RedisSource } from './redis-source.js'
import { sentinelConnection, sentinelTargetOf } from './sentinel-connection.js'

/** Made when REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS is set. Its control store shares the connection factory. */
export function redisEngine (config: Config, deps: EngineDeps): Engine {
  const nodes = config.redisClusterNodes
  const sentinel = sentinelTargetOf(config)
  // A Redis Cluster (REDIS_CLUSTER_NODES), a Sentinel-managed Redis
  // (REDIS_SENTINELS) or one Redis (REDIS_URL); the same access for each.
  const url = nodes.length > 0 ? `cluster:${nodes.join(',')}` : config.redisUrl
  const connection = nodes.length > 0
    ? clusterConnection(nodes.map(parseClusterNode), config.redisAccess)
    : sentinel !== undefined ? sentinelConnection(sentinel, config.redisAccess) : connectionFor(url as string, config.redisAccess)
  const hooks = deps.hooks ?? {}
  const source = new RedisSource({
    url,
    connection,
    keyPrefix: config.keyPrefix,
    shards: config.readerShards,
    blockMs: config.readerBlockMs,
    maxKeysPerSecond: config.readerBlockMaxKeysPerSecond,
    count: config.readerCount,
    mode: config.readerMode,
    logger: deps.logger.child({ component: 'redis' }),
    probeIntervalMs: config.readerProbeIntervalMs,
    ...hooks,
  })
  const control = new RedisControlStore({
    connection,
    keyPrefix: config.keyPrefix,
    leaseMs: config.controlLeaseMs,
    maxTokenLifetimeMs: config.controlMaxTokenLifetimeMs,
    presence: config.presenceEnabled,
    logger: deps.logger.child({ component: 'control' }),
  })
  return {
    source,
    control,
    createPublisher: () => new RedisPublisher({ url, connection }),
    readiness: () => ({
      redis: source.state,
      live: source.liveReason ?? 'flowing',
      ...(source.mode !== undefined ? { reader: source.mode } : {}),
      // A Redis Cluster: the feed of each master (client tracking, or keyspace notifications).
      ...(source.feeds !== undefined ? { feeds: source.feeds } : {}),
    }),
  }
}
