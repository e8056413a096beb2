/**
 * Where events come from. Redis Streams in production; any engine with the
 * same semantics (ordered, monotonic `<ms>-<seq>` ids, history, trimming) can
 * stand in. The contract test suite runs against every implementation.
 */
import type { StreamId } from '../core/stream-id.js'

export interface RawEntry {
  readonly id: StreamId
  /** Flat field/value list, as XADD took it. */
  readonly fields: readonly string[]
}

/** Receives new entries of watched keys, in stream order, never twice. */
export type EntriesListener = (key: string, entries: readonly RawEntry[]) => void

export type SourceState = 'connecting' | 'ready' | 'down'

/**
 * The engine lost the history of these watched keys: each starts over from
 * 0-0 (a new epoch: nothing it holds now was read before), or, for a key in
 * `from`, from that id (a failover to a replica that lacked the newest
 * entries read: what it holds up to that id was read already, what followed
 * is gone).
 */
export type ResetListener = (keys: readonly string[], from?: ReadonlyMap<string, StreamId>) => void

/**
 * The live side of an engine: which keys are read live, and the one listener
 * their new entries go to. Readiness asks it whether live reads flow.
 */
export interface LiveFeed {
  /** Prepares live reading; called once before the first `watch`. */
  start? (): Promise<void>
  /** Sets the one listener that receives entries of watched keys. */
  setListener (listener: EntriesListener): void
  /** Sets the one listener told when the engine lost its data. */
  setResetListener? (listener: ResetListener): void
  /**
   * Starts reading `key` live from just after `afterId`. The first entries
   * reported are the ones after `afterId`: none is skipped, even if written
   * before this call returns.
   */
  watch (key: string, afterId: StreamId): void
  /** Stops reading `key`; entries already in flight for it may still arrive. */
  unwatch (key: string): void
  /** Number of keys being read live. */
  readonly watchedKeys: number
  /** Connection state, for readiness. */
  readonly state: SourceState
  /**
   * Why live reads do not flow although connected (a reader failing, a
   * probe not seen in time, a server that cannot be read), or undefined
   * when they flow. Readiness needs both. Engines without a live feed to
   * prove leave it out.
   */
  readonly liveReason?: string | undefined
}

/**
 * The history side of an engine: reads of what a stream holds, for resume,
 * catch-up and gap detection. Every call is one round trip (or none).
 */
export interface HistoryQueries {
  /** Newest entry id, or `undefined` if the stream is empty or absent. */
  tail (key: string): Promise<StreamId | undefined>
  /** Oldest retained entry id, or `undefined` if the stream is empty or absent. */
  head (key: string): Promise<StreamId | undefined>
  /** Ids of the newest `count` entries, newest first (fewer if the stream is shorter). */
  newestIds (key: string, count: number): Promise<StreamId[]>
  /** Up to `count` entries with ids strictly after `afterId`, oldest first. */
  range (key: string, afterId: StreamId, count: number): Promise<RawEntry[]>
  /**
   * How many entries were ever removed from the stream (trimmed, deleted):
   * entries added minus those retained; 0 for a missing stream; `undefined`
   * where the engine cannot tell (Redis before 7.0). A cursor of 0-0 (the
   * stream was empty) is checked with it: nothing removed, nothing lost.
   */
  entriesRemoved (key: string): Promise<number | undefined>
  /** Whether an entry with exactly this id is retained. */
  has (key: string, id: StreamId): Promise<boolean>
  /**
   * When the engine's current dataset began (ms, the engine's clock): a
   * cursor older than it points into history the engine may have lost.
   * Undefined where the engine cannot lose history without trimming.
   */
  readonly epochMs?: number | undefined
}

/** An engine's whole read side: its live feed and its history queries. */
export interface StreamSource extends LiveFeed, HistoryQueries {
  /** Stops live reads and releases connections; called once. */
  close (): Promise<void>
}
