/**
 * HTTP/1.1 chunked transfer coding (RFC 9112, section 7.1): the size in hex,
 * CRLF, the bytes, CRLF. Pure, no I/O. Only the HTTP/1.1 stream writer
 * (http1-writer.ts) frames chunks: SSE framing (core/frame.ts) knows nothing
 * of the transport, and an HTTP/2 stream carries the same SSE bytes in DATA
 * frames that node makes itself.
 */

/**
 * Bytes as one chunk of an HTTP/1.1 chunked body. A stream that frames its
 * chunks itself writes each one to the socket in one call, where the
 * response's own `write` queues four pieces and corks the socket until the
 * next tick. `bytes` must not be 0: a chunk of size 0 ends the body.
 */
export function httpChunk (parts: readonly Buffer[], bytes: number): Buffer {
  const { chunk, at } = chunkShell(bytes)
  let to = at
  for (const part of parts) to += part.copy(chunk, to)
  return chunk
}

/** Text as one HTTP/1.1 chunk (see {@link httpChunk}), encoded once: one allocation. */
export function httpChunkOfText (text: string): Buffer {
  const { chunk, at } = chunkShell(Buffer.byteLength(text, 'utf8'))
  chunk.write(text, at, 'utf8')
  return chunk
}

/** A chunk of `bytes` payload bytes with its size line and CRLF written; the payload starts at `at`. */
function chunkShell (bytes: number): { chunk: Buffer, at: number } {
  const head = bytes.toString(16) + '\r\n'
  const chunk = Buffer.allocUnsafe(head.length + bytes + 2)
  chunk.write(head, 0, 'latin1')
  chunk[head.length + bytes] = 13
  chunk[head.length + bytes + 1] = 10
  return { chunk, at: head.length }
}

/** The payload of one chunk made by {@link httpChunk} or {@link httpChunkOfText}: a view, not a copy. */
export function chunkPayload (chunk: Buffer): Buffer {
  const start = chunk.indexOf(10) + 1
  return chunk.subarray(start, chunk.length - 2)
}
