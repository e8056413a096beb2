/**
 * The HTTP/2 stream writer: SSE bytes written straight to the request's
 * `Http2Stream`, which node cuts into DATA frames; one write per stream per
 * tick. No chunk framing, so a batch alone in its tick goes out as the hub's
 * shared `framed()` buffer, the same bytes for every stream it fans out to.
 *
 * Back-pressure is per stream: HTTP/2 flow control stops the DATA of a
 * stream whose client does not read (its window is spent) while the other
 * streams of the connection go on, and what waits stays in this stream's
 * writable buffer. Past SLOW_CLIENT_BUFFER_BYTES the session is told, stops
 * taking live events and catches up from Redis once the stream drains, as
 * over HTTP/1.1.
 *
 * HTTP/2 has no connection-specific headers (`Connection`, `Keep-Alive`,
 * `Transfer-Encoding`: node refuses them) and no socket to write to: the
 * headers go out with `stream.respond`, never through the compatibility
 * response's socket.
 */
import type { OutgoingHttpHeaders } from 'node:http'
import { constants, type Http2ServerResponse, type ServerHttp2Stream } from 'node:http2'
import type { Batch } from '../delivery/hub.js'
import { QueuedWriter } from './queued-writer.js'
import type { StreamWriter, StreamWriterOwner } from './stream-writer.js'

const WRITER = Symbol('sse-gateway h2 stream writer')

/** A stream and the writer that writes to it (one shared close listener, no closure per stream). */
type WriterStream = ServerHttp2Stream & { [WRITER]?: Http2StreamWriter | undefined }

/** Headers that HTTP/2 forbids (RFC 9113, 8.2.2); node throws ERR_HTTP2_INVALID_CONNECTION_HEADERS on them. */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'http2-settings'])

function closeWriterOfStream (this: WriterStream): void {
  this[WRITER]?.owner?.onClosed()
}

const NOT_OPEN = 0
const OPEN = 1
const ENDED = 2
type Phase = typeof NOT_OPEN | typeof OPEN | typeof ENDED

/** Per open HTTP/2 stream: the stream and what is queued for the next tick. */
export class Http2StreamWriter extends QueuedWriter implements StreamWriter {
  /** @internal read by the shared close listener. */
  owner: StreamWriterOwner | undefined
  lastWriteAt = 0
  private phase: Phase = NOT_OPEN
  private readonly stream: WriterStream

  /**
   * @param res the compatibility response of the `GET /events` request
   *   (hijacked); only its stream is used.
   * @param maxBufferedBytes past this many bytes held, the owner is told
   *   it is backed up (SLOW_CLIENT_BUFFER_BYTES).
   */
  constructor (res: Http2ServerResponse, private readonly maxBufferedBytes: number) {
    super()
    this.stream = res.stream
  }

  get protocol (): 'h2' {
    return 'h2'
  }

  get bufferedBytes (): number {
    return this.stream.writableLength
  }

  bind (owner: StreamWriterOwner): void {
    this.owner = owner
    const s = this.stream
    if (s.destroyed || s.closed) {
      owner.onClosed()
      return
    }
    s[WRITER] = this
    s.on('close', closeWriterOfStream)
  }

  open (headers: OutgoingHttpHeaders): void {
    const out: OutgoingHttpHeaders = { [constants.HTTP2_HEADER_STATUS]: 200 }
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase()
      if (value !== undefined && !CONNECTION_HEADERS.has(lower)) out[lower] = value
    }
    this.stream.respond(out)
    this.phase = OPEN
  }

  write (bytes: string | Buffer): void {
    if (!this.writable()) return
    this.queueBytes(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes)
  }

  writeBatch (batch: Batch): void {
    // Alone in this tick, it goes out as the hub's shared buffer.
    if (this.writable()) this.queueBatch(batch)
  }

  awaitDrain (): void {
    // A closure only for a stream that stopped reading, not per stream.
    this.stream.once('drain', () => {
      if (this.phase !== ENDED) this.owner?.onDrain()
    })
  }

  end (lastFrame?: string | Buffer): void {
    const was = this.phase
    if (was === ENDED) return
    this.phase = ENDED
    const s = this.stream
    if (s[WRITER] === this) {
      s[WRITER] = undefined
      s.off('close', closeWriterOfStream)
    }
    if (was === NOT_OPEN || s.destroyed || s.writableEnded) return
    this.send()
    if (lastFrame !== undefined) s.end(lastFrame)
    else s.end()
  }

  destroy (): void {
    // RST_STREAM CANCEL for this stream only: the connection's other streams go on.
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL)
  }

  private writable (): boolean {
    return this.phase === OPEN && !this.stream.destroyed
  }

  /** Writes what was queued, on the next tick. */
  protected sendQueued (): void {
    if (this.phase === OPEN) this.send()
  }

  private send (): void {
    const chunks = this.pending
    const shared = this.pendingBatch
    const bytes = this.pendingBytes
    this.clearQueued()
    if (shared === undefined && (chunks === undefined || bytes === 0)) return
    const s = this.stream
    if (s.destroyed || s.writableEnded) return
    s.write(shared !== undefined
      ? shared.framed()
      : (chunks as Buffer[]).length === 1 ? (chunks as Buffer[])[0] as Buffer : Buffer.concat(chunks as Buffer[], bytes))
    this.lastWriteAt = Date.now()
    // Flow control holds this stream's DATA: let Redis hold the rest.
    if (this.phase !== ENDED && s.writableLength >= this.maxBufferedBytes) this.owner?.onBackedUp()
  }
}
