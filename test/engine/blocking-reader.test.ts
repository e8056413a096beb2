/**
 * The sharded blocking reader alone: a real redis-server, a recording host,
 * no source and no HTTP. What the hub relies on: entries of every watched
 * key after its position, in order, never twice; a key added while a read
 * blocks is read at once; a removed key is no longer reported; no read
 * while the host holds the gate; a dropped connection loses nothing; and the
 * probe proves the read loop turns.
 */
import t from 'tap'
import { ShardedReader } from '../../src/source/blocking-reader.js'
import type { LiveReaderOptions } from '../../src/source/live-reader.js'
import type { TestContext } from '../helpers/extra.js'
import { startRedis } from '../helpers/redis.js'
import { RecordingHost, appendMany, killConnections, readerOptions, until } from '../helpers/reader-host.js'

t.setTimeout(120000)

const redis = await startRedis()
t.teardown(() => redis.stop())

function setup (t: TestContext, overrides: Partial<LiveReaderOptions> = {}): { reader: ShardedReader, host: RecordingHost, opts: LiveReaderOptions, key: (name: string) => string } {
  const opts = readerOptions(redis, overrides)
  const host = new RecordingHost(redis.client)
  const reader = new ShardedReader(opts, host)
  t.teardown(() => reader.close())
  return { reader, host, opts, key: name => `${opts.keyPrefix}${name}` }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

t.test('every entry after the position, in order, exactly once, over several keys and shards', async t => {
  const { reader, host, key } = setup(t, { shards: 3, count: 7 })
  const keys = ['a', 'b', 'c', 'd', 'e'].map(key)
  const before = await appendMany(redis.client, keys[0] as string, 5, 'old')
  reader.add(keys[0] as string, before[1] as string)
  for (const k of keys.slice(1)) reader.add(k, '0-0')
  const written = new Map<string, string[]>()
  await Promise.all(keys.map(async k => { written.set(k, await appendMany(redis.client, k, 150)) }))
  for (const k of keys) {
    const expected = k === keys[0] ? [...before.slice(2), ...(written.get(k) as string[])] : written.get(k) as string[]
    await until(() => host.of(k).length >= expected.length, `${expected.length} entries of ${k}`)
    await sleep(k === keys[0] ? 200 : 0)
    t.same(host.of(k), expected, `${k}: all after its position, in order, once`)
  }
  t.same(new Map(reader.positions()), new Map(keys.map(k => [k, (written.get(k) as string[]).at(-1)])), 'positions are the last ids read')
  t.same(host.entries.get(keys[1] as string)?.[0]?.fields, ['data', 'e0'], 'fields as XADD took them')
})

t.test('a key added while the shard is blocked is read at once, not after BLOCK', async t => {
  const blockMs = 8000
  const { reader, host, key } = setup(t, { shards: 1, blockMs })
  reader.add(key('busy'), '0-0')
  // Let the shard's XREAD block on the first key.
  await sleep(300)
  const [id] = await appendMany(redis.client, key('late'), 1)
  const started = Date.now()
  reader.add(key('late'), '0-0')
  await until(() => host.of(key('late')).length === 1, 'the new key read', blockMs)
  const took = Date.now() - started
  t.ok(took < 1000, `read ${took} ms after it was added (BLOCK is ${blockMs} ms)`)
  t.same(host.of(key('late')), [id])
  t.ok(host.appends >= 1, 'the wake stream was written to end the blocked read')
})

t.test('a removed key is no longer reported', async t => {
  const { reader, host, key } = setup(t, { shards: 1, blockMs: 1000 })
  reader.add(key('k'), '0-0')
  reader.add(key('other'), '0-0')
  await appendMany(redis.client, key('k'), 3)
  await until(() => host.of(key('k')).length === 3, 'three entries')
  reader.remove(key('k'))
  await appendMany(redis.client, key('k'), 3, 'after')
  const [other] = await appendMany(redis.client, key('other'), 1)
  await until(() => host.of(key('other')).length === 1, 'the other key still read')
  // Past one BLOCK, so the key has left the shard's list.
  await sleep(1200)
  await appendMany(redis.client, key('k'), 2, 'later')
  await sleep(300)
  t.equal(host.of(key('k')).length, 3, 'nothing of the removed key after remove')
  t.same(host.of(key('other')), [other])
  t.same([...reader.positions()].map(([k]) => k), [key('other')], 'only the watched key has a position')
})

t.test('no read while the host holds the gate; everything once it opens', async t => {
  const { reader, host, key } = setup(t, { shards: 1 })
  host.hold()
  const ids = await appendMany(redis.client, key('k'), 4)
  reader.add(key('k'), '0-0')
  await sleep(400)
  t.same(host.of(key('k')), [], 'nothing read while gated')
  host.open()
  await until(() => host.of(key('k')).length === 4, 'the entries after the gate opened')
  t.same(host.of(key('k')), ids)
})

t.test('a dropped reader connection loses nothing and repeats nothing', async t => {
  const { reader, host, opts, key } = setup(t, { shards: 2, blockMs: 1000 })
  const keys = [key('x'), key('y'), key('z')]
  for (const k of keys) reader.add(k, '0-0')
  const first = await Promise.all(keys.map(k => appendMany(redis.client, k, 20, 'a')))
  await until(() => keys.every(k => host.of(k).length === 20), 'the first entries')
  const killed = await killConnections(redis.client, 'sse-gateway:reader')
  t.equal(killed, 2, 'one connection per shard dropped')
  const during = await Promise.all(keys.map(k => appendMany(redis.client, k, 20, 'b')))
  await until(() => host.lost >= 2, 'the drops reported to the host')
  await until(() => keys.every(k => host.of(k).length === 40), 'the entries written while reconnecting')
  await sleep(300)
  keys.forEach((k, i) => { t.same(host.of(k), [...(first[i] as string[]), ...(during[i] as string[])], `${k}: in order, once`) })
  await until(() => opts.health.reason === undefined, 'readiness flowing again')
  t.pass('the failed reads no longer hold readiness once reads answer')
})

t.test('the probe resolves once the read loop has read an entry written now, idle or busy', async t => {
  const { reader, host, key } = setup(t, { shards: 2, blockMs: 5000 })
  const started = Date.now()
  await reader.probe()
  t.ok(Date.now() - started < 2000, 'an idle reader reads its wake streams for the probe')
  reader.add(key('k'), '0-0')
  await appendMany(redis.client, key('k'), 2)
  await until(() => host.of(key('k')).length === 2, 'entries')
  const again = Date.now()
  await reader.probe()
  t.ok(Date.now() - again < 2000, 'a blocked reader wakes for the probe')
})

t.test('a closed reader proves nothing: its probe never resolves', async t => {
  const { reader } = setup(t, { shards: 1 })
  await reader.probe()
  await reader.close()
  // A read still in flight as it closes may yet answer: past that.
  await sleep(300)
  const outcome = await Promise.race([reader.probe().then(() => 'seen'), sleep(1000).then(() => 'unseen')])
  t.equal(outcome, 'unseen')
})
