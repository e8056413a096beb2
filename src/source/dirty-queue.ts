/**
 * The keys a live reader must read, each once: marked by a signal (a
 * notification, an invalidation, a full page), gathered over one turn of the
 * event loop, then handed out in one pass. A key already being read stays
 * queued and is handed out again once that read is back (the flag, not a
 * second entry); a key removed meanwhile is dropped. The flags live on the
 * key objects and the queue arrays are reused, so a burst allocates nothing
 * per key (see WatchedKey in changed-keys.ts for why that matters).
 */

/** What the queue needs of a key. */
export interface QueuedKey {
  dirty: boolean
  reading: boolean
  removed: boolean
}

/** Takes the keys ready to read, one at a time, then hears that the pass ended. */
export interface DirtyQueueSink<K> {
  /** `k` is ready: its `reading` flag is set; the sink clears it when its read is back. */
  take (k: K): void
  /** The pass ended: every ready key was taken. */
  passed (): void
}

export class DirtyQueue<K extends QueuedKey> {
  private queue: K[] = []
  private spare: K[] = []
  private scheduled = false
  private readonly flushNow = (): void => {
    this.scheduled = false
    this.flush()
  }

  constructor (private readonly sink: DirtyQueueSink<K>) {}

  /** Keys marked and not yet handed out. */
  get pending (): number {
    return this.queue.length
  }

  /** Queues `k` (once) unless it is removed. */
  mark (k: K): void {
    if (k.removed || k.dirty) return
    k.dirty = true
    this.queue.push(k)
    this.schedule()
  }

  /** A pass at the next turn of the event loop, if anything is queued. */
  schedule (): void {
    if (this.scheduled || this.queue.length === 0) return
    this.scheduled = true
    setImmediate(this.flushNow)
  }

  private flush (): void {
    const queued = this.queue
    this.queue = this.spare
    for (const k of queued) {
      if (k.removed) {
        k.dirty = false
        continue
      }
      // Being read: read again once that read is back (it stays dirty).
      if (k.reading) {
        this.queue.push(k)
        continue
      }
      k.dirty = false
      k.reading = true
      this.sink.take(k)
    }
    queued.length = 0
    this.spare = queued
    this.sink.passed()
  }
}
