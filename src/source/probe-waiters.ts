/**
 * Probes waiting for the id of their entry to be read: how a live reader
 * proves it flows. Every waiter is kept until an id at or past its own is
 * read, so probes that overlap (one timed out, the next under way) each
 * settle.
 */
import { ZERO_ID, compareIds, type StreamId } from '../core/stream-id.js'

export class ProbeWaiters {
  /** The newest id read of the probe stream. */
  private seen: StreamId = ZERO_ID
  private readonly waiting: Array<{ id: StreamId, resolve: () => void }> = []

  /** Resolves once `id` (or a later one) has been read. */
  async until (id: StreamId): Promise<void> {
    if (compareIds(this.seen, id) >= 0) return
    await new Promise<void>(resolve => { this.waiting.push({ id, resolve }) })
  }

  /** An id of the probe stream was read. */
  read (id: StreamId): void {
    if (compareIds(id, this.seen) <= 0) return
    this.seen = id
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const w = this.waiting[i] as { id: StreamId, resolve: () => void }
      if (compareIds(w.id, id) <= 0) {
        this.waiting.splice(i, 1)
        w.resolve()
      }
    }
  }

  get pending (): boolean {
    return this.waiting.length > 0
  }
}
