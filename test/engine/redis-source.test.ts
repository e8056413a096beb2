/**
 * The Redis engine's source as the hub sees it, with no HTTP: the reader the
 * server calls for, the epoch (a Redis that lost its data resets exactly
 * the keys whose last read entry is gone, and tells), and a dropped
 * connection, after which live reads wait for the server check and then go
 * on from where they were, losing nothing.
 */
import t from 'tap'
import type { StreamId } from '../../src/core/stream-id.js'
import { RedisSource, type ReaderMode } from '../../src/source/redis-source.js'
import type { TestContext } from '../helpers/extra.js'
import { appendMany, killConnections, silent, until } from '../helpers/reader-host.js'
import { startRedis, uniquePrefix, type TestRedis } from '../helpers/redis.js'

t.setTimeout(120000)

const plain = await startRedis()
const notifying = await startRedis({ notify: 'Kt' })
t.teardown(async () => { await Promise.all([plain.stop(), notifying.stop()]) })

async function setup (t: TestContext, server: TestRedis, mode: ReaderMode = 'block'): Promise<{ source: RedisSource, seen: Map<string, StreamId[]>, resets: string[][], prefix: string }> {
  const prefix = uniquePrefix('src')
  const source = new RedisSource({ url: server.url, keyPrefix: prefix, shards: 2, blockMs: 1000, count: 64, mode, logger: silent, probeIntervalMs: 200 })
  t.teardown(() => source.close())
  const seen = new Map<string, StreamId[]>()
  const resets: string[][] = []
  source.setListener((key, entries) => {
    let list = seen.get(key)
    if (list === undefined) seen.set(key, list = [])
    for (const e of entries) list.push(e.id)
  })
  source.setResetListener(keys => { resets.push([...keys]) })
  await source.ready()
  await source.start()
  return { source, seen, resets, prefix }
}

t.test('auto takes the tracking reader where the server gives CLIENT TRACKING; where refused, notify when the server publishes stream notifications, else blocking reads', async t => {
  const a = await setup(t, plain, 'auto')
  t.equal(a.source.mode, 'track', 'plain Redis, no server setting: client tracking')
  const b = await setup(t, notifying, 'auto')
  t.equal(b.source.mode, 'track', 'tracking wins over notifications too')
  // The same servers, tracking refused by ACL (a managed service's user).
  const refusing = await startRedis({ args: ['--notify-keyspace-events', 'Kt'] })
  t.teardown(() => refusing.stop())
  const plainRefusing = await startRedis()
  t.teardown(() => plainRefusing.stop())
  for (const server of [refusing, plainRefusing]) await server.client.call('ACL', 'SETUSER', 'default', '-client|tracking')
  const c = await setup(t, refusing, 'auto')
  t.equal(c.source.mode, 'notify', 'refused, notifications on: notify')
  const d = await setup(t, plainRefusing, 'auto')
  t.equal(d.source.mode, 'block', 'refused, no notifications: blocking reads')
  for (const [{ source, seen, prefix }, server] of [[a, plain], [b, notifying], [c, refusing], [d, plainRefusing]] as const) {
    source.watch(`${prefix}k`, '0-0')
    const ids = await appendMany(server.client, `${prefix}k`, 3)
    await until(() => (seen.get(`${prefix}k`) ?? []).length === 3, `entries on the ${source.mode ?? '?'} reader`)
    t.same(seen.get(`${prefix}k`), ids, `${source.mode ?? '?'}: in order, once`)
  }
})

t.test('a new epoch resets the keys whose last read entry is gone, and only those', async t => {
  const { source, seen, resets, prefix } = await setup(t, plain)
  const lost = `${prefix}lost`
  const kept = `${prefix}kept`
  source.watch(lost, '0-0')
  source.watch(kept, '0-0')
  await appendMany(plain.client, lost, 3)
  const keptIds = await appendMany(plain.client, kept, 3)
  await until(() => (seen.get(lost) ?? []).length === 3 && (seen.get(kept) ?? []).length === 3, 'the first entries')
  t.equal(resets.length, 0, 'no reset while the dataset stays')
  // As a Redis restarted without persistence would look for one stream:
  // the stream gone, and a new epoch.
  await plain.client.del(lost)
  await plain.client.set(`${prefix}__gateway:epoch`, 'feedface:12345')
  await until(() => resets.length > 0, 'the reset, caught by the probe')
  t.same(resets, [[lost]], 'only the key whose last entry is gone is reset')
  t.equal(source.epochMs, 12345, 'the new epoch\'s time is the engine\'s epoch')
  const fresh = await appendMany(plain.client, lost, 2, 'new')
  const more = await appendMany(plain.client, kept, 1, 'new')
  await until(() => (seen.get(lost) ?? []).length === 5 && (seen.get(kept) ?? []).length === 4, 'entries after the reset')
  t.same(seen.get(lost)?.slice(3), fresh, 'the lost key is read again from 0-0')
  t.same(seen.get(kept), [...keptIds, ...more], 'the kept key reads on, nothing repeated')
})

t.test('every connection dropped: live reads wait for the server check, then lose nothing', async t => {
  const { source, seen, prefix } = await setup(t, plain)
  const key = `${prefix}k`
  source.watch(key, '0-0')
  const first = await appendMany(plain.client, key, 5, 'a')
  await until(() => (seen.get(key) ?? []).length === 5, 'the first entries')
  const killed = await killConnections(plain.client, 'sse-gateway:commands') + await killConnections(plain.client, 'sse-gateway:reader')
  t.ok(killed >= 3, `the command connection and both shards dropped (${killed})`)
  const during = await appendMany(plain.client, key, 5, 'b')
  await until(() => (seen.get(key) ?? []).length === 10, 'the entries written meanwhile')
  await until(() => source.state === 'ready' && source.liveReason === undefined, 'ready and flowing again')
  t.same(seen.get(key), [...first, ...during], 'in order, once')
})

t.test('track mode, every connection dropped: tracking turned on again with the new ids, nothing lost', async t => {
  const { source, seen, prefix } = await setup(t, plain, 'track')
  t.equal(source.mode, 'track')
  const key = `${prefix}k`
  source.watch(key, '0-0')
  const first = await appendMany(plain.client, key, 5, 'a')
  await until(() => (seen.get(key) ?? []).length === 5, 'the first entries')
  const killed = await killConnections(plain.client, 'sse-gateway:commands') + await killConnections(plain.client, 'sse-gateway:track') + await killConnections(plain.client, 'sse-gateway:track-reader')
  t.equal(killed, 3, 'the command connection, the subscriber and the tracked connection dropped')
  const during = await appendMany(plain.client, key, 5, 'b')
  await until(() => (seen.get(key) ?? []).length === 10, 'the entries written meanwhile')
  await until(() => source.state === 'ready' && source.liveReason === undefined, 'ready and flowing again')
  const after = await appendMany(plain.client, key, 5, 'c')
  await until(() => (seen.get(key) ?? []).length === 15, 'entries after, through invalidations')
  t.same(seen.get(key), [...first, ...during, ...after], 'in order, once')
  t.equal(source.mode, 'track', 'still tracking')
})
