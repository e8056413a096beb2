/**
 * The gateway on a Redis Cluster of 3 masters and 3 replicas
 * (REDIS_CLUSTER_NODES) with no server setting (no notify-keyspace-events:
 * each master is fed by client tracking): clients over user channels and
 * topics spread over every master get every event once, in order; a feed
 * connection killed on one master loses nothing; through a slot moved
 * mid-stream and a master added, nothing is lost or repeated; an ACL user
 * with exactly the documented cluster rule reads; with READER_MODE=notify
 * `/readyz` names a master whose notifications went silent; and through a master killed and
 * its replica promoted, clients get every entry the new master holds and
 * `gateway.gap` for any they had that it does not: never silence. Producers
 * write plain keys, no hash tags; the producer helper, the CLI and `POST
 * /publish` write to the cluster.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { publish } from '../../src/producer.js'
import { keySlot } from '../../src/source/cluster-connection.js'
import { aclRule } from '../../src/source/server-check.js'
import { bearer, post } from '../helpers/publish.js'
import { startCluster } from '../helpers/cluster.js'
import { eventually, openMany, scrapeMetric } from '../helpers/extra.js'
import { startGateway } from '../helpers/gateway.js'
import { uniquePrefix } from '../helpers/redis.js'
import { getJson, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(120000)

const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'dist', 'src', 'cli.js')

const cluster = await startCluster()
const prefix = uniquePrefix('cl')
const gw = await startGateway({ REDIS_CLUSTER_NODES: cluster.seeds, KEY_PREFIX: prefix, READER_PROBE_INTERVAL_MS: '500' }).catch(async err => {
  await cluster.stop()
  throw err
})
// The gateway first, while its Redis still answers; then every redis-server.
t.teardown(async () => {
  await gw.close()
  await cluster.stop()
})

const userKey = (n: number): string => `${prefix}user:u${n}`
const topicKey = (name: string): string => `${prefix}topic:${name}`
const masterOf = (key: string): string => cluster.client.slots[keySlot(key)]?.[0] ?? '?'
const data = (s: RawStream): string[] => s.events.filter(e => !e.event.startsWith('gateway.')).map(e => e.data)
const open = async (n: number, url: (i: number) => string, sub: (i: number) => string): Promise<RawStream[]> =>
  await openMany(n, 200, i => ({ url: url(i), headers: { authorization: `Bearer ${hsToken({ sub: sub(i), topics: '*' })}` } }))

/** Appends and remembers what each key was sent (acknowledged), in order. */
class Ledger {
  readonly sent = new Map<string, string[]>()
  /** `tolerant`: a write refused during a failover is not counted, and not thrown. */
  async write (keys: string[], label: (key: string) => string, tolerant = false): Promise<void> {
    // A cluster pipeline holds one slot: each XADD on its own.
    await Promise.all(keys.map(async k => {
      const d = label(k)
      try {
        await cluster.client.xadd(k, '*', 'data', d)
      } catch (err) {
        if (tolerant) return
        throw err
      }
      let list = this.sent.get(k)
      if (list === undefined) this.sent.set(k, list = [])
      list.push(d)
    }))
  }
}

t.test('2,000 clients over user channels and topics spread over every master get every event once, in order', async t => {
  const USERS = 1800
  const TOPICS = ['news', 'orders', 'prices', 'sport', 'weather', 'alerts', 'jobs', 'chat']
  const masters = (await cluster.masters()).map(m => m.address)
  t.equal(masters.length, 3, '3 masters')
  const keys = [...Array.from({ length: USERS }, (_, n) => userKey(n)), ...TOPICS.map(topicKey)]
  t.same([...new Set(keys.map(masterOf))].sort(), masters.sort(), 'the channels live on every master, with no hash tags')

  const users = await open(USERS, () => `${gw.url}/events`, i => `u${i}`)
  const topics = await open(200, i => `${gw.url}/events?topic=${TOPICS[i % TOPICS.length] as string}`, i => `reader${i}`)
  t.teardown(() => { for (const s of [...users, ...topics]) s.close() })
  t.equal([...users, ...topics].filter(s => s.status === 200).length, 2000, '2,000 streams open')

  const ledger = new Ledger()
  for (let round = 0; round < 3; round++) await ledger.write(keys.slice(0, USERS), k => `${k} #${round}`)
  for (let round = 0; round < 5; round++) await ledger.write(keys.slice(USERS), k => `${k} #${round}`)
  const want = (s: RawStream, key: string): number => ledger.sent.get(key)?.length ?? 0
  await Promise.all(users.map(async (s, n) => { await s.until(x => data(x).length >= want(x, userKey(n)) || x.ended, 60000, `user ${n}`) }))
  await Promise.all(topics.map(async (s, i) => { await s.until(x => data(x).length >= want(x, topicKey(TOPICS[i % TOPICS.length] as string)) || x.ended, 60000, `topic reader ${i}`) }))
  await sleep(300)
  let wrong = 0
  let first = ''
  const check = (s: RawStream, key: string): void => {
    const got = data(s)
    const expected = ledger.sent.get(key) ?? []
    if (JSON.stringify(got) !== JSON.stringify(expected)) {
      wrong++
      if (first === '') first = `${key}: got ${JSON.stringify(got)}, want ${JSON.stringify(expected)}`
    }
    if (s.events.some(e => e.event === 'gateway.gap' || e.event === 'gateway.unavailable')) wrong++
  }
  users.forEach((s, n) => { check(s, userKey(n)) })
  topics.forEach((s, i) => { check(s, topicKey(TOPICS[i % TOPICS.length] as string)) })
  t.equal(wrong, 0, `every client got exactly its events, once, in order ${first}`)
  const ready = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(ready.body.feeds, `track ${masters.sort().join(',')}`, `/readyz: every master fed by client tracking (${JSON.stringify(ready.body)})`)
  for (const m of masters) t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_redis_master_flowing', { node: m, feed: 'track' }), 1, `${m} flows, by tracking`)
})

