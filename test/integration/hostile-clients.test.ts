/**
 * Hostile clients against a real gateway and a real redis-server: pipelined
 * streams on one socket, concurrent connects at each limit, slow headers.
 * Regression tests for "pipelined requests leak sessions" and "connection
 * limits race".
 */
import t from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { getJson, openStream, sleep, type RawStream } from '../helpers/sse.js'
import { eventually, scrapeMetric } from '../helpers/extra.js'
import { hsToken } from '../helpers/token.js'
import { RawExchange } from '../helpers/wire.js'

t.setTimeout(120000)

const redis = await startRedis()
t.teardown(() => redis.stop())

const streamRequest = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\r\n`

t.test('pipelined requests leak sessions: a socket that pipelines streams and closes leaves no session, key or slot behind', async t => {
  const prefix = uniquePrefix('pipe')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, PUBLIC_TOPICS: 'pub,other', MAX_CONNECTIONS: '4' })
  t.teardown(() => gw.close())
  const { sessions, hub } = gw.gateway

  for (let round = 0; round < 3; round++) {
    const pipelined = new RawExchange(gw.url, streamRequest('/events?topic=pub').repeat(3) + streamRequest('/events?topic=other').repeat(3))
    await eventually(() => pipelined.text.includes('retry:'), 10000, 'the first stream opens')
    await sleep(300)
    t.equal(sessions.size, 1, `round ${round}: a request behind an open stream opens no second stream`)
    t.equal(hub.size, 1, `round ${round}: and reads no key for it`)
    pipelined.close()
    await eventually(() => sessions.size === 0 && hub.size === 0, 10000, 'every session of the socket ends with it')
  }
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_open'), 0, 'no stream counted open')
  const behind = await scrapeMetric(gw.internalUrl, 'sse_gateway_requests_rejected_total', { code: 'SSEGW_ERR_STREAM_PIPELINED' })
  t.equal(behind, 15, 'the requests behind a stream are counted')

  // The replica still has all its slots.
  const auth = { authorization: `Bearer ${hsToken({ sub: 'after', topics: ['pub'] })}` }
  const streams: RawStream[] = []
  t.teardown(() => { for (const s of streams) s.close() })
  for (let i = 0; i < 4; i++) streams.push(await openStream(`${gw.url}/events?topic=pub`, auth))
  t.ok(streams.every(s => s.status === 200 && !s.ended), 'MAX_CONNECTIONS streams open after the pipelining sockets closed')
  await redis.client.xadd(`${prefix}topic:pub`, '*', 'data', 'still-here')
  for (const s of streams) await s.waitForEvents(1)
})

t.test('pipelined requests leak sessions: a stream pipelined behind a finished answer opens and ends with its socket', async t => {
  const prefix = uniquePrefix('pipe')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, PUBLIC_TOPICS: 'pub' })
  t.teardown(() => gw.close())
  const c = new RawExchange(gw.url, 'GET /nothing HTTP/1.1\r\nHost: gw\r\n\r\n' + streamRequest('/events?topic=pub'))
  await eventually(() => c.text.includes('retry:'), 10000, 'the stream behind the 404 opens')
  t.match(c.text, /^HTTP\/1\.1 404/, 'the 404 first')
  t.equal(gw.gateway.sessions.size, 1)
  await redis.client.xadd(`${prefix}topic:pub`, '*', 'data', 'behind-404')
  await eventually(() => c.text.includes('data: behind-404'), 10000, 'the event on the pipelined stream')
  c.close()
  await eventually(() => gw.gateway.sessions.size === 0 && gw.gateway.hub.size === 0, 10000, 'ends with the socket')
})

t.test('pipelined requests leak sessions: a POST /publish pipelined behind a stream does not run while the stream is open, and runs once, in its turn, when it ends', async t => {
  const prefix = uniquePrefix('pipe')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, PUBLIC_TOPICS: 'pub' })
  t.teardown(() => gw.close())
  const token = hsToken({ sub: 'svc', publish: ['topic:*'] })
  const body = JSON.stringify({ channel: 'topic:pub', data: 'behind' })
  const c = new RawExchange(gw.url, streamRequest('/events?topic=pub') +
    `POST /publish HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  t.teardown(() => c.close())
  await eventually(() => c.text.includes('retry:'), 10000, 'the stream opens')
  await sleep(500)
  t.equal(await redis.client.xlen(`${prefix}topic:pub`), 0, 'the pipelined publish has not run')
  // The stream ahead ends (here: the replica drains it): the publish's turn.
  await gw.gateway.sessions.closeAll('shutdown', 100, 0)
  await eventually(() => /HTTP\/1\.1 200 OK[\s\S]*"channel":"topic:pub"/.test(c.text.slice(c.text.indexOf('0\r\n\r\n'))), 10000, 'the publish answered after the stream')
  t.equal(await redis.client.xlen(`${prefix}topic:pub`), 1, 'published once')
})

/** Fires `n` connects at once while Redis is frozen, so every one is inside the awaited subscribe together. */
async function connectTogether (url: string, headersOf: (i: number) => Record<string, string>, n: number): Promise<RawStream[]> {
  const pid = redis.pid as number
  process.kill(pid, 'SIGSTOP')
  let streams: Array<Promise<RawStream>>
  try {
    streams = Array.from({ length: n }, async (_, i) => await openStream(url, headersOf(i)))
    await sleep(500)
  } finally {
    process.kill(pid, 'SIGCONT')
  }
  return await Promise.all(streams)
}

