/**
 * SSE clients for tests. `RawStream` is a minimal client on node:http with a
 * spec-compliant parser (eventsource-parser): it sees status and headers,
 * can stop reading (slow-client tests), and costs little at 1,000 clients.
 * Tests that need browser behaviour (reconnect, Last-Event-ID) use the
 * `eventsource` package directly.
 */
import { request, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import { createParser, type EventSourceMessage } from 'eventsource-parser'

export interface ReceivedEvent {
  /** As EventSource reports it: `message` when the stream named none. */
  readonly event: string
  readonly data: string
  readonly id: string | undefined
}

export class RawStream {
  readonly events: ReceivedEvent[] = []
  retry: number | undefined
  comments = 0
  status = 0
  headers: IncomingHttpHeaders = {}
  body = ''
  ended = false
  private res: IncomingMessage | undefined
  private waiters: Array<() => void> = []
  private req!: ClientRequest
  /** Resolves once the status line and headers arrived. */
  readonly opened: Promise<void>

  constructor (url: string, headers: Record<string, string> = {}) {
    const parser = createParser({
      onEvent: (e: EventSourceMessage) => { this.events.push({ event: e.event ?? 'message', data: e.data, id: e.id }); this.notify() },
      onRetry: (ms: number) => { this.retry = ms },
      onComment: () => { this.comments++ },
    })
    this.opened = new Promise((resolve, reject) => {
      this.req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, res => {
        this.res = res
        this.status = res.statusCode ?? 0
        this.headers = res.headers
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          if (this.status === 200) parser.feed(chunk)
          else this.body += chunk
        })
        res.on('end', () => { this.ended = true; this.notify() })
        res.on('close', () => { this.ended = true; this.notify() })
        resolve()
      })
      this.req.on('error', (err: Error) => { this.ended = true; this.notify(); reject(err) })
      this.req.end()
    })
  }

  private notify (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  /** Waits until `predicate` holds (checked on every event and at end). */
  async until (predicate: (s: RawStream) => boolean, timeoutMs = 20000, what = 'condition'): Promise<void> {
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

  /** Stops reading from the socket (TCP back-pressure builds up at the server). */
  pause (): void { this.res?.pause() }
  resume (): void { this.res?.resume() }

  get lastId (): string | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i]?.id !== undefined) return this.events[i]?.id
    return undefined
  }

  close (): void {
    this.req.destroy()
  }
}

/** Opens a stream and waits for its headers. */
export async function openStream (url: string, headers?: Record<string, string>): Promise<RawStream> {
  const s = new RawStream(url, headers)
  await s.opened
  return s
}

/**
 * GET that returns status and parsed JSON body (for error answers). With
 * `stopAtStream`, a 200 event stream resolves at its headers (body undefined)
 * instead of being read until it ends.
 */
export async function getJson (url: string, headers: Record<string, string> = {}, opts: { stopAtStream?: boolean } = {}): Promise<{ status: number, headers: IncomingHttpHeaders, body: any }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { headers }, res => {
      if (opts.stopAtStream === true && res.statusCode === 200 && /^text\/event-stream/.test(res.headers['content-type'] ?? '')) {
        resolve({ status: 200, headers: res.headers, body: undefined })
        req.destroy()
        return
      }
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => {
        let body: unknown = text
        try { body = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