t.test('a feed connection killed on one master (CLIENT KILL) mid-stream: the resync closes the gap, nothing lost or repeated', async t => {
  const victim = (await cluster.masters())[0]?.address as string
  const keys: string[] = []
  for (let n = 3000; keys.length < 8; n++) if (masterOf(userKey(n)) === victim) keys.push(userKey(n))
  keys.push(topicKey('killed'))
  const streams = await Promise.all(keys.map(async (k, i) => (await open(1, () => k.includes(':topic:') ? `${gw.url}/events?topic=killed` : `${gw.url}/events`, () => k.includes(':topic:') ? 'killed-reader' : k.slice(`${prefix}user:`.length)))[0] as RawStream))
  t.teardown(() => { for (const s of streams) s.close() })
  const ledger = new Ledger()
  const writer = streamInto(keys, ledger)
  t.teardown(() => writer.stop())
  await sleep(300)
  const { Redis } = await import('ioredis')
  const admin = new Redis({ host: '127.0.0.1', port: Number(victim.split(':')[1]) })
  admin.on('error', () => {})
  t.teardown(() => admin.disconnect())
  const list = String(await admin.client('LIST'))
  const feeds = list.split('\n').filter(l => l.includes(' name=sse-gateway:cluster-feed ')).map(l => /\bid=(\d+)/.exec(l)?.[1] as string)
  t.equal(feeds.length, 1, 'one feed connection on that master')
  t.match(list.split('\n').find(l => l.includes(' name=sse-gateway:cluster-feed ')), /flags=PtB/, 'a pub/sub connection with BCAST tracking')
  await admin.client('KILL', 'ID', feeds[0] as string)
  await sleep(800)
  await writer.stop()
  await eventually(() => streams.every((s, i) => data(s).length >= (ledger.sent.get(keys[i] as string)?.length ?? 0)), 20000, 'every entry delivered')
  await sleep(300)
  streams.forEach((s, i) => {
    const key = keys[i] as string
    t.same(data(s), ledger.sent.get(key), `${key}: every entry once, in order (${ledger.sent.get(key)?.length ?? 0})`)
    t.notOk(s.events.some(e => e.event === 'gateway.gap'), `${key}: no gap`)
  })
})

