/**
 * `POST /publish` on the in-memory engine: the same append, trim and expiry
 * as on Redis, done by {@link MemorySource.append} in one synchronous step.
 */
import type { AppendOptions } from '../core/publish.js'
import type { StreamId } from '../core/stream-id.js'
import type { MemorySource } from './memory-source.js'
import type { Publisher } from './publisher.js'

export class MemoryPublisher implements Publisher {
  constructor (private readonly source: MemorySource) {}

  async publish (key: string, fields: string[], opts: AppendOptions): Promise<StreamId> {
    return this.source.append(key, fields, {
      ...(opts.maxLen !== undefined ? { maxLen: opts.maxLen } : {}),
      ...(opts.minId !== undefined ? { minId: opts.minId } : {}),
      ...(opts.expireSeconds !== undefined && opts.expireSeconds > 0 ? { expireMs: opts.expireSeconds * 1000 } : {}),
    })
  }
}
