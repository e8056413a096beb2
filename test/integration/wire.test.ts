/**
 * The bytes on the wire. After its first write a stream frames its own HTTP
 * chunks and writes them to the socket (src/http/session.ts, flush), so these
 * tests read the raw TCP bytes and check them strictly: every chunk well
 * formed, the body a valid event stream with every event once and in order,
 * the last chunk at the end; an HTTP/1.0 client gets plain bytes (no chunk
 * framing, the body ends with the connection); a stream requested behind
 * another request on the same connection is framed correctly too.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import t from 'tap'
import { eventually, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { hsToken } from '../helpers/token.js'
import { RawExchange, dechunk, responseHead } from '../helpers/wire.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

async function setup (t: TestContext): Promise<{ gw: TestGateway, prefix: string }> {
  const prefix = uniquePrefix('wire')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  return { gw, prefix }
}

function get (path: string, token: string | undefined, version = '1.1'): string {
  return `GET ${path} HTTP/${version}\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n${token === undefined ? '' : `authorization: Bearer ${token}\r\n`}\r\n`
}

/** Events of an SSE body (spec parser). */
function eventsOf (body: Buffer): EventSourceMessage[] {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: e => { events.push(e) } })
  parser.feed(body.toString('utf8'))
  return events
}

/** The body of a chunked response from `bodyAt`: payloads joined, and whether the last chunk (size 0) has come. */
function chunkedBody (wire: Buffer, bodyAt: number): { body: Buffer, chunks: Buffer[], last: boolean, trailing: number } {
  const { chunks, rest } = dechunk(wire.subarray(bodyAt))
  const end = chunks.findIndex(c => c.length === 0)
  const payload = end === -1 ? chunks : chunks.slice(0, end)
  return { body: Buffer.concat(payload), chunks: payload, last: end !== -1, trailing: end === -1 ? 0 : chunks.length - end - 1 + (wire.length - bodyAt - rest) }
}

/** Appends `n` entries to each key: singly, and in pipelines so that some reads hold many. */
async function publish (keys: readonly string[], n: number): Promise<void> {
  for (let i = 0; i < n; i += 10) {
    if (i % 20 === 0) {
      for (let j = i; j < i + 10; j++) for (const key of keys) await redis.client.xadd(key, '*', 'data', JSON.stringify({ key, n: j }))
    } else {
      const p = redis.client.pipeline()
      for (let j = i; j < i + 10; j++) for (const key of keys) p.xadd(key, '*', 'data', JSON.stringify({ key, n: j }))
      await p.exec()
    }
  }
}

t.test('HTTP/1.1: every chunk well formed, every event once and in order, one- and two-channel streams', async t => {
  const { gw, prefix } = await setup(t)
  const token = hsToken({ sub: 'w1', topics: ['a'] })
  const one = new RawExchange(gw.url, get('/events', token))
  const two = new RawExchange(gw.url, get('/events?topic=a', token))
  t.teardown(() => { one.close(); two.close() })
  // Both streams are open (headers and retry: have come) before publishing.
  await eventually(() => responseHead(one.bytes) !== undefined && responseHead(two.bytes) !== undefined, 10000, 'both heads')
  await eventually(() => /retry:/.test(one.text) && /retry:/.test(two.text), 10000, 'both retry lines')
  const userKey = `${prefix}user:w1`
  const topicKey = `${prefix}topic:a`
  await publish([userKey, topicKey], 200)

  const done = (x: RawExchange, n: number) => () => {
    const head = responseHead(x.bytes)
    return head !== undefined && eventsOf(chunkedBody(x.bytes, head.bodyAt).body).length >= n
  }
  await eventually(done(one, 200), 20000, 'the one-channel stream has 200 events')
  await eventually(done(two, 400), 20000, 'the two-channel stream has 400 events')
  for (const [name, x, keys] of [['one channel', one, [userKey]], ['two channels', two, [userKey, topicKey]]] as const) {
    const head = responseHead(x.bytes)
    if (head === undefined) throw new Error('no head')
    t.equal(head.status, 200, `${name}: 200`)
    t.equal(head.headers.get('transfer-encoding'), 'chunked', `${name}: chunked`)
    const { body, chunks } = chunkedBody(x.bytes, head.bodyAt)
    t.ok(chunks.length > 1, `${name}: ${chunks.length} well-formed chunks`)
    const events = eventsOf(body)
    for (const key of keys) {
      const got = events.map(e => JSON.parse(e.data) as { key: string, n: number }).filter(d => d.key === key).map(d => d.n)
      t.same(got, Array.from({ length: 200 }, (_, i) => i), `${name}: ${key.slice(prefix.length)}: 200 events, once, in order`)
    }
    t.ok(events.every(e => e.id !== undefined && e.id.length > 0), `${name}: every event has an id`)
    const ids = events.map(e => e.id)
    t.equal(new Set(ids).size, ids.length, `${name}: ids are distinct`)
  }
})

