/**
 * Where `POST /publish` writes: one method, so each engine (Redis, in-memory)
 * supplies its own without the stream source interface growing a write side.
 */
import type { AppendOptions } from '../core/publish.js'
import type { StreamId } from '../core/stream-id.js'

export type { AppendOptions }

export interface Publisher {
  /**
   * Appends one entry (`fields`: flat field/value list, already validated) to
   * stream `key` with a `*` id, trims it (`maxLen` or `minId`, approximate)
   * and sets its expiry (`expireSeconds` > 0) in one step. Resolves with the
   * new entry's id.
   */
  publish (key: string, fields: string[], opts: AppendOptions): Promise<StreamId>
  /** Releases connections; called once when the gateway stops. */
  close? (): Promise<void>
}

/** The engine cannot be reached now: the write did not happen, retry later. */
export class PublisherUnavailableError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PublisherUnavailableError'
  }
}
