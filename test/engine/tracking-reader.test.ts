/**
 * The client-tracking reader alone: a real redis-server with no server
 * setting at all, a recording host, no source and no HTTP. Entries in order
 * and never twice; a newly watched key read at once; a removed key no longer
 * reported (its leftover invalidation ignored); no read while gated; either
 * connection dropped (CLIENT KILL) loses nothing (tracking on again with the
 * subscriber's new id, every key read again); an invalidation naming no key
 * (FLUSHALL) or keys evicted from a full tracking table make every key read
 * again; and the probe proves that invalidations flow, which a reader whose
 * subscription is refused cannot pass.
 */
import { Redis, type RedisOptions } from 'ioredis'
import t from 'tap'
import type { LiveReaderOptions } from '../../src/source/live-reader.js'
import { BASE_OPTIONS } from '../../src/source/redis-connection.js'
import { TrackingReader } from '../../src/source/tracking-reader.js'
import type { TestContext } from '../helpers/extra.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { RecordingHost, appendMany, killConnections, readerOptions, until } from '../helpers/reader-host.js'

t.setTimeout(120000)

// No notify-keyspace-events, nothing configured: what the reader needs.
const redis = await startRedis()
t.teardown(() => redis.stop())

function setup (t: TestContext, server: TestRedis = redis, overrides: Partial<LiveReaderOptions> = {}): { reader: TrackingReader, host: RecordingHost, opts: LiveReaderOptions, key: (name: string) => string } {
  const opts = readerOptions(server, overrides)
  const host = new RecordingHost(server.client)
  const reader = new TrackingReader(opts, host)
  t.teardown(() => reader.close())
  return { reader, host, opts, key: name => `${opts.keyPrefix}${name}` }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function probeWithin (reader: TrackingReader, ms: number): Promise<'seen' | 'unseen'> {
  return await Promise.race([reader.probe().then(() => 'seen' as const), sleep(ms).then(() => 'unseen' as const)])
}

async function trackedKeys (server: TestRedis): Promise<number> {
  const info = String(await server.client.info('stats'))
  return Number(/^tracking_total_keys:(\d+)/m.exec(info)?.[1])
}

t.test('every entry after the position, in order, exactly once, over many keys', async t => {
  const { reader, host, key } = setup(t, redis, { count: 5 })
  const keys = Array.from({ length: 20 }, (_, i) => key(`k${i}`))
  const before = await appendMany(redis.client, keys[0] as string, 6, 'old')
  reader.add(keys[0] as string, before[2] as string)
  for (const k of keys.slice(1)) reader.add(k, '0-0')
  await reader.probe()
  const written = new Map<string, string[]>()
  // Several rounds: each read must arm its key again for the next write.
  for (let round = 0; round < 4; round++) {
    await Promise.all(keys.map(async k => { written.set(k, [...(written.get(k) ?? []), ...await appendMany(redis.client, k, 10, `r${round}-`)]) }))
    await sleep(20)
  }
  const expected = (k: string): string[] => k === keys[0] ? [...before.slice(3), ...(written.get(k) as string[])] : written.get(k) as string[]
  for (const k of keys) await until(() => host.of(k).length >= expected(k).length, `${expected(k).length} entries of ${k}`)
  await sleep(200)
  for (const k of keys) t.same(host.of(k), expected(k), `${k}: all after its position, in order, once`)
  t.same(new Map(reader.positions()), new Map(keys.map(k => [k, (written.get(k) as string[]).at(-1)])), 'positions are the last ids read; the probe stream is not among them')
})

t.test('a newly watched key is read at once, entries written before it was watched included', async t => {
  const { reader, host, key } = setup(t)
  await reader.probe()
  const ids = await appendMany(redis.client, key('k'), 3)
  const started = Date.now()
  reader.add(key('k'), '0-0')
  await until(() => host.of(key('k')).length === 3, 'the entries written before add')
  t.ok(Date.now() - started < 1000, `read ${Date.now() - started} ms after add`)
  t.same(host.of(key('k')), ids)
  const [next] = await appendMany(redis.client, key('k'), 1, 'n')
  await until(() => host.of(key('k')).length === 4, 'an entry written after, through its invalidation')
  t.equal(host.of(key('k'))[3], next)
  // A key that does not exist yet is tracked by its first read too.
  reader.add(key('later'), '0-0')
  await sleep(100)
  const [first] = await appendMany(redis.client, key('later'), 1)
  await until(() => host.of(key('later')).length === 1, 'the first entry of a key created after add')
  t.equal(host.of(key('later'))[0], first)
})

t.test('a removed key is no longer reported; its leftover invalidation is ignored', async t => {
  const { reader, host, key } = setup(t)
  reader.add(key('k'), '0-0')
  reader.add(key('other'), '0-0')
  await reader.probe()
  await appendMany(redis.client, key('k'), 2)
  await until(() => host.of(key('k')).length === 2, 'two entries')
  reader.remove(key('k'))
  await appendMany(redis.client, key('k'), 3, 'after')
  const [other] = await appendMany(redis.client, key('other'), 1)
  await until(() => host.of(key('other')).length === 1, 'the other key still read')
  await sleep(300)
  t.equal(host.of(key('k')).length, 2, 'nothing of the removed key after remove')
  t.same(host.of(key('other')), [other])
  t.same([...reader.positions()].map(([k]) => k), [key('other')])
})

t.test('no read while the host holds the gate; everything once it opens', async t => {
  const { reader, host, key } = setup(t)
  await reader.probe()
  host.hold()
  reader.add(key('k'), '0-0')
  const ids = await appendMany(redis.client, key('k'), 4)
  await sleep(400)
  t.same(host.of(key('k')), [], 'nothing read while gated')
  host.open()
  await until(() => host.of(key('k')).length === 4, 'the entries after the gate opened')
  t.same(host.of(key('k')), ids)
  const more = await appendMany(redis.client, key('k'), 2, 'm')
  await until(() => host.of(key('k')).length === 6, 'the key is armed by that read')
  t.same(host.of(key('k')), [...ids, ...more])
})

for (const [name, connection] of [['subscriber', 'sse-gateway:track'], ['tracked read connection', 'sse-gateway:track-reader']] as const) {
  t.test(`a dropped ${name} loses nothing: tracking on again, every key read again`, async t => {
    const { reader, host, opts, key } = setup(t)
    const keys = [key('x'), key('y')]
    for (const k of keys) reader.add(k, '0-0')
    await reader.probe()
    const first = await Promise.all(keys.map(k => appendMany(redis.client, k, 10, 'a')))
    await until(() => keys.every(k => host.of(k).length === 10), 'the first entries')
    t.equal(await killConnections(redis.client, connection), 1, `the ${name} dropped`)
    // Written while tracking is broken: their invalidations are lost.
    const during = await Promise.all(keys.map(k => appendMany(redis.client, k, 10, 'b')))
    await until(() => host.lost >= 1, 'the drop reported to the host')
    await until(() => keys.every(k => host.of(k).length === 20), 'the entries written while away')
    // Twice: the first write after the re-read is seen only if the re-read armed the key.
    const after1 = await Promise.all(keys.map(k => appendMany(redis.client, k, 5, 'c')))
    await until(() => keys.every(k => host.of(k).length === 25), 'invalidations flow again')
    const after2 = await Promise.all(keys.map(k => appendMany(redis.client, k, 5, 'd')))
    await until(() => keys.every(k => host.of(k).length === 30), 'and keep flowing')
    await sleep(200)
    keys.forEach((k, i) => { t.same(host.of(k), [...(first[i] as string[]), ...(during[i] as string[]), ...(after1[i] as string[]), ...(after2[i] as string[])], `${k}: in order, once`) })
    await reader.probe()
    t.equal(opts.health.reason, undefined, 'readiness was not held')
  })
}

t.test('an invalidation naming no key (FLUSHALL) makes every key read again', async t => {
  const own = await startRedis()
  t.teardown(() => own.stop())
  const { reader, host, key } = setup(t, own)
  const keys = [key('a'), key('b'), key('c')]
  for (const k of keys) reader.add(k, '0-0')
  await reader.probe()
  await Promise.all(keys.map(k => appendMany(own.client, k, 2)))
  await until(() => keys.every(k => host.of(k).length === 2), 'the first entries')
  await own.client.flushall()
  // Recreated after the flush: the source's epoch moves positions back to
  // 0-0; the reader alone must at least read every key again, which re-arms it.
  for (const k of keys) reader.add(k, '0-0')
  const fresh = await Promise.all(keys.map(k => appendMany(own.client, k, 3, 'f')))
  await until(() => keys.every(k => host.of(k).length === 5), 'the entries after the flush')
  const later = await Promise.all(keys.map(k => appendMany(own.client, k, 1, 'l')))
  await until(() => keys.every(k => host.of(k).length === 6), 'the keys are armed again')
  keys.forEach((k, i) => { t.same(host.of(k).slice(2), [...(fresh[i] as string[]), ...(later[i] as string[])], `${k}: in order, once`) })
  t.equal(await probeWithin(reader, 2000), 'seen', 'the probe stream, never added again, is read again too')
})

t.test('a null invalidation alone (the table flushed, no add) re-reads every key', async t => {
  const own = await startRedis()
  t.teardown(() => own.stop())
  const { reader, host, key } = setup(t, own)
  reader.add(key('a'), '0-0')
  await reader.probe()
  // FLUSHDB on an empty other database: no key of ours is touched, yet
  // Redis sends the null invalidation, after which nothing of ours is
  // tracked any more: only a read of every key arms them again.
  await own.client.select(1)
  await own.client.flushdb()
  await own.client.select(0)
  await sleep(200)
  const ids = await appendMany(own.client, key('a'), 2)
  await until(() => host.of(key('a')).length === 2, 'entries after the flush, through invalidations', 3000)
  t.same(host.of(key('a')), ids)
  t.equal(await probeWithin(reader, 2000), 'seen')
})

t.test('a full tracking table (tracking-table-max-keys 1) evicts keys, which are then read again: nothing lost', async t => {
  const own = await startRedis({ args: ['--tracking-table-max-keys', '1'] })
  t.teardown(() => own.stop())
  const { reader, host, key } = setup(t, own)
  const keys = Array.from({ length: 5 }, (_, i) => key(`k${i}`))
  for (const k of keys) reader.add(k, '0-0')
  await reader.probe()
  const written = new Map<string, string[]>()
  for (let round = 0; round < 3; round++) {
    await Promise.all(keys.map(async k => { written.set(k, [...(written.get(k) ?? []), ...await appendMany(own.client, k, 4, `r${round}-`)]) }))
    await sleep(50)
  }
  for (const k of keys) await until(() => host.of(k).length >= 12, `12 entries of ${k}`)
  await sleep(200)
  for (const k of keys) t.same(host.of(k), written.get(k), `${k}: in order, once`)
  t.ok(await trackedKeys(own) <= 2, 'the table stays within its bound')
})

t.test('the probe proves invalidations flow: it resolves here, never when the subscription is refused', async t => {
  const { reader } = setup(t)
  const started = Date.now()
  await reader.probe()
  t.ok(Date.now() - started < 2000, 'seen through an invalidation')

  // A user who may read and write streams and turn tracking on, but may not
  // subscribe to the invalidation channel: no invalidation arrives.
  const acl = await startRedis()
  t.teardown(() => acl.stop())
  await acl.client.call('ACL', 'SETUSER', 'nosub', 'on', '>pw', 'resetchannels', '~*', '+@read', '+@stream', '+multi', '+exec', '+pexpire', '+client|id', '+client|tracking', '+client|setname', '+ping', '+info', '+select')
  const connection = { connect: (o: RedisOptions) => new Redis({ ...BASE_OPTIONS, ...o, path: acl.socket, username: 'nosub', password: 'pw' }) }
  const { reader: deaf } = setup(t, acl, { connection })
  t.equal(await probeWithin(deaf, 1500), 'unseen', 'no invalidation, no proof of flow')
})