t.test('connection limits race: concurrent connects of one user hold MAX_CONNECTIONS_PER_USER', async t => {
  const prefix = uniquePrefix('race')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, MAX_CONNECTIONS_PER_USER: '2' })
  t.teardown(() => gw.close())
  const auth = { authorization: `Bearer ${hsToken({ sub: 'racer', topics: ['t'] })}` }
  const streams = await connectTogether(`${gw.url}/events?topic=t`, () => auth, 10)
  t.teardown(() => { for (const s of streams) s.close() })
  await sleep(200)
  const statuses = streams.map(s => s.status).sort()
  t.same(statuses, [200, 200, 429, 429, 429, 429, 429, 429, 429, 429], '2 open, 8 refused')
  t.equal(gw.gateway.sessions.countFor('racer'), 2)
  for (const s of streams.filter(s => s.status === 429)) t.equal(JSON.parse(s.body).error, 'SSEGW_ERR_TOO_MANY_CONNECTIONS')
  for (const s of streams) s.close()
  await eventually(() => gw.gateway.sessions.size === 0, 10000, 'all closed')
  t.equal(gw.gateway.sessions.countFor('racer'), 0, 'the count goes back to 0')
})

t.test('connection limits race: concurrent connects hold MAX_CONNECTIONS', async t => {
  const prefix = uniquePrefix('race')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, MAX_CONNECTIONS: '3' })
  t.teardown(() => gw.close())
  const streams = await connectTogether(`${gw.url}/events?topic=t`, i => ({ authorization: `Bearer ${hsToken({ sub: `u${i}`, topics: ['t'] })}` }), 10)
  t.teardown(() => { for (const s of streams) s.close() })
  await eventually(() => streams.every(s => s.status !== 200 || s.events.length > 0 || !s.ended), 10000, 'answers')
  await sleep(200)
  const open = streams.filter(s => s.status === 200 && s.events.every(e => e.event !== 'gateway.unavailable') && !s.ended)
  t.equal(open.length, 3, '3 streams open')
  t.equal(gw.gateway.sessions.size, 3, 'the replica holds 3')
  const told = streams.filter(s => s.events.some(e => e.event === 'gateway.unavailable'))
  t.equal(told.length, 7, '7 told to retry elsewhere')
  for (const s of told) t.equal(JSON.parse(s.events[0]?.data ?? '{}').reason, 'at-capacity')
})

t.test('connection limits race: every failure path gives its slot back', async t => {
  const prefix = uniquePrefix('race')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, MAX_CONNECTIONS_PER_USER: '2', MAX_CONNECTIONS: '2' })
  t.teardown(() => gw.close())
  const auth = { authorization: `Bearer ${hsToken({ sub: 'back', topics: ['t'] })}` }
  // Clients that leave while their subscribe is under way.
  const token = auth.authorization.slice('Bearer '.length)
  const pid = redis.pid as number
  process.kill(pid, 'SIGSTOP')
  let leaving: Array<RawExchange> = []
  try {
    leaving = Array.from({ length: 5 }, () => new RawExchange(gw.url, streamRequest(`/events?topic=t&token=${token}`)))
    await sleep(400)
    t.equal(gw.gateway.sessions.size, 2, 'two slots reserved while subscribing')
    for (const c of leaving) c.close()
    await sleep(100)
  } finally {
    process.kill(pid, 'SIGCONT')
  }
  await eventually(() => gw.gateway.sessions.size === 0 && gw.gateway.hub.size === 0, 10000, 'slots released')
  // The per-user count is kept in Redis across replicas: a lease taken by an
  // admission that was under way when its client left goes as that admission answers.
  const leases = `${prefix}__gateway:user:{back}:conn`
  for (let i = 0; i < 100 && await redis.client.zcard(leases) > 0; i++) await sleep(50)
  t.equal(await redis.client.zcard(leases), 0, 'their leases given back')
  const a = await openStream(`${gw.url}/events?topic=t`, auth)
  const b = await openStream(`${gw.url}/events?topic=t`, auth)
  t.teardown(() => { a.close(); b.close() })
  t.equal(a.status, 200)
  t.equal(b.status, 200)
  t.notOk(a.events.some(e => e.event === 'gateway.unavailable') || b.events.some(e => e.event === 'gateway.unavailable'), 'both open: no slot was left behind')
})

t.test('slow headers: a client that never finishes its headers is cut off after HEADERS_TIMEOUT_MS', async t => {
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('slow'), PUBLIC_TOPICS: 'pub', HEADERS_TIMEOUT_MS: '2000' })
  t.teardown(() => gw.close())
  const started = Date.now()
  const slow = Array.from({ length: 20 }, () => new RawExchange(gw.url, 'GET /events?topic=pub HTTP/1.1\r\nHost: gw\r\n'))
  const drip = setInterval(() => { for (const s of slow) s.write('X-A: b\r\n') }, 300)
  t.teardown(() => { clearInterval(drip); for (const s of slow) s.close() })
  await eventually(() => slow.every(s => s.ended), 15000, 'every slow client cut off')
  const took = Date.now() - started
  t.ok(took >= 1500, `not before the timeout (${took} ms)`)
  t.match(slow[0]?.text, /^HTTP\/1\.1 408/, '408 in the catalogue shape')
  t.match(slow[0]?.text, /SSEGW_ERR_REQUEST_TIMEOUT/)
  t.equal(gw.gateway.sessions.size, 0)
  const ok = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(ok.status, 200, 'the replica is fine')
})
