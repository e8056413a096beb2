/**
 * Keys are reference-counted: a disconnected client's keys are released (the
 * hub, the reader and the metric agree), shared keys stay until the last
 * reader leaves, and the blocking reader is never left waiting on a stale key
 * list: new keys are read at once, not after READER_BLOCK_MS.
 *
 * READER_BLOCK_MS is 30 s throughout, so a reader that waits for its BLOCK
 * timeout would push these tests far past their deadlines.
 */
import { connect } from 'node:net'
import t from 'tap'
import { eventually, openMany, scrapeMetric, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const BLOCK_MS = 30000

const redis = await startRedis()
t.teardown(() => redis.stop())

async function setup (t: TestContext, env: Record<string, string> = {}): Promise<{ gw: TestGateway, prefix: string }> {
  const prefix = uniquePrefix('rel')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, READER_BLOCK_MS: String(BLOCK_MS), ...env })
  t.teardown(() => gw.close())
  return { gw, prefix }
}

async function open (t: TestContext, gw: TestGateway, sub: string | undefined, topics: string[]): Promise<RawStream> {
  const token = hsToken({ sub, topics: ['*'] })
  const qs = topics.map(x => `topic=${x}`).join('&')
  const s = await openStream(`${gw.url}/events${qs === '' ? '' : `?${qs}`}`, { authorization: `Bearer ${token}` })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200, `stream for ${String(sub)} ${topics.join(',')} open`)
  return s
}

/** Keys held by the hub, keys the reader watches, and the scraped gauge. */
async function counts (gw: TestGateway): Promise<[number, number, number]> {
  return [gw.gateway.hub.size, gw.gateway.source.watchedKeys, await scrapeMetric(gw.internalUrl, 'sse_gateway_streams_read')]
}

async function released (t: TestContext, gw: TestGateway, n: number, what: string): Promise<void> {
  await eventually(async () => (await counts(gw)).every(c => c === n), 10000, what).catch(() => {})
  t.same(await counts(gw), [n, n, n], `${what}: hub keys, watched keys and sse_gateway_streams_read are ${n}`)
}

/** XADDs right after the stream opened and checks the event arrives well before BLOCK_MS. */
async function arrivesAtOnce (t: TestContext, s: RawStream, key: string, data: string): Promise<void> {
  const started = Date.now()
  await redis.client.xadd(key, '*', 'data', data)
  await s.until(x => x.events.some(e => e.data === data), BLOCK_MS / 2, data).catch(() => {})
  t.ok(s.events.some(e => e.data === data), `${data}: arrives`)
  t.ok(Date.now() - started < BLOCK_MS / 2, `${data}: arrives without waiting for READER_BLOCK_MS`)
}

t.test('a disconnected client\'s keys are released', async t => {
  const { gw, prefix } = await setup(t)
  const s = await open(t, gw, 'ann', ['news', 'prices'])
  t.same(await counts(gw), [3, 3, 3], 'user channel and two topics read')
  await arrivesAtOnce(t, s, `${prefix}topic:news`, 'first')
  s.close()
  await released(t, gw, 0, 'after the client closed')
  await eventually(() => gw.gateway.sessions.size === 0, 5000, 'session gone').catch(() => {})
  t.equal(gw.gateway.sessions.size, 0, 'no session left')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_open'), 0, 'connections_open back to 0')
})

t.test('keys shared by two clients stay until the last one leaves', async t => {
  const { gw, prefix } = await setup(t)
  const a = await open(t, gw, 'a', ['shared'])
  const b = await open(t, gw, 'b', ['shared'])
  t.same(await counts(gw), [3, 3, 3], 'user:a, user:b and the shared topic')
  a.close()
  await released(t, gw, 2, 'after the first client left')
  t.ok(gw.gateway.hub.position(`${prefix}topic:shared`) !== undefined, 'the shared key is still read')
  t.equal(gw.gateway.hub.position(`${prefix}user:a`), undefined, 'the first client\'s own key is not')
  await arrivesAtOnce(t, b, `${prefix}topic:shared`, 'still shared')
  b.close()
  await released(t, gw, 0, 'after the last client left')
})

