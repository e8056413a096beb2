/** The bytes of an HTTP/1.x response as they cross the socket, for tests of the framing itself. */
import { connect, type Socket } from 'node:net'

/**
 * A strict reader of a chunked HTTP/1.1 body (RFC 9112, section 7.1): hex
 * size, CRLF, exactly that many bytes, CRLF. Throws on anything malformed;
 * an incomplete last chunk is left out (`rest` is where it starts).
 */
export function dechunk (wire: Buffer): { chunks: Buffer[], rest: number } {
  const chunks: Buffer[] = []
  let at = 0
  while (at < wire.length) {
    const eol = wire.indexOf('\r\n', at, 'latin1')
    if (eol < 0) break
    const sizeText = wire.toString('latin1', at, eol)
    if (!/^[0-9a-f]+$/.test(sizeText)) throw new Error(`bad chunk size ${JSON.stringify(sizeText)} at byte ${at}`)
    const size = parseInt(sizeText, 16)
    const start = eol + 2
    if (start + size + 2 > wire.length) break
    if (wire[start + size] !== 13 || wire[start + size + 1] !== 10) throw new Error(`the chunk of ${size} bytes at byte ${start} is not followed by CRLF`)
    chunks.push(wire.subarray(start, start + size))
    at = start + size + 2
  }
  return { chunks, rest: at }
}

/** One raw TCP connection: writes `text` as is and keeps every byte that comes back. */
export class RawExchange {
  private readonly socket: Socket
  private data = Buffer.alloc(0)
  ended = false

  constructor (url: string, text: string) {
    const { hostname, port } = new URL(url)
    this.socket = connect({ host: hostname, port: Number(port) }, () => { this.socket.write(text) })
    this.socket.on('data', (b: Buffer) => { this.data = Buffer.concat([this.data, b]) })
    this.socket.on('end', () => { this.ended = true })
    this.socket.on('close', () => { this.ended = true })
    this.socket.on('error', () => { this.ended = true })
  }

  get bytes (): Buffer {
    return this.data
  }

  /** Everything as latin1 text (one character per byte). */
  get text (): string {
    return this.data.toString('latin1')
  }

  /** Writes more on the connection (a client that drips its request). */
  write (text: string): void {
    if (!this.ended) this.socket.write(text)
  }

  close (): void {
    this.socket.destroy()
  }
}

/** Splits one response off `wire` at `from`: status line, lower-cased headers, and where its body starts. */
export function responseHead (wire: Buffer, from = 0): { status: number, headers: Map<string, string>, bodyAt: number } | undefined {
  const end = wire.indexOf('\r\n\r\n', from, 'latin1')
  if (end < 0) return undefined
  const lines = wire.toString('latin1', from, end).split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0)
  const headers = new Map<string, string>()
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  return { status, headers, bodyAt: end + 4 }
}
