import t from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { getJson, openStream, sleep } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(120000)

async function readyz (url: string): Promise<number> {
  return (await getJson(`${url}/readyz`)).status
}

async function until (check: () => Promise<boolean> | boolean, ms = 20000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`)
    await sleep(50)
  }
}

t.test('Redis killed and restarted mid-stream (AOF on): streams stay open, every event arrives, readiness flips', async t => {
  const redis = await startRedis({ appendonly: true })
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('outage')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, HEARTBEAT_INTERVAL_MS: '1000', READER_BLOCK_MS: '1000' })
  t.teardown(() => gw.close())
  const auth = (sub: string): Record<string, string> => ({ authorization: `Bearer ${hsToken({ sub, topics: ['news'] })}` })
  const clients = await Promise.all(['a', 'b', 'c'].map(async sub => await openStream(`${gw.url}/events?topic=news`, auth(sub))))
  t.teardown(() => { for (const c of clients) c.close() })
  t.equal(await readyz(gw.internalUrl), 200, 'ready before the outage')

  for (let i = 0; i < 50; i++) await redis.client.xadd(`${prefix}topic:news`, '*', 'data', `before-${i}`)
  for (const c of clients) await c.waitForEvents(50)

  await redis.kill()
  await until(async () => await readyz(gw.internalUrl) === 503, 20000, 'readyz 503 while Redis is down')
  const beats = clients.map(c => c.comments)
  await sleep(2500)
  t.ok(clients.every((c, i) => !c.ended && c.comments > (beats[i] as number)), 'streams stay open with heartbeats during the outage')

  await redis.restart()
  await until(async () => await readyz(gw.internalUrl) === 200, 20000, 'readyz 200 once Redis is back')
  for (let i = 0; i < 50; i++) await redis.client.xadd(`${prefix}topic:news`, '*', 'data', `after-${i}`)
  for (const c of clients) {
    await c.waitForEvents(100, 30000)
    const data = c.events.map(e => e.data)
    t.same(data, [...Array.from({ length: 50 }, (_, i) => `before-${i}`), ...Array.from({ length: 50 }, (_, i) => `after-${i}`)], 'every event once, in order')
    t.notOk(c.ended, 'still connected')
  }
  const errorLines = gw.logs.filter(l => l.includes('stream reader lost Redis'))
  t.ok(errorLines.length >= 1 && errorLines.length <= 4, `the outage is logged once per reader, not per event (${errorLines.length} lines)`)
  const metrics = (await getJson(`${gw.internalUrl}/metrics`)).body as string
  t.match(metrics, /sse_gateway_redis_reader_errors_total [1-9]/)
})

t.test('a client connecting while Redis is down is told to retry, never refused', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('outage') })
  t.teardown(() => gw.close())
  await redis.kill()
  await until(async () => await readyz(gw.internalUrl) === 503, 20000, 'readyz 503')
  const s = await openStream(`${gw.url}/events?topic=x`, { authorization: `Bearer ${hsToken({ sub: 'z', topics: ['x'] })}` })
  await s.waitForEnd(30000)
  t.equal(s.status, 200)
  t.ok(s.retry !== undefined)
  t.equal(s.events[0]?.event, 'gateway.unavailable')
  t.equal(JSON.parse(s.events[0]?.data ?? '{}').reason, 'source-unavailable')
  await redis.restart()
})
