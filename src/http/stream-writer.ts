/**
 * The stream writer seam: a {@link Session} decides what a client gets (its
 * cursors, the delivery rule, catch-up, gaps, control events); a writer owns
 * the bytes: how they go on the wire, one write per tick, how much the
 * transport holds, when it drains, and how the stream ends: HTTP/1.1
 * chunks on the socket (http1-writer.ts), or DATA frames on the request's
 * `Http2Stream` (http2-writer.ts); see docs/stream-writer.md.
 *
 * The frame-once fan-out crosses the seam whole: a batch is handed over as
 * the hub's shared {@link Batch}, never copied per session, and a writer
 * that must add framing caches it on the batch ({@link Batch.encoded}).
 */
import type { OutgoingHttpHeaders } from 'node:http'
import type { Batch } from '../delivery/hub.js'

/**
 * What a writer tells its session. The session is the listener itself (no
 * closure per stream): these are called on it with no argument.
 */
export interface StreamWriterOwner {
  /**
   * Bytes went out and the transport now holds at least the writer's limit:
   * the client is not reading. Called after each such write, until the
   * session stops writing.
   */
  onBackedUp (): void
  /** The transport's buffer emptied, once after each {@link StreamWriter.awaitDrain}. */
  onDrain (): void
  /** The connection closed (the client left, or it was destroyed). */
  onClosed (): void
}

/** The HTTP version a stream goes over: the `protocol` label of the connection metrics. */
export type StreamProtocol = 'h1' | 'h2'

export interface StreamWriter {
  /** A getter on the class, not a field: nothing per stream. */
  readonly protocol: StreamProtocol
  /** Bytes handed to the transport and not yet sent (the client's backlog). */
  readonly bufferedBytes: number
  /** Time (ms since epoch) of the last write to the transport; 0 before any (heartbeats). */
  readonly lastWriteAt: number

  /**
   * Watches the connection for `owner`: from now on its end reaches
   * {@link StreamWriterOwner.onClosed}. If it is already closed, that
   * happens before this returns.
   */
  bind (owner: StreamWriterOwner): void
  /** Sends the `200` and `headers`: the stream is open and takes writes. */
  open (headers: OutgoingHttpHeaders): void
  /**
   * Queues bytes (an event body, an `id:` line, a control event, a
   * heartbeat); what is queued in one tick leaves in one write. Ignored
   * before {@link open} and after {@link end}.
   */
  write (bytes: string | Buffer): void
  /** Queues `batch.framed()` (see {@link write}), sharing the batch's bytes with every stream it fans out to. */
  writeBatch (batch: Batch): void
  /** Calls {@link StreamWriterOwner.onDrain} once when the buffered bytes have gone out. */
  awaitDrain (): void
  /**
   * Ends the stream: what is queued, then `lastFrame` (a `retry:`, a last
   * control event), then the end of the body; if it never opened, only
   * stops watching the connection. Idempotent.
   */
  end (lastFrame?: string | Buffer): void
  /** Drops the connection at once (a client that stopped reading). */
  destroy (): void
}
