/**
 * The cluster reader alone: a real cluster of 3 masters and 3 replicas with
 * no server setting (no `notify-keyspace-events`), a recording host, no
 * source and no HTTP. By default each master is fed by client tracking
 * (BCAST): entries of keys on every master in order and never twice, paged
 * by COUNT; no read while gated; a feed connection killed on one master or
 * on all loses nothing (the keys are read again once it is re-armed) and
 * is reported; the probe proves every master's feed. With READER_MODE=notify
 * (notifications turned on at run time) each master is fed by keyspace
 * notifications, and a master whose notifications stopped is named. A node
 * that refuses CLIENT (ACL) is fed by notifications, after a log line that
 * names the missing rule.
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
import { ACL_RULES, aclRule } from '../../src/source/server-check.js'
import pino from 'pino'
import { Writable } from 'node:stream'
import { uniquePrefix } from '../helpers/redis.js'

t.setTimeout(60000)

const cluster = await startCluster()
t.teardown(() => cluster.stop())
const connection = clusterConnection(cluster.seeds.split(',').map(parseClusterNode))

function setup (t: TestContext, overrides: Partial<LiveReaderOptions> = {}): { reader: ClusterReader, host: RecordingHost, key: (name: string) => string } {
  const opts: LiveReaderOptions = {
    connection,
    keyPrefix: overrides.keyPrefix ?? uniquePrefix('creader'),
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
  t.same(reader.nodes().map(([, , feed]) => feed), ['track', 'track', 'track'], 'every master fed by client tracking, with no server setting')
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

t.test('a tracking feed killed on one master (CLIENT KILL): the gap is closed by the resync, nothing lost, the loss reported', async t => {
  const { reader, host, key } = setup(t)
  const keys = Array.from({ length: 12 }, (_, i) => key(`kill${i}`))
  for (const k of keys) reader.add(k, '0-0')
  await reader.probe()
  const victim = masterOf(keys[0] as string)
  const onVictim = keys.filter(k => masterOf(k) === victim)
  t.ok(onVictim.length >= 1 && onVictim.length < keys.length, 'keys on the victim and on other masters')
  const written = new Map<string, string[]>()
  for (const k of keys) written.set(k, await appendMany(cluster.client, k, 2))
  await until(() => keys.every(k => host.of(k).length === 2), 'first entries')
  const admin = new Redis({ host: '127.0.0.1', port: Number(victim.split(':')[1]) })
  t.teardown(() => admin.disconnect())
  t.equal(await killConnections(admin, 'sse-gateway:cluster-feed'), 1, 'the one feed connection of that master killed')
  // Written at once, while the feed reconnects (its first retry waits 200 ms): no invalidation reaches the reader.
  for (const k of keys) written.get(k)?.push(...await appendMany(cluster.client, k, 3))
  await until(() => keys.every(k => host.of(k).length === 5), 'entries written while the feed was down', 20000)
  for (const k of keys) t.same(host.of(k), written.get(k), `${k}: once, in order`)
  t.equal(host.lost, 1, 'the loss was reported once (the source checks the server again)')
  await reader.probe()
  t.same(reader.nodes().map(([, flowing, feed]) => [flowing, feed]), [[true, 'track'], [true, 'track'], [true, 'track']], 'every master fed by tracking again')
  // After the re-arm, writes are announced again.
  for (const k of keys) written.get(k)?.push(...await appendMany(cluster.client, k, 1))
  await until(() => keys.every(k => host.of(k).length === 6), 'entries after the re-arm')
  for (const k of keys) t.same(host.of(k), written.get(k), `${k}: still once, in order`)
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

t.test('READER_MODE=notify: every master fed by keyspace notifications; the probe proves each, and a master whose notifications stopped is named', async t => {
  await cluster.setNotify('Kt')
  t.teardown(() => cluster.setNotify(''))
  const { reader, host, key } = setup(t, { mode: 'notify' })
  const keys = Array.from({ length: 9 }, (_, i) => key(`n${i}`))
  for (const k of keys) reader.add(k, '0-0')
  await reader.probe()
  t.same(reader.nodes().map(([, , feed]) => feed), ['notify', 'notify', 'notify'], 'notification feeds')
  const written = new Map<string, string[]>()
  for (const k of keys) written.set(k, await appendMany(cluster.client, k, 4))
  await until(() => keys.every(k => host.of(k).length === 4), 'entries by notification')
  for (const k of keys) t.same(host.of(k), written.get(k), `${k}: once, in order`)
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

/** A pino logger whose lines the test reads. */
function capture (): { logger: pino.Logger, lines: string[] } {
  const lines: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done() } })
  return { logger: pino({ level: 'info' }, sink), lines }
}

