/**
 * The one place an engine is chosen: by config, from a table. A new engine
 * is one file exporting its maker plus its line here; a new way to reach
 * Redis (Sentinel) or a new live reader (Cluster) goes in
 * redis-connection.ts or live-readers.ts instead (docs/engine.md).
 */
import type { Config } from '../core/config.js'
import type { Engine, EngineDeps } from './engine.js'
import { MemoryControlStore } from './memory-control.js'
import { memoryEngine } from './memory-engine.js'
import { connectionFor } from './redis-connection.js'
import { RedisPublisher } from './redis-publisher.js'
import { redisEngine } from './redis-engine.js'
import { clusterConnection, parseClusterNode } from './cluster-connection.js'
import { sentinelConnection, sentinelTargetOf } from './sentinel-connection.js'
import type { StreamSource } from './stream-source.js'

const ENGINES = {
  memory: memoryEngine,
  redis: redisEngine,
} as const satisfies Record<string, (config: Config, deps: EngineDeps) => Engine>

export type EngineKind = keyof typeof ENGINES

/** Redis when REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS is set; otherwise the in-memory engine (a first-run mode). */
export function engineKind (config: Config): EngineKind {
  return config.redisUrl === undefined && config.redisClusterNodes.length === 0 && config.redisSentinels.length === 0 ? 'memory' : 'redis'
}

/** The engine `config` asks for, made and not yet started. */
export function createEngine (config: Config, deps: EngineDeps): Engine {
  return ENGINES[engineKind(config)](config, deps)
}

/**
 * An engine around a source made elsewhere (an embedder's own): readiness
 * reports its connection state and live reason; `POST /publish` writes to
 * Redis at REDIS_URL (or the cluster at REDIS_CLUSTER_NODES, or the
 * Sentinels' master) when it is set. Its control plane is in process
 * (per replica), as the memory engine's.
 */
export function engineOf (source: StreamSource, config: Config): Engine {
  const url = config.redisUrl
  const nodes = config.redisClusterNodes
  const sentinel = sentinelTargetOf(config)
  return {
    source,
    // An embedder's source: revocations and limits are this replica's.
    control: new MemoryControlStore({ maxTokenLifetimeMs: config.controlMaxTokenLifetimeMs }),
    createPublisher: () => nodes.length > 0
      ? new RedisPublisher({ url: `cluster:${nodes.join(',')}`, connection: clusterConnection(nodes.map(parseClusterNode), config.redisAccess) })
      : sentinel !== undefined
        ? new RedisPublisher({ connection: sentinelConnection(sentinel, config.redisAccess) })
        : url === undefined ? undefined : new RedisPublisher({ url, connection: connectionFor(url, config.redisAccess) }),
    readiness: () => ({ redis: source.state, live: source.liveReason ?? 'flowing' }),
  }
}
