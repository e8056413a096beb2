/**
 * The producer helper `publish(redis, ...)`: every refusal before anything is
 * written (stable code, a message saying what to fix), the commands it sends,
 * and against a throwaway redis-server: one round trip (one MULTI/EXEC in one
 * write), MAXLEN ~ trimming, EXPIRE on user streams and not on topics.
 */
import { Redis, type Cluster } from 'ioredis'
import t from 'tap'
import { publish, type RedisLike } from '../../src/index.js'
import type { TestContext } from '../helpers/extra.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

// Compile-time: any ioredis client fits the structural type.
const fitsRedis: (c: Redis) => RedisLike = c => c
const fitsCluster: (c: Cluster) => RedisLike = c => c
void fitsRedis
void fitsCluster

/** Records what it is asked to send; answers like Redis would. */
function recorder (): RedisLike & { calls: unknown[][][], execs: number } {
  const rec = {
    calls: [] as unknown[][][],
    execs: 0,
    multi (commands: unknown[][]) {
      rec.calls.push(commands)
      return {
        async exec (): Promise<Array<[Error | null, unknown]>> {
          rec.execs++
          return commands.map((c, i) => [null, i === 0 ? '1700000000000-0' : 1] as [null, unknown])
        },
      }
    },
  }
  return rec
}

/** A client that fails the test if it is used at all. */
const untouchable: RedisLike = {
  multi () { throw new Error('publish touched Redis although the arguments are invalid') },
}

async function refused (t: TestContext, opts: unknown, code: string, message: RegExp): Promise<void> {
  const p = publish(untouchable, opts as Parameters<typeof publish>[1])
  await t.rejects(p, { code, message }, `${code}: ${JSON.stringify(opts, (_k, v: unknown) => typeof v === 'string' && v.length > 60 ? `${v.slice(0, 20)}...(${v.length})` : v)}`)
}

t.test('refuses a bad channel before writing anything', async t => {
  const code = 'SSEGW_ERR_PUBLISH_CHANNEL_INVALID'
  for (const channel of [undefined, 42, null, '', 'news', 'topic:', 'topic:.a', 'topic:a b', 'topic:a*', 'topic:' + 'x'.repeat(129), 'TOPIC:a', 'topics:a', 'user:', 'user:a\nb', 'user:a\x7f', 'user:' + 'x'.repeat(257), 'stream:a']) {
    await refused(t, { channel, data: 'x' }, code, /"topic:<name>".*"user:<sub>"/)
  }
})

t.test('refuses a bad event name', async t => {
  for (const event of ['', 'gateway.gap', 'gateway.', 'a\nb', 'a\rb', 'a\0b', 'a\tb', 'x'.repeat(129), 42, {}]) {
    await refused(t, { channel: 'topic:a', event, data: 'x' }, 'SSEGW_ERR_PUBLISH_EVENT_INVALID', /1 to 128 characters.*gateway\./)
  }
})