t.test('a cluster that refuses CLIENT (ACL): the log names the missing rule, and each master is fed by its notifications instead', async t => {
  await cluster.setNotify('Kt')
  t.teardown(() => cluster.setNotify(''))
  const prefix = uniquePrefix('cacl')
  // The documented cluster rule without CLIENT: tracking is refused on every node.
  const rule = aclRule('auto', prefix, { publish: true, cluster: true }).split(' ').filter(r => r !== '+client|id' && r !== '+client|tracking').join(' ')
  await cluster.onEveryNode('ACL', 'SETUSER', 'noclient', 'reset', 'on', '>pw', ...rule.split(' '))
  const { logger, lines } = capture()
  const { reader, host, key } = setup(t, {
    keyPrefix: prefix,
    logger,
    connection: clusterConnection(cluster.seeds.split(',').map(parseClusterNode), { username: 'noclient', password: 'pw' }),
  })
  const keys = Array.from({ length: 9 }, (_, i) => key(`a${i}`))
  for (const k of keys) reader.add(k, '0-0')
  await reader.probe()
  t.same(reader.nodes().map(([, flowing, feed]) => [flowing, feed]), [[true, 'notify'], [true, 'notify'], [true, 'notify']], 'every master fed by notifications, and flowing')
  const refusals = lines.filter(l => l.includes('client tracking refused on the cluster node'))
  t.equal(refusals.length, 3, 'said once per master')
  t.ok(refusals.every(l => l.includes(`grant ${ACL_RULES.track()}`) && l.includes(ACL_RULES.clusterNotify(prefix))), `the line names the rule to grant: ${refusals[0] ?? ''}`)
  t.notOk(lines.some(l => l.includes('"pw"') || l.includes('>pw')), 'no password in the log')
  const written = new Map<string, string[]>()
  for (const k of keys) written.set(k, await appendMany(cluster.client, k, 3))
  await until(() => keys.every(k => host.of(k).length === 3), 'entries by notification')
  for (const k of keys) t.same(host.of(k), written.get(k), `${k}: once, in order`)
})

t.test('a feed silent while connected (no tracking for this user, no notifications) is named and opened anew every few probes: CLIENT granted later is taken without a restart, and nothing written meanwhile is lost', async t => {
  const prefix = uniquePrefix('cheal')
  const rule = aclRule('auto', prefix, { publish: true, cluster: true }).split(' ').filter(r => r !== '+client|id' && r !== '+client|tracking').join(' ')
  await cluster.onEveryNode('ACL', 'SETUSER', 'healing', 'reset', 'on', '>pw', ...rule.split(' '))
  const { logger, lines } = capture()
  const { reader, host, key } = setup(t, {
    keyPrefix: prefix,
    logger,
    connection: clusterConnection(cluster.seeds.split(',').map(parseClusterNode), { username: 'healing', password: 'pw' }),
  })
  const keys = Array.from({ length: 9 }, (_, i) => key(`h${i}`))
  for (const k of keys) reader.add(k, '0-0')
  const probeWithin = async (ms: number): Promise<string> => await Promise.race([reader.probe().then(() => 'seen'), new Promise<string>(resolve => setTimeout(() => { resolve('timeout') }, ms))])
  // The first probe may be read by the reads every feed makes once armed: the next one tells.
  await probeWithin(1500)
  t.equal(await probeWithin(1500), 'timeout', 'no feed delivers: tracking refused, and no notifications')
  t.match(reader.trouble(), /^feed-silent /, `the silent masters are named: ${reader.trouble() ?? ''}`)
  t.ok(lines.some(l => l.includes('does not publish keyspace notifications for streams') && l.includes('grant client tracking')), 'the log says what to set or grant')
  const written = new Map<string, string[]>()
  for (const k of keys) written.set(k, await appendMany(cluster.client, k, 2))
  await cluster.onEveryNode('ACL', 'SETUSER', 'healing', '+client|id', '+client|tracking')
  let outcome = 'timeout'
  for (let i = 0; i < 8 && outcome !== 'seen'; i++) outcome = await probeWithin(1000)
  t.equal(outcome, 'seen', 'the probe passes once the feeds are opened anew with the right granted')
  t.same(reader.nodes().map(([, flowing, feed]) => [flowing, feed]), [[true, 'track'], [true, 'track'], [true, 'track']], 'every master fed by tracking now')
  t.equal(reader.trouble(), undefined, 'nothing named any more')
  t.ok(lines.some(l => l.includes('delivered no probe for 3 probes')), 'the reopening was logged')
  await until(() => keys.every(k => host.of(k).length === 2), 'entries written while every feed was silent')
  for (const k of keys) written.get(k)?.push(...await appendMany(cluster.client, k, 2))
  await until(() => keys.every(k => host.of(k).length === 4), 'entries by tracking')
  for (const k of keys) t.same(host.of(k), written.get(k), `${k}: once, in order`)
})

t.test('a cluster that refuses both CLIENT and the keyspace channels (ACL): the log names both rules, once per master', async t => {
  await cluster.setNotify('Kt')
  t.teardown(() => cluster.setNotify(''))
  const prefix = uniquePrefix('cnone')
  const rule = aclRule('auto', prefix, { publish: true, cluster: true }).split(' ').filter(r => !['+client|id', '+client|tracking', `&__keyspace@0__:${prefix}*`].includes(r)).join(' ')
  await cluster.onEveryNode('ACL', 'SETUSER', 'nochannel', 'reset', 'on', '>pw', ...rule.split(' '))
  const { logger, lines } = capture()
  const { reader } = setup(t, {
    keyPrefix: prefix,
    logger,
    connection: clusterConnection(cluster.seeds.split(',').map(parseClusterNode), { username: 'nochannel', password: 'pw' }),
  })
  reader.add(`${prefix}user:1`, '0-0')
  await until(() => lines.filter(l => l.includes('refused PSUBSCRIBE')).length === 3, 'a refusal line per master', 10000)
  const line = lines.find(l => l.includes('refused PSUBSCRIBE')) as string
  t.ok(line.includes(`grant ${ACL_RULES.clusterNotify(prefix)}`) && line.includes(ACL_RULES.track()), `names both rules: ${line}`)
})
