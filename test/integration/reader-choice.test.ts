/**
 * Which live reader the gateway runs, end to end: with the default
 * READER_MODE (auto) on a plain redis-server with no server setting, client
 * tracking (/readyz and the reader-mode gauge say `track`), and clients get
 * their events; where the ACL refuses CLIENT TRACKING (a managed service's
 * user), the gateway says which rule is missing and reads by keyspace
 * notifications when the server has them on, else by blocking reads, and
 * clients still get everything; and where tracking is given but the
 * invalidation channel is not, the probe catches the silence and the
 * gateway falls back to blocking reads.
 */
import t from 'tap'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix, type TestRedis, type TestRedisOptions } from '../helpers/redis.js'
import { getJson, openStream, type RawStream } from '../helpers/sse.js'
import { scrapeMetric, type TestContext } from '../helpers/extra.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(120000)

const FAST = { READER_PROBE_INTERVAL_MS: '300', HEARTBEAT_INTERVAL_MS: '1000' }

async function scenario (t: TestContext, redisOpts: TestRedisOptions, refuse: readonly string[]): Promise<{ redis: TestRedis, gw: TestGateway, prefix: string, streams: RawStream[] }> {
  const redis = await startRedis(redisOpts)
  t.teardown(() => redis.stop())
  // What a least-privilege user on a managed service may lack.
  if (refuse.length > 0) await redis.client.call('ACL', 'SETUSER', 'default', ...refuse)
  const prefix = uniquePrefix('choice')
  // No READER_MODE: the default.
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...FAST })
  t.teardown(() => gw.close())
  const streams = await Promise.all(Array.from({ length: 5 }, async (_, i) =>
    await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ sub: `u${i}`, topics: ['news'] })}` })))
  t.teardown(() => { for (const s of streams) s.close() })
  return { redis, gw, prefix, streams }
}

async function everyEvent (t: TestContext, redis: TestRedis, prefix: string, streams: RawStream[]): Promise<void> {
  for (let round = 0; round < 3; round++) {
    for (let u = 0; u < streams.length; u++) await redis.client.xadd(`${prefix}user:u${u}`, '*', 'data', `u${u}-${round}`)
    await redis.client.xadd(`${prefix}topic:news`, '*', 'data', `news-${round}`)
  }
  for (const [u, s] of streams.entries()) {
    await s.waitForEvents(6, 20000)
    t.same(s.events.map(e => e.data).filter(d => d.startsWith(`u${u}-`)), [0, 1, 2].map(r => `u${u}-${r}`), `u${u}: its own events, in order, once`)
    t.same(s.events.map(e => e.data).filter(d => d.startsWith('news')), ['news-0', 'news-1', 'news-2'], `u${u}: the topic, in order, once`)
  }
}

t.test('auto on a plain Redis with no server setting reads by client tracking', async t => {
  const { redis, gw, prefix, streams } = await scenario(t, {}, [])
  const ready = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(ready.status, 200)
  t.equal((ready.body as { reader?: string }).reader, 'track', '/readyz names the tracking reader')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode', { mode: 'track' }), 1, 'the gauge says track')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode', { mode: 'block' }), 0)
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode', { mode: 'notify' }), 0)
  await everyEvent(t, redis, prefix, streams)
  t.ok(gw.logs.some(l => l.includes('live reads follow client-tracking invalidations')), 'and logs it')
})

for (const [notify, expected] of [[true, 'notify'], [false, 'block']] as const) {
  t.test(`auto where the ACL refuses CLIENT TRACKING, notifications ${notify ? 'on' : 'off'}: ${expected}, with the missing rule named`, async t => {
    const { redis, gw, prefix, streams } = await scenario(t, notify ? { notify: 'Kt' } : {}, ['-client|tracking'])
    const ready = await getJson(`${gw.internalUrl}/readyz`)
    t.equal(ready.status, 200)
    t.equal((ready.body as { reader?: string }).reader, expected)
    await everyEvent(t, redis, prefix, streams)
    const refusal = gw.logs.filter(l => l.includes('client tracking refused'))
    t.equal(refusal.length, 1, 'the refusal is logged once')
    t.match(refusal[0], /\+client\|tracking/, 'naming the missing rule')
    t.match(refusal[0], /NOPERM/, 'with the server\'s answer')
  })
}

t.test('tracking given but SUBSCRIBE to __redis__:invalidate refused: the probe catches it, blocking reads take over', async t => {
  const { redis, gw, prefix, streams } = await scenario(t, {}, ['resetchannels'])
  let ready = await getJson(`${gw.internalUrl}/readyz`)
  for (let i = 0; i < 200 && (ready.status !== 200 || (ready.body as { reader?: string }).reader !== 'block'); i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
    ready = await getJson(`${gw.internalUrl}/readyz`)
  }
  t.equal((ready.body as { reader?: string }).reader, 'block', `blocking reads (${JSON.stringify(ready.body)})`)
  t.equal(ready.status, 200, 'and ready again')
  await everyEvent(t, redis, prefix, streams)
  t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode_changes_total', { mode: 'block', because: 'probe-timeout' }) >= 1, 'the fallback is counted')
  t.ok(gw.logs.some(l => l.includes('client-tracking invalidations stopped arriving')), 'and logged')
  t.ok(gw.logs.some(l => l.includes('cannot turn on client tracking') && l.includes('__redis__:invalidate')), 'the refused subscription is named')
})
