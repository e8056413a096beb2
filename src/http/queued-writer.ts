/**
 * What both stream writers share (HTTP/1.1, http1-writer.ts; HTTP/2,
 * http2-writer.ts): everything written to a stream in one tick of the event
 * loop is queued and goes out as one write on the next, and a batch alone
 * in its tick stays the hub's shared batch, so that a fan-out writes one
 * buffer (or one framed chunk) to every stream instead of copying it.
 * Writers with bytes queued are flushed together: one `nextTick` for a
 * whole fan-out, not one per stream, and no closure per stream.
 */
import type { Batch } from '../delivery/hub.js'

export abstract class QueuedWriter {
  /** Only `pendingBatch`, or only `pending`: one batch alone is written as its shared form. */
  protected pending: Buffer[] | undefined
  protected pendingBytes = 0
  protected pendingBatch: Batch | undefined
  private flushQueued = false

  /** Queues bytes for the next tick's write. */
  protected queueBytes (buf: Buffer): void {
    const batch = this.pendingBatch
    if (batch !== undefined) {
      // No longer alone: the batch joins the rest as its plain framed bytes.
      this.pendingBatch = undefined
      const framed = batch.framed()
      this.pending = [framed, buf]
      this.pendingBytes = framed.length + buf.length
      return
    }
    if (this.pending === undefined) this.pending = [buf]
    else this.pending.push(buf)
    this.pendingBytes += buf.length
    this.queue()
  }

  /** Queues a batch: kept whole while it is alone in this tick. */
  protected queueBatch (batch: Batch): void {
    if (this.pending === undefined && this.pendingBatch === undefined) {
      this.pendingBatch = batch
      this.queue()
    } else this.queueBytes(batch.framed())
  }

  /** Forgets what is queued (the writer has taken it to send). */
  protected clearQueued (): void {
    this.pending = undefined
    this.pendingBatch = undefined
    this.pendingBytes = 0
  }

  private queue (): void {
    if (this.flushQueued) return
    this.flushQueued = true
    queueFlush(this)
  }

  /** @internal called on the next tick: writes what was queued. */
  flush (): void {
    this.flushQueued = false
    this.sendQueued()
  }

  /** Writes what is queued, if the stream is still open. */
  protected abstract sendQueued (): void
}

/** Writers with bytes queued this tick, flushed together on the next one. */
const toFlush: QueuedWriter[] = []
let flushScheduled = false

function queueFlush (writer: QueuedWriter): void {
  toFlush.push(writer)
  if (!flushScheduled) {
    flushScheduled = true
    process.nextTick(flushQueued)
  }
}

function flushQueued (): void {
  flushScheduled = false
  // A flush may queue more (a closing stream); they are taken in this pass.
  for (let i = 0; i < toFlush.length; i++) (toFlush[i] as QueuedWriter).flush()
  toFlush.length = 0
}
