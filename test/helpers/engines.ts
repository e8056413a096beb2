/**
 * The stream engines under one test adapter, for the contract suite: a
 * source (what the gateway reads) and a producer (what writes to it) per
 * engine. Redis engines produce with XADD/XTRIM/XDEL/PEXPIRE on the test's
 * own client; the memory engine with its producer API.
 */
import type { Cluster, Redis } from 'ioredis'
import pino from 'pino'
import type { StreamId } from '../../src/core/stream-id.js'
import { MemorySource } from '../../src/source/memory-source.js'
import { RedisSource } from '../../src/source/redis-source.js'
import { clusterConnection, parseClusterNode } from '../../src/source/cluster-connection.js'
import { startCluster, type TestCluster } from './cluster.js'
import type { StreamSource } from '../../src/source/stream-source.js'
import { startRedis, uniquePrefix, type TestRedis } from './redis.js'
import { sentinelConnection } from '../../src/source/sentinel-connection.js'
import { startSentinel, type TestSentinel } from './sentinel.js'

export interface ProducerTrim {
  readonly maxLen?: number
  readonly minId?: StreamId
}

/** Writes to an engine; every call resolves once the engine has applied it. */
export interface Producer {
  /** XADD `*` (with exact MAXLEN / MINID trimming when given); resolves with the id. */
  append (key: string, fields: Record<string, string> | string[], trim?: ProducerTrim): Promise<StreamId>
  /** XTRIM, exact; resolves with the number removed. */
  trim (key: string, trim: ProducerTrim): Promise<number>
  /** XDEL of one entry; resolves with whether it was there. */
  delete (key: string, id: StreamId): Promise<boolean>
  /** PEXPIRE; resolves with whether the stream exists. */
  expire (key: string, ms: number): Promise<boolean>
}

export function redisProducer (client: Redis | Cluster): Producer {
  const trimArgs = (trim: ProducerTrim = {}): string[] =>
    trim.maxLen !== undefined ? ['MAXLEN', String(trim.maxLen)] : trim.minId !== undefined ? ['MINID', trim.minId] : []
  const flat = (fields: Record<string, string> | string[]): string[] => Array.isArray(fields) ? fields : Object.entries(fields).flat()
  return {
    async append (key, fields, trim) {
      return await (client.call('XADD', key, ...trimArgs(trim), '*', ...flat(fields)) as Promise<string>)
    },
    async trim (key, trim) {
      return await (client.call('XTRIM', key, ...trimArgs(trim)) as Promise<number>)
    },
    async delete (key, id) {
      return await client.xdel(key, id) === 1
    },
    async expire (key, ms) {
      return await client.pexpire(key, ms) === 1
    },
  }
}

export function memoryProducer (source: MemorySource): Producer {
  return {
    async append (key, fields, trim) { return source.append(key, fields, trim) },
    async trim (key, trim) { return source.trim(key, trim) },
    async delete (key, id) { return source.delete(key, id) },
    async expire (key, ms) { return source.expire(key, ms) },
  }
}

export interface EngineUnderTest {
  readonly source: StreamSource
  readonly producer: Producer
  /** A key prefix of its own: tests never see each other's keys. */
  readonly prefix: string
  close (): Promise<void>
}

export interface EngineFactory {
  readonly name: string
  /** A fresh source and producer, started and ready to watch. */
  create (): Promise<EngineUnderTest>
  /** Environment for a gateway on this engine (REDIS_URL, or none for memory). */
  gatewayEnv (): Promise<Record<string, string>>
  /** A producer for what a gateway built with {@link gatewayEnv} reads. */
  gatewayProducer (source: StreamSource): Promise<Producer>
  /** Stops what the factory started (its redis-server). */
  stop (): Promise<void>
}

const silent = pino({ level: 'silent' })

