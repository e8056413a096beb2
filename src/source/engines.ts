/**
 * The one place an engine is chosen: by config, from a table. A new engine
 * is one file exporting its maker plus its line here; a new way to reach
 * Redis (Sentinel) or a new live reader (Cluster) goes in
 * redis-connection.ts or live-readers.ts instead (docs/engine.md).
 */
import type { Config } from '../core/config.js'
import type { Engine, EngineDeps } from './engine.js'
import { memoryEngine } from './memory-engine.js'
import { RedisPublisher } from './redis-publisher.js'
import { redisEngine } from './redis-engine.js'
import { sentinelConnection, sentinelTargetOf } from './sentinel-connection.js'
import type { StreamSource } from './stream-source.js'

const ENGINES = {
  memory: memoryEngine,
  redis: redisEngine,
} as const satisfies Record<string, (config: Config, deps: EngineDeps) => Engine>

export type EngineKind = keyof typeof ENGINES

/** Redis when REDIS_URL or REDIS_SENTINELS is set; otherwise the in-memory engine (a first-run mode). */
export function engineKind (config: Config): EngineKind {
  return config.redisUrl === undefined && config.redisSentinels.length === 0 ? 'memory' : 'redis'
}

/** The engine `config` asks for, made and not yet started. */
export function createEngine (config: Config, deps: EngineDeps): Engine {
  return ENGINES[engineKind(config)](config, deps)
}

/**
 * An engine around a source made elsewhere (an embedder's own): readiness
 * reports its connection state and live reason; `POST /publish` writes to
 * Redis at REDIS_URL (or the Sentinels' master) when it is set.
 */
export function engineOf (source: StreamSource, config: Config): Engine {
  const url = config.redisUrl
  const sentinel = sentinelTargetOf(config)
  return {
    source,
    createPublisher: () => sentinel !== undefined
      ? new RedisPublisher({ connection: sentinelConnection(sentinel) })
      : url === undefined ? undefined : new RedisPublisher({ url }),
    readiness: () => ({ redis: source.state, live: source.liveReason ?? 'flowing' }),
  }
}
