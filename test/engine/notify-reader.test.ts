/**
 * The keyspace-notification reader alone: a real redis-server (with
 * `notify-keyspace-events Kt`), a recording host, no source and no HTTP.
 * Entries in order and never twice; a newly watched key read at once (its
 * entries written before the subscription sent no notification); a removed
 * key no longer reported; no read while gated; a dropped subscriber loses
 * nothing (every key is read again once subscribed anew); and the probe
 * proves that notifications flow, which a server without them cannot pass.
 */
import t from 'tap'
import type { LiveReaderOptions } from '../../src/source/live-reader.js'
import { NotifyReader } from '../../src/source/notify-reader.js'
import type { TestContext } from '../helpers/extra.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { RecordingHost, appendMany, killConnections, readerOptions, until } from '../helpers/reader-host.js'

t.setTimeout(120000)

const redis = await startRedis({ notify: 'Kt' })
t.teardown(() => redis.stop())

function setup (t: TestContext, server: TestRedis = redis, overrides: Partial<LiveReaderOptions> = {}): { reader: NotifyReader, host: RecordingHost, opts: LiveReaderOptions, key: (name: string) => string } {
  const opts = readerOptions(server, overrides)
  const host = new RecordingHost(server.client)
  const reader = new NotifyReader(opts, host)
  t.teardown(() => reader.close())
  return { reader, host, opts, key: name => `${opts.keyPrefix}${name}` }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

t.test('every entry after the position, in order, exactly once, over many keys', async t => {
  const { reader, host, key } = setup(t, redis, { count: 5 })
  const keys = Array.from({ length: 20 }, (_, i) => key(`k${i}`))
  const before = await appendMany(redis.client, keys[0] as string, 6, 'old')
  reader.add(keys[0] as string, before[2] as string)
  for (const k of keys.slice(1)) reader.add(k, '0-0')
  await reader.probe()
  const written = new Map<string, string[]>()
  await Promise.all(keys.map(async k => { written.set(k, await appendMany(redis.client, k, 40)) }))
  for (const k of keys) {
    const expected = k === keys[0] ? [...before.slice(3), ...(written.get(k) as string[])] : written.get(k) as string[]
    await until(() => host.of(k).length >= expected.length, `${expected.length} entries of ${k}`)
  }
  await sleep(200)
  for (const k of keys) {
    const expected = k === keys[0] ? [...before.slice(3), ...(written.get(k) as string[])] : written.get(k) as string[]
    t.same(host.of(k), expected, `${k}: all after its position, in order, once`)
  }
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
  await until(() => host.of(key('k')).length === 4, 'an entry written after, through its notification')
  t.equal(host.of(key('k'))[3], next)
})

t.test('a removed key is no longer reported', async t => {
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
})

t.test('a dropped subscriber loses nothing: every key is read again once subscribed anew', async t => {
  const { reader, host, opts, key } = setup(t)
  const keys = [key('x'), key('y')]
  for (const k of keys) reader.add(k, '0-0')
  await reader.probe()
  const first = await Promise.all(keys.map(k => appendMany(redis.client, k, 10, 'a')))
  await until(() => keys.every(k => host.of(k).length === 10), 'the first entries')
  t.equal(await killConnections(redis.client, 'sse-gateway:notify'), 1, 'the subscriber dropped')
  // Written while no subscription stands: their notifications are lost.
  const during = await Promise.all(keys.map(k => appendMany(redis.client, k, 10, 'b')))
  await until(() => host.lost >= 1, 'the drop reported to the host')
  await until(() => keys.every(k => host.of(k).length === 20), 'the entries written while away')
  const after = await Promise.all(keys.map(k => appendMany(redis.client, k, 5, 'c')))
  await until(() => keys.every(k => host.of(k).length === 25), 'notifications flow again')
  await sleep(200)
  keys.forEach((k, i) => { t.same(host.of(k), [...(first[i] as string[]), ...(during[i] as string[]), ...(after[i] as string[])], `${k}: in order, once`) })
  t.equal(opts.health.reason, undefined, 'readiness was not held')
})

t.test('a dropped read connection loses nothing', async t => {
  const { reader, host, key } = setup(t)
  reader.add(key('k'), '0-0')
  await reader.probe()
  const first = await appendMany(redis.client, key('k'), 5, 'a')
  await until(() => host.of(key('k')).length === 5, 'the first entries')
  t.equal(await killConnections(redis.client, 'sse-gateway:notify-reader'), 1, 'the read connection dropped')
  await until(() => host.lost >= 1, 'the drop reported to the host')
  const later = await appendMany(redis.client, key('k'), 5, 'b')
  await until(() => host.of(key('k')).length === 10, 'entries after the drop')
  t.same(host.of(key('k')), [...first, ...later])
})

t.test('the probe proves notifications flow: it resolves here, never on a server without them', async t => {
  const { reader } = setup(t)
  const started = Date.now()
  await reader.probe()
  t.ok(Date.now() - started < 2000, 'seen through a notification')

  const silentServer = await startRedis()
  t.teardown(() => silentServer.stop())
  const { reader: deaf, host, key } = setup(t, silentServer)
  // The read right after subscribing works without notifications...
  const [id] = await appendMany(silentServer.client, key('k'), 1)
  deaf.add(key('k'), '0-0')
  await until(() => host.of(key('k')).length === 1, 'the read after subscribing')
  t.same(host.of(key('k')), [id])
  // ...but nothing tells the reader of the next entry, and the probe says so.
  const outcome = await Promise.race([deaf.probe().then(() => 'seen'), sleep(1500).then(() => 'unseen')])
  t.equal(outcome, 'unseen', 'no notification, no proof of flow')
})
