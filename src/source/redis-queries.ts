/**
 * The history queries of the Redis engine: what resume, catch-up and gap
 * detection ask of a stream, each one command on the shared command
 * connection (auto-pipelined, so concurrent queries share round trips).
 */
import type { Cluster, Redis } from 'ioredis'
import type { StreamId } from '../core/stream-id.js'
import { toEntry } from './live-reader.js'
import type { HistoryQueries, RawEntry } from './stream-source.js'

export class RedisQueries implements Omit<HistoryQueries, 'epochMs'> {
  constructor (private readonly cmd: Redis | Cluster) {}

  async tail (key: string): Promise<StreamId | undefined> {
    const r = await this.cmd.xrevrange(key, '+', '-', 'COUNT', 1)
    return r[0]?.[0]
  }

  async head (key: string): Promise<StreamId | undefined> {
    const r = await this.cmd.xrange(key, '-', '+', 'COUNT', 1)
    return r[0]?.[0]
  }

  async newestIds (key: string, count: number): Promise<StreamId[]> {
    // COUNT 0 answers nil, not an empty list.
    if (count <= 0) return []
    const r = await this.cmd.xrevrange(key, '+', '-', 'COUNT', count)
    return (r ?? []).map(e => e[0])
  }

  async range (key: string, afterId: StreamId, count: number): Promise<RawEntry[]> {
    if (count <= 0) return []
    const r = await this.cmd.xrange(key, `(${afterId}`, '+', 'COUNT', count)
    return (r ?? []).map(toEntry)
  }

  /** Entries added minus entries retained (XINFO STREAM, Redis 7.0+); 0 for a missing stream. */
  async entriesRemoved (key: string): Promise<number | undefined> {
    let info: unknown
    try {
      info = await this.cmd.xinfo('STREAM', key)
    } catch (err) {
      if (/no such key/i.test((err as Error).message)) return 0
      throw err
    }
    const flat = Array.isArray(info) ? info as unknown[] : []
    const field = (name: string): number | undefined => {
      const i = flat.indexOf(name)
      return i === -1 ? undefined : Number(flat[i + 1])
    }
    const added = field('entries-added')
    const length = field('length')
    return added === undefined || length === undefined ? undefined : added - length
  }

  /** The newest entry at or before `id` (`id` itself when it is there), or undefined when none is. */
  async newestUpTo (key: string, id: StreamId): Promise<StreamId | undefined> {
    const r = await this.cmd.xrevrange(key, id, '-', 'COUNT', 1)
    return r[0]?.[0]
  }

  async has (key: string, id: StreamId): Promise<boolean> {
    const r = await this.cmd.xrange(key, id, id)
    return r.length > 0
  }
}
