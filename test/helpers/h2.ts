/**
 * An SSE client over node:http2 for tests, shaped like RawStream (sse.ts):
 * status, headers, parsed events, `until`, pause/resume. Several streams
 * share one `ClientHttp2Session` (one connection), as a browser's tabs do.
 */
import { connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type SecureClientSessionOptions } from 'node:http2'
import { readFileSync } from 'node:fs'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import type { ReceivedEvent } from './sse.js'

/**
 * Opens an HTTP/2 connection: `https://` with the test CA (`caFile`), or
 * `http://` as cleartext HTTP/2 with prior knowledge (h2c).
 */
export async function h2Connect (url: string, opts: { caFile?: string, settings?: SecureClientSessionOptions['settings'] } = {}): Promise<ClientHttp2Session> {
  const session = connect(url, {
    ...(opts.caFile !== undefined ? { ca: readFileSync(opts.caFile) } : {}),
    ...(opts.settings !== undefined ? { settings: opts.settings } : {}),
  })
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => { resolve() })
    session.once('error', reject)
  })
  // Errors after connect end the streams; the test sees them there.
  session.on('error', () => {})
  return session
}

export class H2Stream {
  readonly events: ReceivedEvent[] = []
  retry: number | undefined
  retries: number[] = []
  comments = 0
  status = 0
  headers: IncomingHttpHeaders = {}
  body = ''
  bytes = 0
  ended = false
  readonly req: ClientHttp2Stream
  readonly opened: Promise<void>
  private waiters: Array<() => void> = []

  constructor (session: ClientHttp2Session, path: string, headers: Record<string, string> = {}) {
    const parser = createParser({
      onEvent: (e: EventSourceMessage) => { this.events.push({ event: e.event ?? 'message', data: e.data, id: e.id }); this.notify() },
      onRetry: (ms: number) => { this.retry = ms; this.retries.push(ms); this.notify() },
      onComment: () => { this.comments++; this.notify() },
    })
    this.req = session.request({ ':path': path, accept: 'text/event-stream', ...headers })
    this.req.setEncoding('utf8')
    this.opened = new Promise((resolve, reject) => {
      this.req.once('response', h => {
        this.headers = h
        this.status = Number(h[':status'])
        resolve()
      })
      this.req.once('error', (err: Error) => { reject(err) })
    })
    this.req.on('data', (chunk: string) => {
      this.bytes += Buffer.byteLength(chunk)
      if (this.status === 200) parser.feed(chunk)
      else this.body += chunk
    })
    this.req.on('error', () => { this.ended = true; this.notify() })
    this.req.on('end', () => { this.ended = true; this.notify() })
    this.req.on('close', () => { this.ended = true; this.notify() })
    this.req.end()
  }

  private notify (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  async until (predicate: (s: H2Stream) => boolean, timeoutMs = 20000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!predicate(this)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${this.events.length} events, ended=${String(this.ended)}`)
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, Math.max(10, Math.min(250, deadline - Date.now())))
        this.waiters.push(() => { clearTimeout(t); resolve() })
      })
    }
  }

  async waitForEvents (n: number, timeoutMs = 20000): Promise<ReceivedEvent[]> {
    await this.until(s => s.events.length >= n, timeoutMs, `${n} events`)
    return this.events
  }

  async waitForEnd (timeoutMs = 20000): Promise<void> {
    await this.until(s => s.ended, timeoutMs, 'end of stream')
  }

  /** Stops reading: no WINDOW_UPDATE for this stream, so its flow-control window runs out. */
  pause (): void { this.req.pause() }
  resume (): void { this.req.resume() }

  get lastId (): string | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i]?.id !== undefined) return this.events[i]?.id
    return undefined
  }

  close (): void {
    if (!this.req.destroyed) this.req.close()
  }
}

export async function openH2Stream (session: ClientHttp2Session, path: string, headers?: Record<string, string>): Promise<H2Stream> {
  const s = new H2Stream(session, path, headers)
  await s.opened
  return s
}
