/**
 * The HTTP/1.1 stream writer: SSE bytes as a chunked response body, framed
 * here and written straight to the socket, one write per stream per tick.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Batch } from '../delivery/hub.js'
import { httpChunk, httpChunkOfText } from './http1-chunk.js'
import { QueuedWriter } from './queued-writer.js'
import type { StreamWriter, StreamWriterOwner } from './stream-writer.js'

const WRITER = Symbol('sse-gateway stream writer')

/** A connection and the writer of the stream it carries (see {@link Http1StreamWriter.bind}). */
type WriterSocket = Socket & { [WRITER]?: Http1StreamWriter | undefined }

/**
 * Where a writer is, in one field (idle memory per stream): not open yet;
 * open, writing through the response (which sends the headers, and on a
 * pipelined connection waits for its turn on the socket); open, framing its
 * own chunks onto the connection; ended.
 */
const NOT_OPEN = 0
const THROUGH_RESPONSE = 1
const DIRECT = 2
const ENDED = 3
type Phase = typeof NOT_OPEN | typeof THROUGH_RESPONSE | typeof DIRECT | typeof ENDED

function closeWriterOfSocket (this: WriterSocket): void {
  this[WRITER]?.owner?.onClosed()
}

/**
 * Per open stream: the response, its connection and what is queued for the
 * next tick. Idle memory per stream is a benchmarked figure
 * (bench/idle-memory.ts): fields that most streams never use start empty,
 * and nothing here holds a closure.
 */
export class Http1StreamWriter extends QueuedWriter implements StreamWriter {
  /** @internal read by the shared close listener. */
  owner: StreamWriterOwner | undefined
  lastWriteAt = 0
  private phase: Phase = NOT_OPEN

  /**
   * @param res the response of the `GET /events` request (hijacked).
   * @param connection the connection the request came on.
   * @param maxBufferedBytes past this many bytes held, the owner is told
   *   it is backed up (SLOW_CLIENT_BUFFER_BYTES).
   */
  constructor (
    private readonly res: ServerResponse,
    private readonly connection: Socket,
    private readonly maxBufferedBytes: number
  ) {
    super()
  }

  get protocol (): 'h1' {
    return 'h1'
  }

  get bufferedBytes (): number {
    return this.res.writableLength
  }

  /**
   * Ties the stream to the connection its request came on, from the moment
   * it is counted: whatever happens to the response (it may still wait
   * behind an earlier one on a pipelined connection, and then it never sees
   * the socket close), the stream ends when the connection does.
   */
  bind (owner: StreamWriterOwner): void {
    this.owner = owner
    const s = this.connection as WriterSocket
    if (s.destroyed) {
      owner.onClosed()
      return
    }
    // One shared listener and a field on the socket, not a closure per
    // stream: idle memory per stream is a benchmarked figure.
    s[WRITER] = this
    s.on('close', closeWriterOfSocket)
  }

  open (headers: OutgoingHttpHeaders): void {
    this.res.writeHead(200, headers)
    const connection = this.connection
    // Events are small and must not wait for more to fill a packet.
    connection.setNoDelay(true)
    connection.setKeepAlive(true, 30000)
    connection.setTimeout(0)
    this.phase = THROUGH_RESPONSE
  }

  /**
   * Queues bytes for the socket. Everything queued in one tick goes out as
   * one write: one chunk of the chunked response and one entry in the
   * socket's write queue, however many events it holds (fewer syscalls, and
   * a slow client's buffer holds payload, not per-write bookkeeping).
   */
  write (bytes: string | Buffer): void {
    if (!this.writable()) return
    this.queueBytes(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes)
  }

  writeBatch (batch: Batch): void {
    // Alone in this tick, it goes out as the batch's shared chunk.
    if (this.writable()) this.queueBatch(batch)
  }

  awaitDrain (): void {
    // Writes after the first go to the socket itself (see flush): its drain.
    // A closure only for a stream that stopped reading, not per stream.
    const writable = this.phase === DIRECT ? this.connection : this.res
    writable.once('drain', () => {
      if (this.phase !== ENDED) this.owner?.onDrain()
    })
  }

  end (lastFrame?: string | Buffer): void {
    const was = this.phase
    if (was === ENDED) return
    this.phase = ENDED
    const connection = this.connection as WriterSocket
    if (connection[WRITER] === this) {
      connection[WRITER] = undefined
      connection.off('close', closeWriterOfSocket)
    }
    const res = this.res
    if (was !== NOT_OPEN && !res.destroyed && !res.writableEnded) {
      this.send(was)
      if (lastFrame !== undefined) res.write(lastFrame)
      res.end()
    }
  }

  destroy (): void {
    this.res.destroy()
  }

  private writable (): boolean {
    return (this.phase === THROUGH_RESPONSE || this.phase === DIRECT) && !this.res.destroyed
  }

  /**
   * Writes what was queued (see write), on the next tick.
   *
   * The first write goes through the response, which sends the headers with
   * it. After that the stream frames its own chunks and writes each to the
   * socket in one call: the response's `write` would queue the size line,
   * the bytes and the CRLF as separate pieces, cork the socket and send them
   * with `writev` on the next tick, which at one event per stream per write
   * was the largest part of a delivery's cost. A batch shared by many
   * streams is framed as a chunk once (cached on the batch). Bytes still
   * leave in the order they were queued, and `res.end()` writes the last
   * chunk as usual. Without chunked encoding (an HTTP/1.0 client: the body
   * ends with the connection) the bytes go out as they are.
   */
  protected sendQueued (): void {
    if (this.phase !== ENDED) this.send(this.phase)
  }

  /**
   * Writes what is queued, in `phase` (the writer's, or the one it ended
   * in); tells the owner if that backs the stream up, unless it has ended.
   */
  private send (phase: Phase): void {
    const res = this.res
    const chunks = this.pending
    const shared = this.pendingBatch
    const bytes = this.pendingBytes
    this.clearQueued()
    // Nothing to send; and a chunk of size 0 would end the response.
    if (shared === undefined && (chunks === undefined || bytes === 0)) return
    if (res.destroyed || res.writableEnded) return
    const socket = phase === DIRECT ? this.connection : undefined
    if (socket?.destroyed === true) return
    if (socket !== undefined && res.chunkedEncoding) {
      socket.write(shared !== undefined ? shared.encoded(httpChunkOfText) : httpChunk(chunks as Buffer[], bytes))
    } else {
      const body = shared !== undefined
        ? shared.framed()
        : (chunks as Buffer[]).length === 1 ? (chunks as Buffer[])[0] as Buffer : Buffer.concat(chunks as Buffer[], bytes)
      if (socket !== undefined) socket.write(body)
      else {
        res.write(body)
        // On a pipelined connection the response may still wait for the
        // socket (its bytes queue inside it): go on through it until then.
        // Its socket is the connection the request came on.
        if (res.socket !== null && this.phase === THROUGH_RESPONSE) this.phase = DIRECT
      }
    }
    this.lastWriteAt = Date.now()
    // The socket is not draining: the owner stops taking live events and
    // lets Redis hold them. Memory stays at about the limit plus one batch.
    if (this.phase !== ENDED && res.writableLength >= this.maxBufferedBytes) this.owner?.onBackedUp()
  }
}
