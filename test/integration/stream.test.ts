/**
 * The life of one stream as a client sees it: heartbeats, the token-expiry
 * control event, the ordering promise, CORS, and a real EventSource that
 * reconnects by itself and resumes with Last-Event-ID.
 */
import { request, type IncomingMessage } from 'node:http'
import { EventSource, type EventSourceFetchInit } from 'eventsource'
import t from 'tap'
import { eventually, getAnswer, scrapeMetric, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { RawStream, openStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

async function setup (t: TestContext, env: Record<string, string> = {}): Promise<{ gw: TestGateway, prefix: string }> {
  const prefix = uniquePrefix('strm')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...env })
  t.teardown(() => gw.close())
  return { gw, prefix }
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

t.test('heartbeat comments keep an idle stream alive', async t => {
  const { gw } = await setup(t, { HEARTBEAT_INTERVAL_MS: '1000' })
  const s = await openStream(`${gw.url}/events`, bearer(hsToken({ sub: 'idle' })))
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  await s.until(x => x.comments >= 3 || x.ended, 15000, 'three heartbeats')
  t.ok(s.comments >= 3, `heartbeat comments arrive (${s.comments})`)
  t.equal(s.events.length, 0, 'heartbeats are not events')
  t.notOk(s.ended, 'the idle stream stays open')
})

t.test('token expiry: a gateway.token-expired event with JSON data, then the stream ends', async t => {
  const { gw, prefix } = await setup(t)
  const exp = Math.floor(Date.now() / 1000) + 2
  const s = await openStream(`${gw.url}/events`, bearer(hsToken({ sub: 'shortlived', exp })))
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  await redis.client.xadd(`${prefix}user:shortlived`, '*', 'data', 'before expiry')
  await s.waitForEnd(15000)
  t.ok(Date.now() >= exp * 1000 - 50, 'not ended before exp')
  const names = s.events.map(e => e.event)
  t.same(names, ['message', 'gateway.token-expired'], 'the event before expiry, then the control event last')
  const control = s.events[s.events.length - 1]
  t.equal(control?.id, undefined, 'the control event carries no id (the resume position is unchanged)')
  let data: unknown
  t.doesNotThrow(() => { data = JSON.parse(control?.data ?? '') }, 'its data is JSON')
  t.match(data, { reason: 'token-expired', message: /fresh token/ }, 'it says why and what to do')
  t.ok(s.ended, 'the stream ended')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_closed_total', { reason: 'token-expired' }), 1, 'closed with reason token-expired')
})

t.test('regression: a token accepted within JWT_CLOCK_TOLERANCE_MS is not ended at once', async t => {
  // exp already passed by the gateway's clock, but within the tolerance: the
  // token is accepted, so the stream must live until exp + tolerance too, or
  // the client is accepted and cut off in a loop.
  const { gw } = await setup(t, { JWT_CLOCK_TOLERANCE_MS: '4000' })
  const exp = Math.floor(Date.now() / 1000) - 1
  const s = await openStream(`${gw.url}/events`, bearer(hsToken({ sub: 'skewed', exp })))
  t.teardown(() => { s.close() })
  t.equal(s.status, 200, 'accepted within the tolerance')
  await s.waitForEnd(15000)
  t.ok(Date.now() >= exp * 1000 + 4000 - 50, 'the stream lived until exp + JWT_CLOCK_TOLERANCE_MS')
  t.same(s.events.map(e => e.event), ['gateway.token-expired'], 'then ended with the token-expired event')
})

t.test('ordering promise: entries XADDed as soon as the headers arrive all reach the client, in order', async t => {
  t.setTimeout(60000)
  const { gw, prefix } = await setup(t)
  const token = hsToken({ sub: 'ord', topics: ['*'] })
  // A long-lived reader of the `hot` topic, so some connections join a key already read live.
  const hot = await openStream(`${gw.url}/events?topic=hot`, bearer(token))
  t.teardown(() => { hot.close() })
  const N = 50
  let bad = 0
  for (let round = 0; round < 30; round++) {
    // Fresh key, key already read live, and two channels on one connection.
    const topic = round % 3 === 0 ? `fresh${round}` : round % 3 === 1 ? 'hot' : `pair${round}`
    const url = round % 3 === 2 ? `${gw.url}/events?topic=${topic}&topic=${topic}b` : `${gw.url}/events?topic=${topic}`
    const s = new RawStream(url, bearer(token))
    await s.opened
    const keys = round % 3 === 2 ? [`${prefix}topic:${topic}`, `${prefix}topic:${topic}b`] : [`${prefix}topic:${topic}`]
    const p = redis.client.pipeline()
    for (let i = 0; i < N; i++) for (const k of keys) p.xadd(k, '*', 'data', `${k}|${round}|${i}`)
    await p.exec()
    await s.until(x => x.events.length >= N * keys.length || x.ended, 20000, `round ${round}`).catch(() => {})
    for (const k of keys) {
      const got = s.events.map(e => e.data).filter(d => d.startsWith(`${k}|`))
      const want = Array.from({ length: N }, (_, i) => `${k}|${round}|${i}`)
      if (got.join() !== want.join()) {
        bad++
        t.same(got, want, `round ${round} (${k}): every entry, in order`)
      }
    }
    if (s.events.length !== N * keys.length) {
      bad++
      t.equal(s.events.length, N * keys.length, `round ${round}: nothing else`)
    }
    s.close()
  }
  t.equal(bad, 0, '30 connections each received every entry written right after open, in per-channel order')
})

t.test('CORS with an exact origin: allowed origin and credentials on the stream and on errors', async t => {
  const { gw, prefix } = await setup(t, { CORS_ORIGINS: 'https://app.example' })
  const s = await openStream(`${gw.url}/events`, { ...bearer(hsToken({ sub: 'cors' })), origin: 'https://app.example' })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  t.equal(s.headers['access-control-allow-origin'], 'https://app.example', 'allow-origin is the caller\'s origin')
  t.equal(s.headers['access-control-allow-credentials'], 'true', 'credentials (cookies) allowed')
  t.match(s.headers.vary, /Origin/i, 'Vary: Origin, so caches do not mix origins')
  await redis.client.xadd(`${prefix}user:cors`, '*', 'data', 'cross-site')
  t.equal((await s.waitForEvents(1))[0]?.data, 'cross-site', 'events flow')

  const other = await openStream(`${gw.url}/events`, { ...bearer(hsToken({ sub: 'cors' })), origin: 'https://evil.example' })
  t.teardown(() => { other.close() })
  t.not(other.headers['access-control-allow-origin'], 'https://evil.example', 'another origin is not allowed')
  t.not(other.headers['access-control-allow-origin'], '*', 'nor is any origin')
  other.close()

  const refused = await getAnswer(`${gw.url}/events`, { origin: 'https://app.example' })
  t.equal(refused.status, 401)
  t.equal(refused.headers['access-control-allow-origin'], 'https://app.example', 'the app can read the error body')

  const preflight = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(`${gw.url}/events`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization,last-event-id' },
    }, res => { res.resume(); resolve(res) })
    req.on('error', reject)
    req.end()
  })
  t.equal(preflight.statusCode, 204, 'preflight answered')
  t.match(String(preflight.headers['access-control-allow-headers']), /authorization/i, 'Authorization may be sent')
  t.match(String(preflight.headers['access-control-allow-headers']), /last-event-id/i, 'Last-Event-ID may be sent')
})

