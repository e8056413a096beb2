/**
 * The history queries of the Redis engine: what resume, catch-up and gap
 * detection ask of a stream, each one command on the shared command
 * connection (auto-pipelined, so concurrent queries share round trips).
 */
import type { Cluster, Redis } from 'ioredis'
import type { StreamId } from '../core/stream-id.js'
import { toEntry } from './live-reader.js'
import { ACL_RULES, withGrant } from './server-check.js'
import type { HistoryQueries, RawEntry } from './stream-source.js'

/**
 * A refused query (an ACL without XRANGE, say) fails with the rule it lacks
 * as `grant` on its error, which the session's log line names.
 */
export class RedisQueries implements Omit<HistoryQueries, 'epochMs'> {
  private readonly grant: string
  constructor (private readonly cmd: Redis | Cluster, prefix: string) {
    this.grant = ACL_RULES.history(prefix)
  }

  /** A query's reply, or its error marked with the rule it lacked. */
  private async ask<T> (reply: Promise<T>): Promise<T> {
    try {
      return await reply
    } catch (err) {
      throw withGrant(err, this.grant)
    }
  }

  async tail (key: string): Promise<StreamId | undefined> {
    const r = await this.ask(this.cmd.xrevrange(key, '+', '-', 'COUNT', 1))
    return r[0]?.[0]
  }

  async head (key: string): Promise<StreamId | undefined> {
    const r = await this.ask(this.cmd.xrange(key, '-', '+', 'COUNT', 1))
    return r[0]?.[0]
  }

  async newestIds (key: string, count: number): Promise<StreamId[]> {
    // COUNT 0 answers nil, not an empty list.
    if (count <= 0) return []
    const r = await this.ask(this.cmd.xrevrange(key, '+', '-', 'COUNT', count))
    return (r ?? []).map(e => e[0])
  }

  async range (key: string, afterId: StreamId, count: number): Promise<RawEntry[]> {
    if (count <= 0) return []
    const r = await this.ask(this.cmd.xrange(key, `(${afterId}`, '+', 'COUNT', count))
    return (r ?? []).map(toEntry)
  }

  /** Entries added minus entries retained (XINFO STREAM, Redis 7.0+); 0 for a missing stream. */
  async entriesRemoved (key: string): Promise<number | undefined> {
    let info: unknown
    try {
      info = await this.ask(this.cmd.xinfo('STREAM', key))
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
    const r = await this.ask(this.cmd.xrevrange(key, id, '-', 'COUNT', 1))
    return r[0]?.[0]
  }

  async has (key: string, id: StreamId): Promise<boolean> {
    const r = await this.ask(this.cmd.xrange(key, id, id))
    return r.length > 0
  }
}
