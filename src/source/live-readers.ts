/**
 * The live readers of the Redis engine, by name: the one place a reader is
 * chosen from. A new reader (a slot-aware one for Redis Cluster, say: one
 * blocking connection per primary, keys grouped by hash slot) is one file
 * implementing LiveReader plus its line here.
 */
import { ShardedReader } from './blocking-reader.js'
import type { LiveReaderFactory } from './live-reader.js'
import { NotifyReader } from './notify-reader.js'
import { ClusterReader } from './cluster-reader.js'
import { TrackingReader } from './tracking-reader.js'

export const LIVE_READERS = {
  /** Sharded blocking XREAD: any Redis, no server setting needed. */
  block: (opts, host) => new ShardedReader(opts, host),
  /** Keyspace notifications, then XREAD of the changed keys only. */
  notify: (opts, host) => new NotifyReader(opts, host),
  /** Redis Cluster: a feed per master (client tracking, or keyspace notifications: cluster-feed.ts), then single-key XREADs routed by slot. */
  cluster: (opts, host) => new ClusterReader(opts, host),
  /** Client tracking (Redis >= 6, no server setting), then XREAD of the changed keys only. */
  track: (opts, host) => new TrackingReader(opts, host),
} as const satisfies Record<string, LiveReaderFactory>

/** The name of a live reader. */
export type LiveReaderKind = keyof typeof LIVE_READERS

/** Every reader's name (the reader-mode gauge has one series each). */
export const LIVE_READER_KINDS = Object.keys(LIVE_READERS) as LiveReaderKind[]