t.test('CORS with `*`: any origin, no credentials', async t => {
  const { gw } = await setup(t, { CORS_ORIGINS: '*' })
  const s = await openStream(`${gw.url}/events`, { ...bearer(hsToken({ sub: 'any' })), origin: 'https://whoever.example' })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  t.equal(s.headers['access-control-allow-origin'], '*')
  t.equal(s.headers['access-control-allow-credentials'], undefined, 'no allow-credentials with a wildcard')
})

t.test('no CORS headers when CORS_ORIGINS is empty', async t => {
  const { gw } = await setup(t)
  const s = await openStream(`${gw.url}/events`, { ...bearer(hsToken({ sub: 'same-site' })), origin: 'https://app.example' })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  t.equal(s.headers['access-control-allow-origin'], undefined)
})

/** Collects what an EventSource sees. */
function watch (es: EventSource): { data: string[], ids: string[], opens: number, errors: number } {
  const seen = { data: [] as string[], ids: [] as string[], opens: 0, errors: 0 }
  es.addEventListener('open', () => { seen.opens++ })
  es.addEventListener('error', () => { seen.errors++ })
  es.addEventListener('message', (e: MessageEvent) => { seen.data.push(String(e.data)); seen.ids.push(e.lastEventId) })
  return seen
}

t.test('EventSource (token query parameter) receives events and reconnects by itself when the server ends the stream', async t => {
  t.setTimeout(60000)
  const { gw, prefix } = await setup(t, { RETRY_MS: '100', RETRY_JITTER_MS: '100' })
  const key = `${prefix}user:browser`
  const lastEventIds: Array<string | undefined> = []
  const es = new EventSource(`${gw.url}/events?token=${encodeURIComponent(hsToken({ sub: 'browser' }))}`, {
    fetch: async (url: string | URL, init: EventSourceFetchInit) => {
      lastEventIds.push(init.headers['Last-Event-ID'])
      return await fetch(url, init)
    },
  })
  t.teardown(() => { es.close() })
  const seen = watch(es)
  await eventually(() => seen.opens === 1, 10000, 'open')
  for (let i = 0; i < 5; i++) await redis.client.xadd(key, '*', 'data', `m${i}`)
  await eventually(() => seen.data.length >= 5, 10000, 'first events')

  // The server ends every stream with a short retry (as when a replica drains).
  await gw.gateway.sessions.closeAll('shutdown', 100, 0)
  // Written while the client is away: it must get them on reconnect, once.
  for (let i = 5; i < 10; i++) await redis.client.xadd(key, '*', 'data', `m${i}`)
  await eventually(() => seen.opens >= 2, 15000, 'reconnect').catch(() => {})
  t.ok(seen.opens >= 2, `EventSource reconnected by itself (${seen.opens} opens)`)
  t.equal(es.readyState, EventSource.OPEN, 'and is open')
  for (let i = 10; i < 15; i++) await redis.client.xadd(key, '*', 'data', `m${i}`)
  await eventually(() => seen.data.length >= 15, 15000, 'all events').catch(() => {})
  t.same(seen.data, Array.from({ length: 15 }, (_, i) => `m${i}`), 'every event once, in order, across the reconnect')
  t.equal(lastEventIds[0], undefined, 'first connect has no Last-Event-ID')
  t.equal(lastEventIds[1], seen.ids[4], 'the reconnect sent the last id it saw')
})

