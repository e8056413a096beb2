/**
 * One fetch of a JWKS document, bounded in time and size: global `fetch`,
 * an abort after the timeout (body included), and a body read no further
 * than the limit. A failure has a reason from a closed set (the
 * `sse_gateway_jwks_fetch_failures_total` label) and a detail for the log.
 */

export type JwksFetchFailure = 'timeout' | 'network' | 'http-status' | 'too-large' | 'invalid-json' | 'invalid-jwks' | 'no-usable-keys'

export class JwksFetchError extends Error {
  constructor (readonly reason: JwksFetchFailure, detail: string) {
    super(detail)
    this.name = 'JwksFetchError'
  }
}

export interface FetchedJwks {
  /** The document's `keys`, not yet checked one by one. */
  readonly keys: readonly unknown[]
  /** `Cache-Control: max-age` in seconds (0 for no-cache or no-store), when the answer gave one. */
  readonly maxAgeS: number | undefined
}

export interface JwksFetchOptions {
  readonly timeoutMs: number
  readonly maxBytes: number
  /** Aborts the fetch early (the gateway is closing). */
  readonly signal?: AbortSignal
}

export async function fetchJwks (url: string, opts: JwksFetchOptions): Promise<FetchedJwks> {
  const timeout = AbortSignal.timeout(opts.timeoutMs)
  const signal = opts.signal === undefined ? timeout : AbortSignal.any([timeout, opts.signal])
  let text: string
  let cacheControl: string | null
  try {
    const res = await fetch(url, { signal, headers: { accept: 'application/jwk-set+json, application/json' } })
    cacheControl = res.headers.get('cache-control')
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {})
      throw new JwksFetchError('http-status', `answered HTTP ${res.status}`)
    }
    const length = Number(res.headers.get('content-length') ?? NaN)
    if (length > opts.maxBytes) {
      await res.body?.cancel().catch(() => {})
      throw new JwksFetchError('too-large', `answered ${length} bytes, over JWT_JWKS_MAX_BYTES (${opts.maxBytes})`)
    }
    text = await readLimited(res, opts.maxBytes)
  } catch (err) {
    if (err instanceof JwksFetchError) throw err
    if (timeout.aborted) throw new JwksFetchError('timeout', `no answer within JWT_JWKS_TIMEOUT_MS (${opts.timeoutMs} ms)`)
    const cause = (err as { cause?: { code?: string } }).cause?.code
    throw new JwksFetchError('network', cause ?? (err as Error).message)
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    throw new JwksFetchError('invalid-json', 'the answer is not JSON')
  }
  const keys = (doc as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys)) throw new JwksFetchError('invalid-jwks', 'the answer has no "keys" array')
  return { keys, maxAgeS: maxAge(cacheControl) }
}

async function readLimited (res: Response, maxBytes: number): Promise<string> {
  if (res.body === null) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel().catch(() => {})
      throw new JwksFetchError('too-large', `the answer is over JWT_JWKS_MAX_BYTES (${maxBytes} bytes)`)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** `max-age` of a Cache-Control header; no-store and no-cache mean "fetch again as soon as allowed". */
export function maxAge (header: string | null): number | undefined {
  if (header === null) return undefined
  if (/(^|[,\s])(no-store|no-cache)([,\s=]|$)/i.test(header)) return 0
  const m = /(?:^|[,\s])max-age\s*=\s*"?(\d{1,10})"?/i.exec(header)
  return m === null ? undefined : Number(m[1])
}
