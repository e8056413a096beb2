import t from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { getJson, openStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

t.test('per-user limit answers 429 SSEGW_ERR_TOO_MANY_CONNECTIONS; a freed slot is usable again', async t => {
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('lim'), MAX_CONNECTIONS_PER_USER: '2' })
  t.teardown(() => gw.close())
  const auth = { authorization: `Bearer ${hsToken({ sub: 'u1' })}` }
  const a = await openStream(`${gw.url}/events`, auth)
  const b = await openStream(`${gw.url}/events`, auth)
  t.teardown(() => { a.close(); b.close() })
  t.equal(a.status, 200)
  t.equal(b.status, 200)
  const refused = await getJson(`${gw.url}/events`, auth)
  t.equal(refused.status, 429)
  t.equal(refused.body.error, 'SSEGW_ERR_TOO_MANY_CONNECTIONS')
  t.match(refused.body.message, /MAX_CONNECTIONS_PER_USER/)
  const other = await openStream(`${gw.url}/events`, { authorization: `Bearer ${hsToken({ sub: 'u2' })}` })
  t.teardown(() => other.close())
  t.equal(other.status, 200, 'another user is not affected')
  a.close()
  await t.resolves(waitUntil(() => gw.gateway.sessions.countFor('u1') === 1), 'closing a stream frees its slot')
  const again = await openStream(`${gw.url}/events`, auth)
  t.teardown(() => again.close())
  t.equal(again.status, 200)
})

t.test('replica limit: EventSource gets 200 + retry + gateway.unavailable; other clients 503 with Retry-After', async t => {
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('lim'), MAX_CONNECTIONS: '1' })
  t.teardown(() => gw.close())
  const first = await openStream(`${gw.url}/events`, { authorization: `Bearer ${hsToken({ sub: 'a' })}` })
  t.teardown(() => first.close())
  const sse = await openStream(`${gw.url}/events`, { authorization: `Bearer ${hsToken({ sub: 'b' })}` })
  await sse.waitForEnd()
  t.equal(sse.status, 200, 'a 200, so EventSource retries instead of giving up')
  t.ok(sse.retry !== undefined && sse.retry > 0, 'carries a retry')
  t.equal(sse.events[0]?.event, 'gateway.unavailable')
  t.equal(JSON.parse(sse.events[0]?.data ?? '{}').reason, 'at-capacity')
  const plain = await getJson(`${gw.url}/events`, { authorization: `Bearer ${hsToken({ sub: 'c' })}`, accept: 'application/json' })
  t.equal(plain.status, 503)
  t.equal(plain.body.error, 'SSEGW_ERR_UNAVAILABLE')
  t.ok(Number(plain.headers['retry-after']) >= 1)
})

t.test('connect rate per IP answers 429 SSEGW_ERR_RATE_LIMITED with Retry-After', async t => {
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('lim'), CONNECT_RATE_PER_IP: '3' })
  t.teardown(() => gw.close())
  const auth = { authorization: `Bearer ${hsToken({ sub: 'r' })}`, accept: 'application/json' }
  const answers = []
  for (let i = 0; i < 6; i++) answers.push(await getJson(`${gw.url}/events?history=abc`, auth))
  const limited = answers.filter(a => a.status === 429)
  t.ok(limited.length >= 2, `over the rate some are refused (${limited.length})`)
  t.equal(limited[0]?.body.error, 'SSEGW_ERR_RATE_LIMITED')
  t.ok(limited[0]?.headers['retry-after'] !== undefined, 'Retry-After is set')
})

async function waitUntil (check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not reached')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

t.test('regression: HEAD /events does not open a session that never ends', async t => {
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('lim') })
  t.teardown(() => gw.close())
  const res = await fetch(`${gw.url}/events`, { method: 'HEAD', headers: { authorization: `Bearer ${hsToken({ sub: 'h' })}` } })
  t.equal(res.status, 404)
  t.equal(gw.gateway.sessions.size, 0, 'no session was opened')
  t.equal(gw.gateway.hub.size, 0, 'no key is read')
})