t.test('EventSource with a fresh token per request (as a cookie would) rides through token expiry', async t => {
  t.setTimeout(60000)
  const { gw, prefix } = await setup(t, { RETRY_MS: '100', RETRY_JITTER_MS: '100' })
  const key = `${prefix}user:refresh`
  let issued = 0
  const es = new EventSource(`${gw.url}/events`, {
    fetch: async (url: string | URL, init: EventSourceFetchInit) => {
      issued++
      const token = hsToken({ sub: 'refresh', exp: Math.floor(Date.now() / 1000) + 2 })
      return await fetch(url, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } })
    },
  })
  t.teardown(() => { es.close() })
  const seen = watch(es)
  let expired = 0
  es.addEventListener('gateway.token-expired', () => { expired++ })
  await eventually(() => seen.opens === 1, 10000, 'open')
  await redis.client.xadd(key, '*', 'data', 'r0')
  await eventually(() => expired >= 1, 15000, 'token-expired event').catch(() => {})
  t.ok(expired >= 1, 'the token-expired control event reached the application')
  await redis.client.xadd(key, '*', 'data', 'r1')
  await eventually(() => seen.opens >= 2 && seen.data.length >= 2, 15000, 'reconnect with a fresh token').catch(() => {})
  t.ok(seen.opens >= 2 && issued >= 2, 'reconnected with a fresh token')
  t.same(seen.data.slice(0, 2), ['r0', 'r1'], 'nothing lost across the expiry')
  t.equal(es.readyState === EventSource.CLOSED, false, 'the EventSource never gave up')
})