t.test('a client connecting again after every key was released receives new events promptly', async t => {
  // One shard: its blocked read still lists the released key when the client comes back.
  const { gw, prefix } = await setup(t, { READER_SHARDS: '1' })
  const key = `${prefix}topic:again`
  for (let round = 1; round <= 3; round++) {
    const s = await open(t, gw, undefined, ['again'])
    await arrivesAtOnce(t, s, key, `round ${round}`)
    s.close()
    await released(t, gw, 0, `round ${round} released`)
  }
  // Released and wanted again in the same moment: close and reopen with no pause.
  const s1 = await open(t, gw, undefined, ['again'])
  s1.close()
  const s2 = await open(t, gw, undefined, ['again'])
  await arrivesAtOnce(t, s2, key, 'reopened at once')
  // And a different key after everything was released.
  s2.close()
  await released(t, gw, 0, 'all released again')
  const s3 = await open(t, gw, undefined, ['other'])
  await arrivesAtOnce(t, s3, `${prefix}topic:other`, 'a new key after a release')
})

for (const shards of ['1', '4']) {
  t.test(`a newly needed key is read at once, not after READER_BLOCK_MS (${shards} shard(s))`, async t => {
    const { gw, prefix } = await setup(t, { READER_SHARDS: shards })
    // Every shard that has keys is now blocked in XREAD for up to 30 s.
    const blockers = await Promise.all(['b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8'].map(async x => await open(t, gw, undefined, [x])))
    await sleep(200)
    for (const name of ['n1', 'n2', 'n3', 'n4']) {
      const s = await open(t, gw, `new-${name}`, [name])
      await arrivesAtOnce(t, s, `${prefix}user:new-${name}`, `${name} user channel`)
      await arrivesAtOnce(t, s, `${prefix}topic:${name}`, `${name} topic`)
    }
    await arrivesAtOnce(t, blockers[0] as RawStream, `${prefix}topic:b1`, 'earlier keys still read')
  })
}

t.test('200 clients on their own keys all released; the reader still serves the next one', async t => {
  t.setTimeout(60000)
  const { gw, prefix } = await setup(t)
  const streams = await openMany(200, 50, n => ({ url: `${gw.url}/events`, headers: { authorization: `Bearer ${hsToken({ sub: `u${n}` })}` } }))
  t.equal(streams.filter(s => s.status === 200).length, 200, 'all open')
  t.same(await counts(gw), [200, 200, 200], 'one key each')
  for (const s of streams) s.close()
  await released(t, gw, 0, 'after 200 clients closed')
  const s = await open(t, gw, 'u7', [])
  await arrivesAtOnce(t, s, `${prefix}user:u7`, 'after the mass release')
})

t.test('clients that hang up before, while or just after the stream opens leave no key behind', async t => {
  const { gw } = await setup(t)
  const port = Number(new URL(gw.url).port)
  const token = hsToken({ sub: 'quitter', topics: ['*'] })
  await Promise.all(Array.from({ length: 50 }, async (_, i) => {
    await new Promise<void>(resolve => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.write(`GET /events?topic=q${i} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nAccept: text/event-stream\r\n\r\n`)
        // Gone before, while or just after the gateway subscribes.
        const hangUp = (): void => { sock.destroy(); resolve() }
        if (i % 3 === 0) setImmediate(hangUp)
        else setTimeout(hangUp, i % 3 === 1 ? 1 : 20)
      })
      sock.on('error', () => { resolve() })
    })
  }))
  await released(t, gw, 0, 'after 50 early hang-ups')
  await eventually(() => gw.gateway.sessions.size === 0, 5000, 'sessions gone').catch(() => {})
  t.equal(gw.gateway.sessions.size, 0, 'no session left')
})