t.test('the producer helper, the CLI and POST /publish write to the cluster, and clients get their events', async t => {
  const topic = 'made'
  // A user whose channel lives on another master than the topic's.
  let sub = 'writer-0'
  for (let i = 1; masterOf(`${prefix}user:${sub}`) === masterOf(topicKey(topic)); i++) sub = `writer-${i}`
  const [onTopic, onUser] = [
    (await open(1, () => `${gw.url}/events?topic=${topic}`, () => 'reader-made'))[0] as RawStream,
    (await open(1, () => `${gw.url}/events`, () => sub))[0] as RawStream,
  ]
  t.teardown(() => { onTopic.close(); onUser.close() })
  // The helper, given an ioredis Cluster: its MULTI touches one key.
  const id1 = await publish(cluster.client, { prefix, channel: `topic:${topic}`, data: 'from the helper' })
  const id2 = await publish(cluster.client, { prefix, channel: `user:${sub}`, event: 'notice', data: 'to the user' })
  t.ok(await cluster.client.ttl(`${prefix}user:${sub}`) > 0, 'user channel: EXPIRE in the same MULTI')
  // The command line, with --cluster.
  const cliRun = spawnSync(process.execPath, [CLI, 'publish', '--cluster', cluster.seeds, '--prefix', prefix, '--channel', `topic:${topic}`, '--data', 'from the cli'], { encoding: 'utf8', timeout: 30000, env: { PATH: process.env.PATH ?? '' } })
  t.equal(cliRun.status, 0, `cli exit 0 (${cliRun.stderr})`)
  t.match(cliRun.stdout, /^\d+-\d+\n$/, 'the cli prints the entry id')
  // POST /publish through the gateway on the cluster.
  const posted = await post(`${gw.url}/publish`, { channel: `user:${sub}`, data: 'posted' }, bearer(hsToken({ publish: ['topic:*', 'user:*'] })))
  t.equal(posted.status, 200, `POST /publish: 200 (${JSON.stringify(posted.body)})`)
  await onTopic.until(s => data(s).length >= 2, 20000, 'topic events')
  await onUser.until(s => data(s).length >= 2, 20000, 'user events')
  t.same(data(onTopic), ['from the helper', 'from the cli'])
  t.same(data(onUser), ['to the user', 'posted'])
  t.equal((await cluster.client.xrange(topicKey(topic), id1, id1)).length, 1, 'the helper answers the entry id')
  t.equal(onUser.events.find(e => e.data === 'to the user')?.event, 'notice')
  t.ok(id2.length > 0)
})

/** Writes to `keys` every few ms until stopped; clients on them must see all of it once. */
function streamInto (keys: string[], ledger: Ledger, tolerant = false): { stop: () => Promise<void> } {
  const state = { running: true }
  let n = 0
  const loop = (async () => {
    while (state.running) {
      await ledger.write(keys, k => `${k} ${n}`, tolerant)
      n++
      await sleep(10)
    }
  })()
  return { async stop () { state.running = false; await loop } }
}

t.test('a slot moved mid-stream, and a master added: no loss, no duplicate', async t => {
  const keys = [...Array.from({ length: 20 }, (_, n) => userKey(5000 + n)), topicKey('moving')]
  const streams = await Promise.all(keys.map(async (k, i) => (await open(1, () => k.includes(':topic:') ? `${gw.url}/events?topic=moving` : `${gw.url}/events`, () => `u${5000 + i}`))[0] as RawStream))
  t.teardown(() => { for (const s of streams) s.close() })
  const ledger = new Ledger()
  const writer = streamInto(keys, ledger)
  t.teardown(() => writer.stop())
  await sleep(300)
  // A slot moved to another existing master.
  const topic = topicKey('moving')
  const from = masterOf(topic)
  const to = (await cluster.masters()).map(m => m.address).find(a => a !== from) as string
  await cluster.moveSlotOf(topic, to)
  await sleep(300)
  // A master added, and the slots of half the user keys moved to it.
  const added = await cluster.addMaster()
  for (const k of keys.slice(0, 10)) await cluster.moveSlotOf(k, added)
  await sleep(1500)
  await writer.stop()
  t.equal(await cluster.ownerOf(topic), to, 'the topic moved')
  t.equal(await cluster.ownerOf(keys[0] as string), added, 'user keys on the new master')
  await eventually(() => streams.every((s, i) => data(s).length >= (ledger.sent.get(keys[i] as string)?.length ?? 0)), 20000, 'every entry delivered')
  await sleep(300)
  streams.forEach((s, i) => {
    const key = keys[i] as string
    t.same(data(s), ledger.sent.get(key), `${key}: every entry once, in order (${ledger.sent.get(key)?.length ?? 0})`)
    t.notOk(s.events.some(e => e.event.startsWith('gateway.')), `${key}: no gap, no unavailable`)
  })
})

