/**
 * The three live readers (sharded blocking XREAD, keyspace notifications,
 * client tracking) give clients the same thing: every entry once, in order,
 * a new key read at once, released keys no longer read, and nothing lost
 * across a Redis restart.
 */
import t from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { getJson, openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(180000)

for (const mode of ['block', 'notify', 'track'] as const) {
  t.test(`${mode} reader`, async t => {
    const redis = await startRedis({ appendonly: true, notify: 'Kt' })
    t.teardown(() => redis.stop())
    const prefix = uniquePrefix(mode)
    // READER_BLOCK_MS is long: nothing may depend on a read timing out.
    const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, READER_MODE: mode, READER_BLOCK_MS: '30000', READER_COUNT: '7' })
    t.teardown(() => gw.close())
    t.equal((gw.gateway.source as { mode?: string }).mode, mode, `runs the ${mode} reader`)

    const USERS = 200
    const streams: RawStream[] = []
    for (let i = 0; i < USERS; i += 50) {
      streams.push(...await Promise.all(Array.from({ length: Math.min(50, USERS - i) }, async (_, k) =>
        await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ sub: `u${i + k}`, topics: ['news'] })}` }))))
    }
    t.teardown(() => { for (const s of streams) s.close() })

    const started = Date.now()
    const pipe = redis.client.pipeline()
    for (let round = 0; round < 5; round++) {
      for (let u = 0; u < USERS; u++) pipe.xadd(`${prefix}user:u${u}`, '*', 'data', `u${u}-${round}`)
      pipe.xadd(`${prefix}topic:news`, '*', 'data', `news-${round}`)
    }
    await pipe.exec()
    for (const [u, s] of streams.entries()) {
      await s.waitForEvents(10, 60000)
      t.same(s.events.filter(e => !e.data.startsWith('news')).map(e => e.data), [0, 1, 2, 3, 4].map(r => `u${u}-${r}`), `client u${u} gets its own events in order`)
    }
    t.ok(streams.every((s, u) => s.events.map(e => e.data).filter(d => d.startsWith('news')).join() === 'news-0,news-1,news-2,news-3,news-4' &&
      s.events.every(e => e.data.startsWith('news') || e.data.startsWith(`u${u}-`))), 'each client: its own events and the topic, in order, nothing of anyone else')
    t.ok(Date.now() - started < 30000, 'new keys were read without waiting for READER_BLOCK_MS')

    // Release: every key goes once its clients leave; a later client still gets events.
    for (const s of streams) s.close()
    const deadline = Date.now() + 10000
    while (gw.gateway.source.watchedKeys > 0 && Date.now() < deadline) await sleep(20)
    t.equal(gw.gateway.source.watchedKeys, 0, 'released keys are no longer read')
    const late = await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ sub: 'late', topics: ['news'] })}` })
    t.teardown(() => late.close())
    await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'after-release')
    await late.waitForEvents(1, 20000)
    t.equal(late.events[0]?.data, 'after-release')

    // Redis restart (AOF): nothing lost, and what was written while the
    // gateway was reconnecting arrives too.
    await redis.kill()
    await redis.restart()
    for (let i = 0; i < 20; i++) await redis.client.xadd(`${prefix}topic:news`, '*', 'data', `restart-${i}`)
    await late.waitForEvents(21, 30000)
    t.same(late.events.slice(1).map(e => e.data), Array.from({ length: 20 }, (_, i) => `restart-${i}`), 'every entry written after the restart, in order')
    // Ready again once the reconnected reader has proven that reads flow.
    let ready = await getJson(`${gw.internalUrl}/readyz`)
    for (let i = 0; i < 100 && ready.status !== 200; i++) {
      await sleep(100)
      ready = await getJson(`${gw.internalUrl}/readyz`)
    }
    t.equal(ready.status, 200, `ready again (${JSON.stringify(ready.body)})`)
  })
}
