/**
 * Regression: errors outside the catalogue. Every error the gateway answers,
 * whoever raises it (the gateway, Fastify, Node's parser, a plugin), is JSON
 * in the gateway's shape with a code from src/core/errors.ts.
 */
import t from 'tap'
import { Errors } from '../../src/core/errors.js'
import { startGateway } from '../helpers/gateway.js'
import { RawExchange, responseHead } from '../helpers/wire.js'
import { eventually } from '../helpers/extra.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(60000)

const CODES = new Set<string>(Object.values(Errors).map(e => e.code))

async function exchange (url: string, text: string): Promise<{ status: number, headers: Map<string, string>, body: string }> {
  const x = new RawExchange(url, text)
  try {
    await eventually(() => {
      const head = responseHead(x.bytes)
      if (head === undefined) return x.ended
      const length = Number(head.headers.get('content-length') ?? NaN)
      return x.ended || (Number.isFinite(length) && x.bytes.length >= head.bodyAt + length)
    }, 10000, 'an answer')
    const head = responseHead(x.bytes)
    if (head === undefined) throw new Error(`no HTTP answer to ${JSON.stringify(text.slice(0, 60))}: ${JSON.stringify(x.text.slice(0, 200))}`)
    return { status: head.status, headers: head.headers, body: x.bytes.subarray(head.bodyAt).toString('utf8') }
  } finally {
    x.close()
  }
}

t.test('errors outside the catalogue: every refusal is JSON with a catalogue code', async t => {
  const gw = await startGateway({ CORS_ORIGINS: 'https://app.example', PUBLIC_TOPICS: 'pub' })
  t.teardown(() => gw.close())
  const publisher = hsToken({ sub: 'svc', publish: ['topic:*'] })
  const cases: Array<[string, string, number, string?]> = [
    ['POST /publish as text/plain', `POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${publisher}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`, 415, 'SSEGW_ERR_PUBLISH_NOT_JSON'],
    ['POST /publish with no content type', `POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${publisher}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`, 415, 'SSEGW_ERR_PUBLISH_NOT_JSON'],
    ['POST /publish as form data', `POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${publisher}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\nConnection: close\r\n\r\na=b&c`, 415, 'SSEGW_ERR_PUBLISH_NOT_JSON'],
    ['a malformed URL', 'GET /% HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'SSEGW_ERR_BAD_REQUEST'],
    ['a malformed URL under /events', 'GET /events%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'SSEGW_ERR_BAD_REQUEST'],
    ['OPTIONS /events without preflight headers', 'OPTIONS /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'SSEGW_ERR_BAD_REQUEST'],
    ['OPTIONS /events with an Origin but no method', 'OPTIONS /events HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nConnection: close\r\n\r\n', 400, 'SSEGW_ERR_BAD_REQUEST'],
    ['an unknown route', 'GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 404, 'SSEGW_ERR_NOT_FOUND'],
    ['DELETE /events', 'DELETE /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 404, 'SSEGW_ERR_NOT_FOUND'],
    ['a request line Node cannot parse', 'GARBAGE\r\n\r\n', 400, 'SSEGW_ERR_BAD_REQUEST'],
    ['headers over 16 KiB', `GET /events HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`, 431, 'SSEGW_ERR_HEADERS_TOO_LARGE'],
    ['invalid JSON to /publish', `POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${publisher}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{"a":`, 400, 'SSEGW_ERR_PUBLISH_BODY_INVALID'],
  ]
  for (const [what, text, status, code] of cases) {
    const answer = await exchange(gw.url, text)
    t.equal(answer.status, status, `${what}: status`)
    t.match(answer.headers.get('content-type') ?? '', /^application\/json/, `${what}: JSON`)
    let body: { error?: unknown, message?: unknown } = {}
    try { body = JSON.parse(answer.body) } catch { t.fail(`${what}: body is not JSON: ${answer.body.slice(0, 120)}`) }
    t.ok(typeof body.error === 'string' && CODES.has(body.error), `${what}: code ${String(body.error)} is in the catalogue`)
    if (code !== undefined) t.equal(body.error, code, `${what}: ${code}`)
    t.ok(typeof body.message === 'string' && body.message.length > 10, `${what}: says what to fix`)
  }
  // A real preflight still works.
  const preflight = await exchange(gw.url, 'OPTIONS /events HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\nConnection: close\r\n\r\n')
  t.equal(preflight.status, 204, 'a CORS preflight is answered')
  t.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example')
})