t.test('HTTP/1.1: the stream ends with the last chunk after self-framed ones (token expiry)', async t => {
  const { gw, prefix } = await setup(t)
  const exp = Math.floor(Date.now() / 1000) + 3
  const x = new RawExchange(gw.url, get('/events', hsToken({ sub: 'w2', exp })))
  t.teardown(() => { x.close() })
  await eventually(() => /retry:/.test(x.text), 10000, 'retry line')
  await publish([`${prefix}user:w2`], 30)
  await eventually(() => x.text.includes('\r\n0\r\n\r\n'), 15000, 'the last chunk')
  const head = responseHead(x.bytes)
  if (head === undefined) throw new Error('no head')
  const { body, last, trailing } = chunkedBody(x.bytes, head.bodyAt)
  t.ok(last, 'the body ends with the zero-size chunk')
  t.equal(trailing, 0, 'nothing after it')
  const events = eventsOf(body)
  t.same(events.slice(0, 30).map(e => (JSON.parse(e.data) as { n: number }).n), Array.from({ length: 30 }, (_, i) => i), 'the 30 events, in order')
  t.equal(events.at(-1)?.event, 'gateway.token-expired', 'then the expiry event, last')
})

t.test('HTTP/1.0: no chunk framing; the body is the event stream and ends with the connection', async t => {
  const { gw, prefix } = await setup(t)
  const exp = Math.floor(Date.now() / 1000) + 3
  const x = new RawExchange(gw.url, get('/events', hsToken({ sub: 'w3', exp }), '1.0'))
  t.teardown(() => { x.close() })
  await eventually(() => /retry:/.test(x.text), 10000, 'retry line')
  await publish([`${prefix}user:w3`], 30)
  await eventually(() => x.ended, 15000, 'the connection closes after expiry')
  const head = responseHead(x.bytes)
  if (head === undefined) throw new Error('no head')
  t.equal(head.status, 200)
  t.equal(head.headers.get('transfer-encoding'), undefined, 'no transfer-encoding')
  const body = x.bytes.subarray(head.bodyAt)
  t.match(body.toString('latin1'), /^retry: \d+\n\n/, 'the body starts with the retry line, unframed')
  t.notOk(/\r\n/.test(body.toString('latin1')), 'no CRLF anywhere: no chunk framing')
  const events = eventsOf(body)
  t.same(events.slice(0, 30).map(e => (JSON.parse(e.data) as { n: number }).n), Array.from({ length: 30 }, (_, i) => i), 'the 30 events, in order')
  t.equal(events.at(-1)?.event, 'gateway.token-expired', 'then the expiry event')
})

t.test('a stream requested behind another request on one connection (pipelined) is framed correctly', async t => {
  const { gw, prefix } = await setup(t)
  const x = new RawExchange(gw.url, get('/events', undefined) + get('/events', hsToken({ sub: 'w4' })))
  t.teardown(() => { x.close() })
  await eventually(() => {
    const first = responseHead(x.bytes)
    return first !== undefined && responseHead(x.bytes, first.bodyAt) !== undefined
  }, 10000, 'two responses')
  const first = responseHead(x.bytes)
  if (first === undefined) throw new Error('no first response')
  t.equal(first.status, 401, 'the first request (no token) is refused')
  const length = Number(first.headers.get('content-length'))
  t.ok(length > 0, 'with a length, so the next response follows it')
  const second = responseHead(x.bytes, first.bodyAt + length)
  if (second === undefined) throw new Error('no second response')
  t.equal(second.status, 200, 'the second, on the same connection, streams')
  await publish([`${prefix}user:w4`], 50)
  await eventually(() => eventsOf(chunkedBody(x.bytes, second.bodyAt).body).length >= 50, 15000, '50 events')
  const events = eventsOf(chunkedBody(x.bytes, second.bodyAt).body)
  t.same(events.map(e => (JSON.parse(e.data) as { n: number }).n), Array.from({ length: 50 }, (_, i) => i), 'the 50 events, once, in order')
})
