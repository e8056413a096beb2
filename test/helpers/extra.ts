/** Small additions to the test helpers: raw JWTs, metric scraping, many streams. */
import type tap from 'tap'
import { createHmac } from 'node:crypto'
import { request, type IncomingHttpHeaders } from 'node:http'
import { RawStream, getJson, type ReceivedEvent } from './sse.js'
import { SECRET } from './token.js'

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/**
 * A JWT with any header and payload (arrays, `alg: none`...). HS* algorithms
 * are signed with `secret`; any other `alg` gets an empty signature.
 */
export function rawToken (header: Record<string, unknown>, payload: unknown, secret = SECRET): string {
  const head = `${b64(header)}.${b64(payload)}`
  const hash = header.alg === 'HS256' ? 'sha256' : header.alg === 'HS384' ? 'sha384' : header.alg === 'HS512' ? 'sha512' : undefined
  return `${head}.${hash === undefined ? '' : createHmac(hash, secret).update(head).digest('base64url')}`
}

/** The last part of a JWT: what must never be logged even on its own. */
export function signatureOf (token: string): string {
  return token.slice(token.lastIndexOf('.') + 1)
}

/** GET a text body. */
export async function getText (url: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * A Prometheus metric from `${internalUrl}/metrics`, as PromQL's `sum` of
 * the series that carry every label of `labels` (other labels, such as
 * `protocol`, are summed over); 0 when no series matches (yet).
 */
export async function scrapeMetric (internalUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const { body } = await getText(`${internalUrl}/metrics`)
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  let sum = 0
  for (const line of body.split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line)
    if (m === null || m[1] !== name) continue
    const got = new Set((m[2] ?? '').split(',').filter(s => s.length > 0))
    if (want.every(l => got.has(l))) sum += Number(m[3])
  }
  return sum
}

/**
 * A RawStream that checks each event as it arrives instead of keeping it:
 * 1,000 clients times 1,000 events would otherwise keep a million objects
 * alive, and the garbage collector would cost more than the gateway.
 * `check` returns a problem description, or undefined when the event is right.
 */
export class CheckedStream extends RawStream {
  received = 0
  problem: string | undefined

  constructor (url: string, headers: Record<string, string>, check: (event: ReceivedEvent, index: number) => string | undefined) {
    super(url, headers)
    const sink = {
      push: (event: ReceivedEvent): number => {
        const p = check(event, this.received)
        if (p !== undefined && this.problem === undefined) this.problem = p
        return ++this.received
      },
      get length (): number { return 0 },
    }
    // The parser pushes to `this.events`; no data can arrive before this line runs.
    Object.defineProperty(this, 'events', { value: sink })
  }
}

/**
 * Opens `n` streams, `batch` at a time (each batch waits for its headers), so
 * a small machine is not asked for a thousand handshakes at once.
 */
export async function openMany<S extends RawStream = RawStream> (n: number, batch: number, make: (i: number) => { url: string, headers?: Record<string, string> } | S): Promise<S[]> {
  const streams: S[] = []
  for (let start = 0; start < n; start += batch) {
    const group: S[] = []
    for (let i = start; i < Math.min(n, start + batch); i++) {
      const made = make(i)
      group.push(made instanceof RawStream ? made : new RawStream(made.url, made.headers) as S)
    }
    await Promise.all(group.map(async s => { await s.opened }))
    streams.push(...group)
  }
  return streams
}

/** Polls `check` until it holds (every `everyMs`), or throws after `timeoutMs`. */
export async function eventually (check: () => boolean | Promise<boolean>, timeoutMs = 20000, what = 'condition', everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

/**
 * GET expecting a JSON error answer. Unlike `getJson`, a 200 stream (the
 * request was wrongly accepted) does not hang: the response is cut at its
 * headers and resolves with `body: undefined`.
 */
export async function getAnswer (url: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: IncomingHttpHeaders, body: any }> {
  return await getJson(url, headers, { stopAtStream: true })
}

/** The type of `t` inside a `t.test(...)` callback. */
export type TestContext = Parameters<Parameters<typeof tap.test>[0]>[0]