t.test('refuses data that is not text, and data over the size limit', async t => {
  for (const data of [undefined, null, 42, { a: 1 }, ['x'], Buffer.from('x')]) {
    await refused(t, { channel: 'topic:a', data }, 'SSEGW_ERR_PUBLISH_DATA_INVALID', /must be a string/)
  }
  for (const data of ['\ud800', 'a\udc00b', 'x\ud83d']) {
    await refused(t, { channel: 'topic:a', data }, 'SSEGW_ERR_PUBLISH_DATA_INVALID', /lone UTF-16 surrogate/)
  }
  await refused(t, { channel: 'topic:a', data: 'x'.repeat(262145) }, 'SSEGW_ERR_PUBLISH_TOO_LARGE', /262145 bytes.*at most 262144/)
  // The limit counts UTF-8 bytes, not UTF-16 units: 3 x 2 bytes > 5.
  await refused(t, { channel: 'topic:a', data: 'ééé', maxDataBytes: 5 }, 'SSEGW_ERR_PUBLISH_TOO_LARGE', /6 bytes.*at most 5 \(maxDataBytes/)
  const rec = recorder()
  await publish(rec, { channel: 'topic:a', data: 'éé', maxDataBytes: 4 })
  t.equal(rec.execs, 1, 'data of exactly maxDataBytes is accepted')
})

t.test('refuses bad trimming and expiry options', async t => {
  const code = 'SSEGW_ERR_PUBLISH_OPTION_INVALID'
  for (const maxLen of [0, -1, 1.5, NaN, Infinity, '10']) await refused(t, { channel: 'topic:a', data: 'x', maxLen }, code, /maxLen/)
  for (const minId of ['abc', '1-2-3', '-1', '1-', '99999999999999999999999-0']) await refused(t, { channel: 'topic:a', data: 'x', minId }, code, /minId/)
  await refused(t, { channel: 'topic:a', data: 'x', maxLen: 10, minId: '1-0' }, code, /`maxLen` or `minId`, not both/)
  for (const expireSeconds of [-1, 1.5, NaN, '60']) await refused(t, { channel: 'user:1', data: 'x', expireSeconds }, code, /expireSeconds/)
  await refused(t, { channel: 'topic:a', data: 'x', prefix: 'a b' }, code, /prefix/)
  await refused(t, { channel: 'topic:a', data: 'x', maxDataBytes: 0 }, code, /maxDataBytes/)
  await t.rejects(publish({} as RedisLike, { channel: 'topic:a', data: 'x' }), { code, message: /ioredis client/ }, 'a redis argument without multi')
})

t.test('accepts the edges of every rule', async t => {
  const rec = recorder()
  await publish(rec, { channel: 'topic:' + 'x'.repeat(128), event: 'e'.repeat(128), data: '' })
  await publish(rec, { channel: 'user:' + 'é'.repeat(256), data: 'line 1\r\nline 2\rline 3\n' })
  await publish(rec, { channel: 'topic:a.b_c-d:e@f/g', event: 'gateway', data: '\u{1F600}' })
  await publish(rec, { channel: 'user:a b@c', event: 'ünïcode name', data: 'x' })
  t.equal(rec.execs, 4, 'all four written')
})

t.test('commands: one MULTI with XADD MAXLEN ~ and, for user channels, EXPIRE', async t => {
  const rec = recorder()
  t.equal(await publish(rec, { channel: 'topic:news', event: 'price', data: '{"p":1}' }), '1700000000000-0', 'returns the XADD id')
  await publish(rec, { channel: 'user:42', data: 'hi' })
  await publish(rec, { prefix: 'app:', channel: 'user:42', data: 'hi', maxLen: 5, expireSeconds: 60 })
  await publish(rec, { channel: 'user:42', data: 'hi', expireSeconds: 0 })
  await publish(rec, { channel: 'topic:news', data: 'hi', minId: '1700000000000-0', expireSeconds: 3600 })
  await publish(rec, { channel: 'topic:news', data: 'hi', minId: '1700000000000' })
  t.same(rec.calls, [
    [['xadd', 'sse:topic:news', 'MAXLEN', '~', '10000', '*', 'event', 'price', 'data', '{"p":1}']],
    [['xadd', 'sse:user:42', 'MAXLEN', '~', '1000', '*', 'data', 'hi'], ['expire', 'sse:user:42', '86400']],
    [['xadd', 'app:user:42', 'MAXLEN', '~', '5', '*', 'data', 'hi'], ['expire', 'app:user:42', '60']],
    [['xadd', 'sse:user:42', 'MAXLEN', '~', '1000', '*', 'data', 'hi']],
    [['xadd', 'sse:topic:news', 'MINID', '~', '1700000000000-0', '*', 'data', 'hi'], ['expire', 'sse:topic:news', '3600']],
    [['xadd', 'sse:topic:news', 'MINID', '~', '1700000000000', '*', 'data', 'hi']],
  ])
  t.equal(rec.execs, 6, 'one exec per publish')
})

t.test('a failed command inside the transaction rejects, with the Redis error', async t => {
  const prefix = uniquePrefix('prod')
  await redis.client.set(`${prefix}topic:str`, 'not a stream')
  await t.rejects(publish(redis.client, { prefix, channel: 'topic:str', data: 'x' }), { name: 'ReplyError', message: /WRONGTYPE/ })
})

async function info (section: string): Promise<Map<string, string>> {
  const text = await redis.client.info(section)
  return new Map(text.split('\r\n').filter(l => l.includes(':')).map(l => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]))
}

async function readsProcessed (): Promise<number> {
  return Number((await info('stats')).get('total_reads_processed'))
}

