/** POST /publish from tests: raw bodies, any headers, answers parsed. */
import { request, type IncomingHttpHeaders } from 'node:http'

export interface Answer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  /** Parsed JSON, or the text when it is not JSON. */
  readonly body: any
}

/**
 * POSTs `body` (a string is sent as it is, anything else as JSON) with
 * `Content-Type: application/json` unless `headers` says otherwise. Resolves
 * with the answer even when the server stops reading an oversized body.
 */
export async function post (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const payload = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8')
  return await new Promise((resolve, reject) => {
    let answered = false
    const req = request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(payload.length), ...headers },
    }, res => {
      answered = true
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => {
        let parsed: unknown = text
        try { parsed = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed })
      })
    })
    // The server may close the socket while a large body is still going out.
    req.on('error', err => { if (!answered) reject(err) })
    req.end(payload)
  })
}

/** `{ authorization: 'Bearer <token>' }`. */
export function bearer (token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}
