import t from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

t.test('user channel plus two topics on one connection', async t => {
  const prefix = uniquePrefix('chan')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  const token = hsToken({ sub: 'alice', topics: ['news', 'orders.*'] })
  const s = await openStream(`${gw.url}/events?topic=news&topic=orders.eu`, { authorization: `Bearer ${token}` })
  t.teardown(() => s.close())
  t.equal(s.status, 200)
  t.match(s.headers['content-type'], /^text\/event-stream/)
  t.equal(s.headers['cache-control'], 'no-cache, no-transform')
  t.equal(s.headers['x-accel-buffering'], 'no')
  await redis.client.xadd(`${prefix}topic:news`, '*', 'event', 'price', 'data', '{"p":1}')
  await redis.client.xadd(`${prefix}user:alice`, '*', 'data', 'for alice')
  await redis.client.xadd(`${prefix}topic:orders.eu`, '*', 'event', 'order', 'data', 'o1')
  await redis.client.xadd(`${prefix}user:bob`, '*', 'data', 'for bob')
  const events = await s.waitForEvents(3)
  t.same(events.map(e => [e.event, e.data]).sort(), [['message', 'for alice'], ['order', 'o1'], ['price', '{"p":1}']].sort())
  t.ok(events.every(e => typeof e.id === 'string' && e.id.length > 0), 'every event has an id')
  t.ok(s.retry !== undefined && s.retry >= 2000 && s.retry <= 3000, `retry with jitter (${String(s.retry)})`)
})
