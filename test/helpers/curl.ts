/**
 * curl as an SSE client (`curl -N`), for the protocols a test wants to see
 * a real, independent client speak: `--http2` over TLS (ALPN),
 * `--http2-prior-knowledge` (h2c), `--http1.1` over TLS. The body is parsed
 * as it arrives; `-v` output (the negotiated protocol) is kept too.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import type { ReceivedEvent } from './sse.js'

export class CurlStream {
  readonly events: ReceivedEvent[] = []
  retry: number | undefined
  readonly retries: number[] = []
  /** curl's `-v` lines (stderr). */
  verbose = ''
  ended = false
  private readonly proc: ChildProcess

  constructor (url: string, args: string[], headers: Record<string, string> = {}) {
    const parser = createParser({
      onEvent: (e: EventSourceMessage) => { this.events.push({ event: e.event ?? 'message', data: e.data, id: e.id }) },
      onRetry: (ms: number) => { this.retry = ms; this.retries.push(ms) },
    })
    const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`])
    this.proc = spawn('curl', ['-sS', '-v', '-N', '-m', '60', '-H', 'Accept: text/event-stream', ...h, ...args, url], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc.stdout?.setEncoding('utf8')
    this.proc.stdout?.on('data', (chunk: string) => { parser.feed(chunk) })
    this.proc.stderr?.setEncoding('utf8')
    this.proc.stderr?.on('data', (chunk: string) => { this.verbose += chunk })
    this.proc.on('close', () => { this.ended = true })
  }

  /** The status line curl printed (`< HTTP/2 200`), or undefined before it. */
  get statusLine (): string | undefined {
    return /^< (HTTP\/\S+ \d{3})/m.exec(this.verbose)?.[1]
  }

  async until (predicate: (s: CurlStream) => boolean, timeoutMs = 20000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!predicate(this)) {
      if (Date.now() > deadline) throw new Error(`curl: timed out waiting for ${what}: ${this.events.length} events, ended=${String(this.ended)}\n${this.verbose.slice(-2000)}`)
      await new Promise(resolve => setTimeout(resolve, 25))
    }
  }

  async opened (timeoutMs = 20000): Promise<this> {
    await this.until(s => s.statusLine !== undefined || s.ended, timeoutMs, 'the status line')
    return this
  }

  close (): void {
    if (!this.ended) this.proc.kill('SIGTERM')
  }
}