t.test('one round trip: MULTI, XADD, EXPIRE, EXEC arrive in one read, as one transaction', async t => {
  const prefix = uniquePrefix('prod')
  const producer = new Redis({ path: redis.socket, protocol: 2 })
  t.teardown(() => { producer.disconnect() })
  await producer.ping()
  const monitor = await redis.client.monitor()
  t.teardown(() => { monitor.disconnect() })
  const seen: Array<{ args: string[], source: string }> = []
  monitor.on('monitor', (_time: string, args: string[], source: string) => { if (args[0] !== 'info') seen.push({ args, source }) })

  await redis.client.config('RESETSTAT')
  const before = await readsProcessed()
  const id = await publish(producer, { prefix, channel: 'user:42', event: 'notice', data: 'hello' })
  const after = await readsProcessed()
  // `after` counts its own INFO read: one more than the publish itself.
  t.equal(after - before - 1, 1, 'the server read the whole publish in one read event (one write, one round trip)')

  const stats = await info('commandstats')
  const calls = (name: string): number => Number(/calls=(\d+)/.exec(stats.get(`cmdstat_${name}`) ?? '')?.[1] ?? 0)
  t.same({ multi: calls('multi'), xadd: calls('xadd'), expire: calls('expire'), exec: calls('exec') }, { multi: 1, xadd: 1, expire: 1, exec: 1 }, 'INFO commandstats: one MULTI, XADD, EXPIRE, EXEC')

  await new Promise(resolve => setTimeout(resolve, 200))
  const mine = seen.filter(s => s.args.some(a => a.startsWith(prefix)) || ['multi', 'exec'].includes(s.args[0]?.toLowerCase() ?? ''))
  t.same(mine.map(s => s.args[0]?.toLowerCase()), ['multi', 'xadd', 'expire', 'exec'], 'MONITOR: MULTI, XADD, EXPIRE, EXEC in that order')
  t.equal(new Set(mine.map(s => s.source)).size, 1, 'all from one connection')
  t.same(mine[1]?.args, ['xadd', `${prefix}user:42`, 'MAXLEN', '~', '1000', '*', 'event', 'notice', 'data', 'hello'])
  t.same(mine[2]?.args, ['expire', `${prefix}user:42`, '86400'])

  // The measure is sensitive: the same two commands awaited one by one take two reads.
  const b2 = await readsProcessed()
  await producer.xadd(`${prefix}user:43`, '*', 'data', 'x')
  await producer.expire(`${prefix}user:43`, 60)
  t.equal(await readsProcessed() - b2 - 1, 2, 'control: two separate round trips are seen as two reads')

  const entries = await redis.client.xrange(`${prefix}user:42`, '-', '+')
  t.same(entries, [[id, ['event', 'notice', 'data', 'hello']]], 'the returned id is the entry written, with exactly event and data')
})

t.test('EXPIRE: 24 h on user streams by default, none on topics, as told otherwise', async t => {
  const prefix = uniquePrefix('prod')
  const c = redis.client
  await publish(c, { prefix, channel: 'user:42', data: 'x' })
  await publish(c, { prefix, channel: 'topic:news', data: 'x' })
  await publish(c, { prefix, channel: 'user:short', data: 'x', expireSeconds: 60 })
  await publish(c, { prefix, channel: 'user:forever', data: 'x', expireSeconds: 0 })
  await publish(c, { prefix, channel: 'topic:temp', data: 'x', expireSeconds: 120 })
  const ttl42 = await c.ttl(`${prefix}user:42`)
  t.ok(ttl42 > 86390 && ttl42 <= 86400, `user stream expires in 24 h (${ttl42} s)`)
  t.equal(await c.ttl(`${prefix}topic:news`), -1, 'topic stream has no expiry')
  const ttlShort = await c.ttl(`${prefix}user:short`)
  t.ok(ttlShort > 50 && ttlShort <= 60, `expireSeconds: 60 (${ttlShort} s)`)
  t.equal(await c.ttl(`${prefix}user:forever`), -1, 'expireSeconds: 0 sets none')
  const ttlTemp = await c.ttl(`${prefix}topic:temp`)
  t.ok(ttlTemp > 110 && ttlTemp <= 120, `a topic gets one when asked (${ttlTemp} s)`)
  // Each publish renews it: the stream lives as long as its user gets events.
  await c.expire(`${prefix}user:42`, 10)
  await publish(c, { prefix, channel: 'user:42', data: 'y' })
  t.ok(await c.ttl(`${prefix}user:42`) > 86390, 'a later publish renews the expiry')
})

t.test('MAXLEN ~ trims: the stream stays near maxLen and keeps the newest entries', async t => {
  const prefix = uniquePrefix('prod')
  const key = `${prefix}topic:busy`
  const ids: string[] = []
  for (let batch = 0; batch < 20; batch++) {
    ids.push(...await Promise.all(Array.from({ length: 100 }, async (_, i) => await publish(redis.client, { prefix, channel: 'topic:busy', data: `${batch}:${i}`, maxLen: 100 }))))
  }
  const len = await redis.client.xlen(key)
  t.ok(len >= 100 && len <= 300, `2,000 appends with maxLen 100 keep about 100 (${len}; ~ trims whole nodes)`)
  const newest = await redis.client.xrevrange(key, '+', '-', 'COUNT', 100)
  t.same(newest.map(e => e[0]).reverse(), ids.slice(-100), 'the newest 100 are all there, in order')

  const users = `${prefix}user:u`
  for (let i = 0; i < 1500; i++) await publish(redis.client, { prefix, channel: 'user:u', data: String(i) })
  const ulen = await redis.client.xlen(users)
  t.ok(ulen >= 1000 && ulen < 1500, `user default MAXLEN ~ 1000 (${ulen})`)
})

t.test('nothing is written when a check fails', async t => {
  const prefix = uniquePrefix('prod')
  await t.rejects(publish(redis.client, { prefix, channel: 'user:42', event: 'gateway.gap', data: 'x' }), { code: 'SSEGW_ERR_PUBLISH_EVENT_INVALID' })
  await t.rejects(publish(redis.client, { prefix, channel: 'user:42', data: 'x', maxLen: 0 }), { code: 'SSEGW_ERR_PUBLISH_OPTION_INVALID' })
  t.equal(await redis.client.exists(`${prefix}user:42`), 0, 'no stream was created')
})