t.test('an ACL user with exactly the documented cluster rule: ready, fed by tracking, events flow, nothing refused', async t => {
  const aclPrefix = uniquePrefix('clacl')
  await cluster.onEveryNode('ACL', 'SETUSER', 'gateway', 'reset', 'on', '>acl-secret', ...aclRule('auto', aclPrefix, { publish: true, cluster: true }).split(' '))
  const acl = await startGateway({ REDIS_CLUSTER_NODES: cluster.seeds, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: 'acl-secret', KEY_PREFIX: aclPrefix, READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => acl.close())
  await eventually(async () => (await getJson(`${acl.internalUrl}/readyz`)).status === 200, 20000, 'ready')
  // The feeds are listed once the slot map is known: readiness may come first.
  await eventually(async () => /^track [^;]+,[^;]+,[^;]+$/.test((await getJson(`${acl.internalUrl}/readyz`)).body.feeds), 10000, 'every master fed by tracking')
  t.pass('every master fed by tracking')
  const topic = `${aclPrefix}topic:acl`
  const s = (await openMany(1, 1, () => ({ url: `${acl.url}/events?topic=acl`, headers: { authorization: `Bearer ${hsToken({ sub: 'acl-user', topics: '*' })}` } })))[0] as RawStream
  t.teardown(() => { s.close() })
  await cluster.client.xadd(topic, '*', 'data', 'one')
  const posted = await post(`${acl.url}/publish`, { channel: 'topic:acl', data: 'two' }, bearer(hsToken({ publish: ['topic:acl'] })))
  t.equal(posted.status, 200, 'POST /publish writes with the documented rights')
  await s.until(x => data(x).length >= 2, 20000, 'events')
  t.same(data(s), ['one', 'two'])
  await sleep(1000)
  t.same(acl.logs.filter(l => /NOPERM|"grant"/.test(l)), [], 'no command was refused')
  t.notOk(acl.logs.some(l => l.includes('acl-secret')), 'the password is in no log line')
})

t.test('READER_MODE=block on a cluster: said once, read as auto (a tracking feed per master), events flow', async t => {
  const blockPrefix = uniquePrefix('clb')
  const blocky = await startGateway({ REDIS_CLUSTER_NODES: cluster.seeds, KEY_PREFIX: blockPrefix, READER_MODE: 'block', READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => blocky.close())
  await eventually(async () => /^track [^;]+,[^;]+,[^;]+$/.test((await getJson(`${blocky.internalUrl}/readyz`)).body.feeds), 20000, 'every master fed by tracking')
  t.equal(blocky.logs.filter(l => l.includes('READER_MODE=block has no Redis Cluster reader')).length, 1, 'the log says block reads as auto here, once')
  const s = (await openMany(1, 1, () => ({ url: `${blocky.url}/events?topic=blocky`, headers: { authorization: `Bearer ${hsToken({ sub: 'b', topics: '*' })}` } })))[0] as RawStream
  t.teardown(() => { s.close() })
  await cluster.client.xadd(`${blockPrefix}topic:blocky`, '*', 'data', 'one')
  await s.until(x => data(x).length >= 1, 20000, 'the event')
  t.same(data(s), ['one'])
})

t.test('READER_MODE=notify: /readyz and sse_gateway_redis_master_flowing name the master whose notifications went silent, and are well again once it feeds', async t => {
  await cluster.setNotify('Kt')
  t.teardown(() => cluster.setNotify(''))
  const gw = await startGateway({ REDIS_CLUSTER_NODES: cluster.seeds, KEY_PREFIX: uniquePrefix('cln'), READER_MODE: 'notify', READER_PROBE_INTERVAL_MS: '500' })
  t.teardown(() => gw.close())
  const readyz = async (): Promise<{ status: number, body: any }> => await getJson(`${gw.internalUrl}/readyz`)
  await eventually(async () => (await readyz()).status === 200, 20000, 'ready')
  await eventually(async () => /^notify [^;]+,[^;]+,[^;]+$/.test((await readyz()).body.feeds), 10000, 'every master fed by notifications')
  t.pass('every master fed by notifications')
  const master = (await cluster.masters())[0]?.address as string
  const node = cluster.nodes.find(n => n.address === master)
  const { Redis } = await import('ioredis')
  const admin = new Redis({ host: '127.0.0.1', port: node?.port as number })
  admin.on('error', () => {})
  t.teardown(() => admin.disconnect())
  await admin.config('SET', 'notify-keyspace-events', '')
  let body: any
  await eventually(async () => {
    const r = await readyz()
    body = r.body
    return r.status === 503 && JSON.stringify(r.body).includes(`feed-silent ${master}`)
  }, 20000, `readyz to name ${master}`)
  t.match(JSON.stringify(body), `feed-silent ${master}`, `not ready, naming ${master}: ${JSON.stringify(body)}`)
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_redis_master_flowing', { node: master, feed: 'notify' }), 0, `the metric says ${master} does not flow`)
  const others = (await cluster.masters()).map(m => m.address).filter(a => a !== master)
  for (const other of others) t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_redis_master_flowing', { node: other, feed: 'notify' }), 1, `${other} flows`)
  await admin.config('SET', 'notify-keyspace-events', 'Kt')
  await eventually(async () => (await readyz()).status === 200, 20000, 'ready again')
  t.pass('ready again once the feed delivers')
  await eventually(async () => await scrapeMetric(gw.internalUrl, 'sse_gateway_redis_master_flowing', { node: master, feed: 'notify' }) === 1, 10000, 'the metric back to 1')
})

t.test('a master killed mid-stream, its replica promoted: every entry the new master holds, gateway.gap for any it does not, never silence', async t => {
  const victim = (await cluster.masters()).sort((a, b) => b.slots - a.slots)[0]?.address as string
  const keys: string[] = []
  for (let n = 6000; keys.length < 12; n++) if (masterOf(userKey(n)) === victim) keys.push(userKey(n))
  const subs = keys.map(k => k.slice(`${prefix}user:`.length))
  const streams = await Promise.all(subs.map(async sub => (await open(1, () => `${gw.url}/events`, () => sub))[0] as RawStream))
  t.teardown(() => { for (const s of streams) s.close() })
  const ledger = new Ledger()
  const writer = streamInto(keys, ledger, true)
  t.teardown(() => writer.stop())
  await sleep(500)
  await cluster.killMaster(victim)
  await sleep(1000)
  await writer.stop()
  // After the failover: one more entry each, which every client must get (never silence).
  await ledger.write(keys, k => `${k} after`)
  await eventually(() => streams.every(s => data(s).some(d => d.endsWith(' after'))), 30000, 'the entry written after the failover')
  for (const [i, s] of streams.entries()) {
    const key = keys[i] as string
    const held = (await cluster.client.xrange(key, '-', '+')).map(e => e[1][1] as string)
    const got = data(s)
    const missing = held.filter(d => !got.includes(d))
    t.same(missing, [], `${key}: every entry the new master holds was delivered (${held.length})`)
    const lost = got.filter(d => !held.includes(d))
    if (lost.length > 0) t.ok(s.events.some(e => e.event === 'gateway.gap'), `${key}: ${lost.length} entries the new master lacks: told with gateway.gap`)
    // After a reset the stream is read again from its start: a repeat only follows a gap.
    if (!s.events.some(e => e.event === 'gateway.gap')) t.equal(new Set(got).size, got.length, `${key}: no entry twice`)
  }
})

t.test('a failover that loses acknowledged entries (the promoted replica lagged): clients are told with gateway.gap, reason reset, then read on', async t => {
  const masters = await cluster.masters()
  let victim: string | undefined
  let resume: (() => void) | undefined
  for (const m of masters) {
    try {
      resume = await cluster.pauseReplicaOf(m.address)
      victim = m.address
      break
    } catch {}
  }
  if (victim === undefined || resume === undefined) throw new Error('no master with a replica left')
  let resumed = false
  const wake = resume
  const cont = (): void => { if (!resumed) { resumed = true; wake() } }
  t.teardown(cont)
  const keys: string[] = []
  for (let n = 7000; keys.length < 4; n++) if (masterOf(userKey(n)) === victim) keys.push(userKey(n))
  const subs = keys.map(k => k.slice(`${prefix}user:`.length))
  const streams = await Promise.all(subs.map(async sub => (await open(1, () => `${gw.url}/events`, () => sub))[0] as RawStream))
  t.teardown(() => { for (const s of streams) s.close() })
  const ledger = new Ledger()
  // Written while the replica is stopped: delivered, then lost with the master.
  for (let i = 0; i < 3; i++) await ledger.write(keys, k => `${k} doomed ${i}`)
  await eventually(() => streams.every(s => data(s).length >= 3), 20000, 'the doomed entries delivered')
  await cluster.killMaster(victim, cont)
  await ledger.write(keys, k => `${k} after`, true)
  await eventually(() => streams.every(s => data(s).some(d => d.endsWith(' after'))), 30000, 'the entry written after the failover')
  for (const [i, s] of streams.entries()) {
    const key = keys[i] as string
    const held = (await cluster.client.xrange(key, '-', '+')).map(e => e[1][1] as string)
    t.notOk(held.some(d => d.includes('doomed')), `${key}: the new master lacks the doomed entries`)
    const gap = s.events.findIndex(e => e.event === 'gateway.gap')
    t.ok(gap >= 0, `${key}: told with gateway.gap`)
    t.match(s.events[gap]?.data, /reset/, `${key}: reason reset`)
    const afterGap = s.events.slice(gap + 1).filter(e => !e.event.startsWith('gateway.')).map(e => e.data)
    t.same(afterGap, held, `${key}: after the gap, exactly what the new master holds, in order`)
  }
})