/** Redis with one live-reading mode; the redis-server starts on first use. */
export function redisEngine (mode: 'block' | 'notify' | 'track'): EngineFactory {
  let server: Promise<TestRedis> | undefined
  const redis = async (): Promise<TestRedis> => {
    server ??= startRedis(mode === 'notify' ? { notify: 'Kt' } : {})
    return await server
  }
  return {
    name: `redis (${mode})`,
    async create () {
      const r = await redis()
      const source = new RedisSource({
        url: r.url,
        keyPrefix: uniquePrefix('wake'),
        shards: 2,
        blockMs: 2000,
        count: 64,
        mode,
        logger: silent,
      })
      await source.ready()
      await source.start()
      return {
        source,
        producer: redisProducer(r.client),
        prefix: uniquePrefix('contract'),
        async close () { await source.close() },
      }
    },
    async gatewayEnv () {
      return { REDIS_URL: (await redis()).url, KEY_PREFIX: uniquePrefix('e2e') }
    },
    async gatewayProducer () {
      return redisProducer((await redis()).client)
    },
    async stop () {
      if (server !== undefined) await (await server).stop()
    },
  }
}

/**
 * A Redis Cluster of 3 masters and 3 replicas (REDIS_CLUSTER_NODES) with no
 * server setting, read by the cluster reader under READER_MODE=auto: a
 * client-tracking feed per master; the cluster starts on first use.
 */
export function clusterEngine (): EngineFactory {
  let cluster: Promise<TestCluster> | undefined
  const started = async (): Promise<TestCluster> => {
    cluster ??= startCluster()
    return await cluster
  }
  return {
    name: 'redis cluster',
    async create () {
      const c = await started()
      // The feeds listen under the key prefix: the contract's keys are under it.
      const prefix = uniquePrefix('contract')
      const source = new RedisSource({
        url: `cluster:${c.seeds}`,
        connection: clusterConnection(c.seeds.split(',').map(parseClusterNode)),
        keyPrefix: prefix,
        shards: 2,
        blockMs: 2000,
        count: 64,
        mode: 'auto',
        logger: silent,
      })
      await source.ready()
      await source.start()
      return {
        source,
        producer: redisProducer(c.client),
        prefix,
        async close () { await source.close() },
      }
    },
    async gatewayEnv () {
      return { REDIS_CLUSTER_NODES: (await started()).seeds, KEY_PREFIX: uniquePrefix('e2e') }
    },
    async gatewayProducer () {
      return redisProducer((await started()).client)
    },
    async stop () {
      if (cluster !== undefined) await (await cluster).stop()
    },
  }
}

/**
 * Redis behind Sentinel (1 master, 1 replica, 3 Sentinels; started on first
 * use): the source reaches the master through the Sentinel connection
 * factory, the producer through a Sentinel-aware client.
 */
export function sentinelEngine (): EngineFactory {
  let topology: Promise<TestSentinel> | undefined
  const sentinel = async (): Promise<TestSentinel> => await (topology ??= startSentinel())
  return {
    name: 'redis (sentinel)',
    async create () {
      const s = await sentinel()
      const source = new RedisSource({
        connection: sentinelConnection({ sentinels: s.sentinels, master: s.master }),
        keyPrefix: uniquePrefix('wake'),
        shards: 2,
        blockMs: 2000,
        count: 64,
        mode: 'block',
        logger: silent,
      })
      await source.ready()
      await source.start()
      return {
        source,
        producer: redisProducer(s.client),
        prefix: uniquePrefix('contract'),
        async close () { await source.close() },
      }
    },
    async gatewayEnv () {
      const s = await sentinel()
      return { REDIS_SENTINELS: s.sentinels.join(','), REDIS_SENTINEL_MASTER: s.master, KEY_PREFIX: uniquePrefix('e2e') }
    },
    async gatewayProducer () {
      return redisProducer((await sentinel()).client)
    },
    async stop () {
      if (topology !== undefined) await (await topology).stop()
    },
  }
}

/** The in-memory engine; `defaultMaxLen` above what any contract test writes. */
export function memoryEngine (): EngineFactory {
  return {
    name: 'memory',
    async create () {
      const source = new MemorySource({ count: 64 })
      return {
        source,
        producer: memoryProducer(source),
        prefix: uniquePrefix('contract'),
        async close () { await source.close() },
      }
    },
    async gatewayEnv () {
      return { KEY_PREFIX: uniquePrefix('e2e') }
    },
    async gatewayProducer (source) {
      if (!(source instanceof MemorySource)) throw new Error(`a gateway without REDIS_URL must run on MemorySource, got ${source.constructor.name}`)
      return memoryProducer(source)
    },
    async stop () {},
  }
}
