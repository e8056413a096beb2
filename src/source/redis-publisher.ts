/**
 * Writing one entry to Redis the way Contract 1 asks: XADD with a `*` id and
 * approximate trimming, plus EXPIRE when asked, as one MULTI/EXEC sent in a
 * single write (one round trip, and a reader never sees a per-user stream
 * that has entries but no expiry).
 */
import type { Cluster, Redis } from 'ioredis'
import type { AppendOptions } from '../core/publish.js'
import type { StreamId } from '../core/stream-id.js'
import { PublisherUnavailableError, type Publisher } from './publisher.js'
import { connectionFor, type RedisConnectionFactory } from './redis-connection.js'
import { isClusterFactory } from './cluster-connection.js'

/**
 * The part of an ioredis client (`Redis` or `Cluster`, any recent major) the
 * helper uses: `multi([[cmd, ...args], ...]).exec()`. Typed by shape so a
 * caller's ioredis version does not have to be ours.
 */
export interface RedisLike {
  multi (commands: unknown[][]): {
    exec (): Promise<Array<[Error | null, unknown]> | null>
  }
}

/** The commands of one append: XADD (trimmed), then EXPIRE when `expireSeconds` > 0. */
export function appendCommands (key: string, fields: readonly string[], opts: AppendOptions): string[][] {
  const trim = opts.minId !== undefined
    ? ['MINID', '~', opts.minId]
    : opts.maxLen !== undefined ? ['MAXLEN', '~', String(opts.maxLen)] : []
  const commands = [['xadd', key, ...trim, '*', ...fields]]
  if (opts.expireSeconds !== undefined && opts.expireSeconds > 0) commands.push(['expire', key, String(opts.expireSeconds)])
  return commands
}

/**
 * Runs {@link appendCommands} as one MULTI/EXEC and returns the entry id.
 * Options are not validated here (see `validateAppendOptions`).
 */
export async function redisAppend (redis: RedisLike, key: string, fields: readonly string[], opts: AppendOptions): Promise<StreamId> {
  const replies = await redis.multi(appendCommands(key, fields, opts)).exec()
  if (replies === null) throw new Error(`XADD to ${key} was not executed (transaction aborted)`)
  for (const [err] of replies) if (err !== null) throw err
  const id = replies[0]?.[1]
  if (typeof id !== 'string') throw new Error(`XADD to ${key} returned no entry id`)
  return id
}

export interface RedisPublisherOptions {
  /** `redis://`, `rediss://` or `unix:///path/redis.sock`; unused when `connection` is given. */
  readonly url?: string
  /** Per-command timeout in ms (default 5000). */
  readonly commandTimeoutMs?: number
  /** How to reach Redis; defaults to the factory for `url` (see connectionFor). */
  readonly connection?: RedisConnectionFactory
}

function isReplyError (err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError'
}

/**
 * The gateway's Redis publisher: its own connection (opened on the first
 * publish, so a gateway nobody publishes through holds none), separate from
 * the reader's. A write that cannot reach Redis fails fast with
 * {@link PublisherUnavailableError} instead of queueing for long.
 */
export class RedisPublisher implements Publisher {
  private readonly client: Redis | Cluster

  constructor (opts: RedisPublisherOptions) {
    const connection = opts.connection ?? connectionFor(opts.url ?? 'redis://127.0.0.1:6379')
    const options = {
      lazyConnect: true,
      connectionName: 'sse-gateway:publish',
      maxRetriesPerRequest: 1,
      commandTimeout: opts.commandTimeoutMs ?? 5000,
      connectTimeout: 5000,
    }
    // A Redis Cluster: the client routes each append by its key's slot (one key per MULTI).
    this.client = isClusterFactory(connection) ? connection.cluster(options) : connection.connect(options)
    // Failures reach the caller of publish(); the event only must not go unhandled.
    this.client.on('error', () => {})
  }

  async publish (key: string, fields: string[], opts: AppendOptions): Promise<StreamId> {
    try {
      return await redisAppend(this.client, key, fields, opts)
    } catch (err) {
      if (isReplyError(err)) throw err
      throw new PublisherUnavailableError(`Redis is unreachable: ${(err as Error).message}`, { cause: err })
    }
  }

  async close (): Promise<void> {
    this.client.disconnect()
  }
}
