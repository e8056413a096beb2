/**
 * /metrics on the internal port: every metric the README documents exists,
 * the figures move with real traffic, and no label carries a user id or a
 * topic name.
 */
import { readFileSync } from 'node:fs'
import t from 'tap'
import { getText, scrapeMetric } from '../helpers/extra.js'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { getJson, openStream, sleep } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

const documented = [...readFileSync(new URL('../../README.md', import.meta.url), 'utf8').matchAll(/^\| `(sse_gateway_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)]
  .map(m => ({ name: m[1] as string, type: m[2] as string }))

t.test('every documented metric is exposed with its type, on the internal port only', async t => {
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('m') })
  t.teardown(() => gw.close())
  t.ok(documented.length >= 20, `the README documents the metrics (${documented.length})`)
  const { status, body } = await getText(`${gw.internalUrl}/metrics`)
  t.equal(status, 200)
  for (const m of documented) t.match(body, new RegExp(`^# TYPE ${m.name} ${m.type}$`, 'm'), `${m.name} is a ${m.type}`)
  const exposed = new Set([...body.matchAll(/^# TYPE (sse_gateway_[a-z_]+) /gm)].map(m => m[1] as string))
  const undocumented = [...exposed].filter(n => !n.startsWith('sse_gateway_process_') && !n.startsWith('sse_gateway_nodejs_') && !documented.some(d => d.name === n))
  t.same(undocumented, [], 'every gateway metric is in the README table')
  t.match(body, /^sse_gateway_process_cpu_seconds_total /m, 'default process metrics are there')
  t.equal((await getJson(`${gw.url}/metrics`)).status, 404, 'not on the public port')
})

t.test('metrics move with real traffic; labels never carry a user or a topic', async t => {
  const prefix = uniquePrefix('m')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, MAX_CONNECTIONS: '777' })
  t.teardown(() => gw.close())
  const url = gw.internalUrl
  const users = ['alice-secret-user', 'bob-secret-user', 'carol-secret-user']
  const streams = await Promise.all(users.map(async sub =>
    await openStream(`${gw.url}/events?topic=orders-secret-topic`, { authorization: `Bearer ${hsToken({ sub, topics: ['orders-secret-topic'] })}` })))
  t.teardown(() => { for (const s of streams) s.close() })
  for (let i = 0; i < 10; i++) await redis.client.xadd(`${prefix}topic:orders-secret-topic`, '*', 'data', `e${i}`)
  for (const s of streams) await s.waitForEvents(10)
  await getJson(`${gw.url}/events?token=not-a-jwt`)

  t.equal(await scrapeMetric(url, 'sse_gateway_connections_open'), 3)
  t.equal(await scrapeMetric(url, 'sse_gateway_connections_opened_total'), 3)
  t.equal(await scrapeMetric(url, 'sse_gateway_subscriptions_total', { kind: 'user' }), 3)
  t.equal(await scrapeMetric(url, 'sse_gateway_subscriptions_total', { kind: 'topic' }), 3)
  t.equal(await scrapeMetric(url, 'sse_gateway_streams_read'), 4, 'three user streams and the topic')
  t.equal(await scrapeMetric(url, 'sse_gateway_events_delivered_total', { source: 'live' }), 30)
  t.ok(await scrapeMetric(url, 'sse_gateway_delivery_lag_seconds_count') >= 1, 'delivery lag observed')
  t.ok(await scrapeMetric(url, 'sse_gateway_redis_xread_duration_seconds_count') >= 1, 'XREAD round trips observed')
  t.equal(await scrapeMetric(url, 'sse_gateway_auth_failures_total', { reason: 'invalid' }), 1)
  t.equal(await scrapeMetric(url, 'sse_gateway_requests_rejected_total', { code: 'SSEGW_ERR_AUTH_INVALID_TOKEN' }), 1)
  t.equal(await scrapeMetric(url, 'sse_gateway_ready'), 1)
  t.equal(await scrapeMetric(url, 'sse_gateway_connections_limit'), 777)

  const { body } = await getText(`${url}/metrics`)
  for (const secret of [...users, 'orders-secret-topic', prefix]) t.notOk(body.includes(secret), `no label holds ${secret}`)

  for (const s of streams) s.close()
  const deadline = Date.now() + 5000
  while (await scrapeMetric(url, 'sse_gateway_connections_open') > 0 && Date.now() < deadline) await sleep(20)
  t.equal(await scrapeMetric(url, 'sse_gateway_connections_open'), 0)
  t.equal(await scrapeMetric(url, 'sse_gateway_connections_closed_total', { reason: 'client-closed' }), 3)
  t.equal(await scrapeMetric(url, 'sse_gateway_connection_duration_seconds_count'), 3)
})
