/**
 * The cluster reader alone: a real cluster of 3 masters and 3 replicas
 * (`notify-keyspace-events Kt` on every node), a recording host, no source
 * and no HTTP. Entries of keys on every master in order and never twice,
 * paged by COUNT; no read while gated; a dropped feed loses nothing (every
 * key is read again once it subscribes anew) and is reported; the probe
 * proves every master's feed, and a master whose notifications stopped is
 * named.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { ClusterReader } from '../../src/source/cluster-reader.js'
import { clusterConnection, keySlot, parseClusterNode } from '../../src/source/cluster-connection.js'
import type { LiveReaderOptions } from '../../src/source/live-reader.js'
import { startCluster } from '../helpers/cluster.js'
import type { TestContext } from '../helpers/extra.js'
import { RecordingHost, appendMany, killConnections, silent, until } from '../helpers/reader-host.js'
import { LiveHealth } from '../../src/source/live-health.js'
import { uniquePrefix } from '../helpers/redis.js'

t.setTimeout(60000)

const cluster = await startCluster()
t.teardown(() => cluster.stop())
const connection = clusterConnection(cluster.seeds.split(',').map(parseClusterNode))

function setup (t: TestContext, overrides: Partial<LiveReaderOptions> = {}): { reader: ClusterReader, host: RecordingHost, key: (name: string) => string } {
  const opts: LiveReaderOptions = {
    connection,
    keyPrefix: uniquePrefix('creader'),
    instance: Math.random().toString(16).slice(2, 10),
    db: 0,
    shards: 1,
    blockMs: 1000,
    maxKeysPerSecond: 0,
    count: 64,
    logger: silent,
    health: new LiveHealth({ logger: silent }),
    ...overrides,
  }
  const host = new RecordingHost(cluster.client)
  const reader = new ClusterReader(opts, host)
  t.teardown(() => reader.close())
  return { reader, host, key: name => `${opts.keyPrefix}${name}` }
}

const masterOf = (key: string): string => cluster.client.slots[keySlot(key)]?.[0] ?? '?'

t.test('every entry after the position, in order, exactly once, over keys on every master, paged by COUNT', async t => {
  const { reader, host, key } = setup(t, { count: 5 })
  const keys = Array.from({ length: 30 }, (_, i) => key(`k${i}`))
  t.equal(new Set(keys.map(masterOf)).size, 3, 'the keys live on all 3 masters')
  const before = await appendMany(cluster.client, keys[0] as string, 6, 'old')
  reader.add(keys[0] as string, before[2] as string)
  for (const k of keys.slice(1)) reader.add(k, '0-0')
  await reader.probe()
  const written = new Map<string, string[]>()
  await Promise.all(keys.map(async k => { written.set(k, await appendMany(cluster.client, k, 23)) }))
  await until(() => keys.every(k => host.of(k).length >= (k === keys[0] ? 3 : 0) + 23), 'every entry', 20000)
  t.same(host.of(keys[0] as string), [...before.slice(3), ...(written.get(keys[0] as string) ?? [])], 'from just after the position')
  for (const k of keys.slice(1)) t.same(host.of(k), written.get(k), `${k}: in order, once`)
})

t.test('no read while the host holds the gate', async t => {
  const { reader, host, key } = setup(t)
  const k = key('gated')
  reader.add(k, '0-0')
  await reader.probe()
  host.hold()
  await appendMany(cluster.client, k, 3)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(host.of(k), [], 'nothing read while held')
  host.open()
  await until(() => host.of(k).length === 3, 'read once open')
  t.pass('read once the gate opens')
})

t.test('a dropped feed loses nothing: reported, every key read again once it subscribes anew', async t => {
  const { reader, host, key } = setup(t)
  const keys = Array.from({ length: 9 }, (_, i) => key(`drop${i}`))
  for (const k of keys) reader.add(k, '0-0')
  await reader.probe()
  const written = new Map<string, string[]>()
  for (const k of keys) written.set(k, await appendMany(cluster.client, k, 2))
  await until(() => keys.every(k => host.of(k).length === 2), 'first entries')
  let killed = 0
  for (const m of await cluster.masters()) {
    const admin = new Redis({ host: '127.0.0.1', port: Number(m.address.split(':')[1]) })
    killed += await killConnections(admin, 'sse-gateway:cluster-feed')
    admin.disconnect()
  }
  t.ok(killed >= 3, `feeds dropped (${killed})`)
  // Written while the feeds are down: no notification reaches the reader.
  for (const k of keys) written.get(k)?.push(...await appendMany(cluster.client, k, 2))
  await until(() => keys.every(k => host.of(k).length === 4), 'entries written while the feeds were down', 20000)
  for (const k of keys) t.same(host.of(k), written.get(k), `${k}: once, in order`)
  t.ok(host.lost >= 1, 'the lost feed was reported (the source checks the server again)')
})

t.test('the probe proves every master; a master whose notifications stopped is named', async t => {
  const { reader } = setup(t)
  await reader.probe()
  t.equal(reader.trouble(), undefined, 'no trouble while every feed delivers')
  t.equal(reader.nodes().length, 3, 'a probe stream on each master')
  const master = (await cluster.masters())[1]?.address as string
  const admin = new Redis({ host: '127.0.0.1', port: Number(master.split(':')[1]) })
  t.teardown(() => admin.disconnect())
  await admin.config('SET', 'notify-keyspace-events', '')
  const probe = reader.probe()
  const outcome = await Promise.race([probe.then(() => 'seen'), new Promise(resolve => setTimeout(() => { resolve('timeout') }, 1500))])
  t.equal(outcome, 'timeout', 'the probe does not pass')
  t.equal(reader.trouble(), `feed-silent ${master}`, 'the silent master is named')
  t.same(reader.nodes().filter(([, flowing]) => !flowing).map(([node]) => node), [master], 'and only it does not flow')
  await admin.config('SET', 'notify-keyspace-events', 'Kt')
  await reader.probe()
  t.equal(reader.trouble(), undefined, 'well again')
})
