/**
 * What every live reader of the Redis engine is: it reads watched keys from
 * explicit ids and reports their new entries to its host, in order, never
 * twice. A reader knows nothing of the source that made it: it gets its
 * settings, a connection factory, a health record and a few callbacks
 * ({@link ReaderHost}), so a reader can be built and tested alone.
 *
 * The readers (see live-readers.ts for the table that names them):
 * - blocking-reader.ts: sharded blocking XREAD, for any Redis;
 * - notify-reader.ts: keyspace notifications, then XREAD of changed keys;
 * - tracking-reader.ts: client-tracking invalidations, then XREAD of changed keys
 *   (both through changed-keys.ts).
 */
import type { Logger } from 'pino'
import { compareIds, type StreamId } from '../core/stream-id.js'
import type { LiveHealth } from './live-health.js'
import type { RedisConnectionFactory } from './redis-connection.js'
import type { RawEntry } from './stream-source.js'

/** Reads watched keys live and reports their entries to its host. */
export interface LiveReader {
  /** Reads `key` from just after `afterId` (again from there if already read). */
  add (key: string, afterId: StreamId): void
  remove (key: string): void
  /** Resolves once an entry written now has been read live (a proof of flow). */
  probe (): Promise<void>
  /** Every key and the last id read live of it: where a reader that replaces this one starts. */
  positions (): Iterable<[string, StreamId]>
  /** Which node fails, when the reader reads several (a Redis Cluster): `feed-silent 127.0.0.1:7002`. */
  trouble? (): string | undefined
  /** Each node read, whether live reads from it flow now, and what feeds it (a Redis Cluster: each master, `track` or `notify`). */
  nodes? (): Array<[string, boolean, string]>
  close (): Promise<void>
}

/** What a live reader calls back: the source's side, as callbacks. */
export interface ReaderHost {
  /** Entries of a watched key, in order, none read before. */
  emit (key: string, entries: RawEntry[]): void
  /** Settled (or undefined) while live reads may go on; pending after a reconnect until the server is checked. */
  gate (): Promise<void> | undefined
  /** A connection of this reader closed: Redis may have restarted. */
  connectionLost (): void
  /** Appends to `key` (a wake or probe stream, MAXLEN 1, short expiry): its id. */
  append (key: string): Promise<StreamId>
}

/** What a live reader is made with, besides its host. */
export interface LiveReaderOptions {
  readonly connection: RedisConnectionFactory
  readonly keyPrefix: string
  /** This replica's random id: its wake and probe streams are its own. */
  readonly instance: string
  /** The database the command connection uses (the keyspace channel names it). */
  readonly db: number
  /** Blocking reader: connections, each reading a share of the keys. */
  readonly shards: number
  /** Blocking reader: BLOCK of each XREAD, in ms. */
  readonly blockMs: number
  /** Blocking reader: most keys listed per second over all shards; 0: no limit. */
  readonly maxKeysPerSecond: number
  /** Entries per key per XREAD (COUNT). */
  readonly count: number
  /**
   * The READER_MODE asked for (default `auto`). The cluster reader's feeds
   * follow it: client tracking per master, keyspace notifications for
   * `notify` (cluster-feed.ts).
   */
  readonly mode?: 'auto' | 'block' | 'notify' | 'track'
  readonly logger: Logger
  /** Readiness: each reader reports its failures and recoveries here. */
  readonly health: LiveHealth
  /** After each XREAD, its round trip in seconds (metrics). */
  readonly onRead?: ((seconds: number) => void) | undefined
  /** Each failed read (metrics). */
  readonly onReaderError?: (() => void) | undefined
}

/** Makes a live reader; one per kind, in the table of live-readers.ts. */
export type LiveReaderFactory = (opts: LiveReaderOptions, host: ReaderHost) => LiveReader

/** An XREAD reply in RESP2: per key, its entries as `[id, fields]`. */
export type XReadReply = Array<[string, Array<[string, string[]]>]> | null

/** XREAD as ioredis sends it, with the reply typed. */
export type Xread = (...args: string[]) => Promise<XReadReply>

export function toEntry (e: [string, string[]]): RawEntry {
  return { id: e[0], fields: e[1] }
}

/**
 * Emits the entries of a read of `key` that follow `current` (a read can
 * repeat ones already seen, and a key re-added during the read may have a
 * newer position) and returns the new position, or undefined when nothing
 * was new.
 */
export function advance (host: ReaderHost, key: string, current: StreamId, entries: Array<[string, string[]]>): StreamId | undefined {
  const first = entries[0]
  if (first === undefined) return undefined
  const fresh = compareIds(first[0], current) > 0 ? entries : entries.filter(e => compareIds(e[0], current) > 0)
  const last = fresh[fresh.length - 1]
  if (last === undefined) return undefined
  host.emit(key, fresh.map(toEntry))
  return last[0]
}

/** A timer that does not hold the process open. */
export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms).unref())
}
