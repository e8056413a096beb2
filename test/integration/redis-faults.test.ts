/**
 * Redis faults against a real gateway and real redis-server processes:
 * restart with AOF after a runtime CONFIG SET, restart empty with clients
 * connected and away, a SIGSTOP freeze, a Cluster node and a Sentinel port.
 * Each checks that no event is lost without a `gateway.gap` naming its
 * channel, and what /readyz answers during and after. Regression tests for
 * "notify mode goes silent", "a Redis that lost data is not always told"
 * and "/readyz says ready while no event can flow".
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix, type TestRedis, type TestRedisOptions } from '../helpers/redis.js'
import { getJson, openStream, sleep, type RawStream } from '../helpers/sse.js'
import { eventually, scrapeMetric, type TestContext } from '../helpers/extra.js'
import { freePort } from '../helpers/process.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(240000)

const FAST = { READER_PROBE_INTERVAL_MS: '300', READER_BLOCK_MS: '1000', HEARTBEAT_INTERVAL_MS: '1000' }

async function readyz (gw: TestGateway): Promise<{ status: number, body: Record<string, unknown> }> {
  const r = await getJson(`${gw.internalUrl}/readyz`)
  return { status: r.status, body: r.body as Record<string, unknown> }
}

async function waitReady (gw: TestGateway, status: number, ms = 20000): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> = {}
  await eventually(async () => {
    const r = await readyz(gw)
    last = r.body
    return r.status === status
  }, ms, `/readyz ${status}`)
  return last
}

const dataOf = (s: RawStream): string[] => s.events.filter(e => !e.event.startsWith('gateway.')).map(e => e.data)
const gapsOf = (s: RawStream): Array<{ channel: string, reason: string }> =>
  s.events.filter(e => e.event === 'gateway.gap').flatMap(e => (JSON.parse(e.data) as { channels: Array<{ channel: string, reason: string }> }).channels)

interface Client { sub: string, stream: RawStream }

async function connectClients (gw: TestGateway, n: number, topic: string): Promise<Client[]> {
  const clients: Client[] = []
  for (let i = 0; i < n; i++) {
    const sub = `u${i}`
    const stream = await openStream(`${gw.url}/events?topic=${topic}`, { authorization: `Bearer ${hsToken({ sub, topics: [topic] })}` })
    clients.push({ sub, stream })
  }
  return clients
}

/** Writes `count` entries to the topic and to each user's channel; returns what each client must get. */
async function produce (redis: TestRedis, prefix: string, topic: string, clients: Client[], tag: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await redis.client.xadd(`${prefix}topic:${topic}`, '*', 'data', `${tag}-t-${i}`)
    for (const c of clients) await redis.client.xadd(`${prefix}user:${c.sub}`, '*', 'data', `${tag}-${c.sub}-${i}`)
  }
}

const expected = (tag: string, sub: string, count: number): string[] =>
  Array.from({ length: count }, (_, i) => [`${tag}-t-${i}`, `${tag}-${sub}-${i}`]).flat()

/** Every event of `tag` once, per channel in order (topic and user interleave freely). */
function assertAll (t: TestContext, c: Client, tag: string, count: number, what: string): void {
  const got = dataOf(c.stream).filter(d => d.startsWith(`${tag}-`))
  const topic = got.filter(d => d.startsWith(`${tag}-t-`))
  const user = got.filter(d => d.startsWith(`${tag}-${c.sub}-`))
  const want = expected(tag, c.sub, count)
  t.same(topic, want.filter(d => d.startsWith(`${tag}-t-`)), `${what}: ${c.sub} topic events once, in order`)
  t.same(user, want.filter(d => d.startsWith(`${tag}-${c.sub}-`)), `${what}: ${c.sub} own events once, in order`)
}

interface Scenario { redis: TestRedis, prefix: string, gw: TestGateway, clients: Client[] }

/**
 * A redis-server, a gateway on it and `clients` clients (each its own user
 * channel and the topic `news`), which have all received `before` events
 * on both channels: the state every fault below starts from.
 */
async function scenario (t: TestContext, opts: { redis?: TestRedisOptions, env?: Record<string, string>, clients: number, before: number, runtimeNotify?: boolean }): Promise<Scenario> {
  const redis = await startRedis(opts.redis ?? {})
  t.teardown(() => redis.stop())
  if (opts.runtimeNotify === true) await redis.client.config('SET', 'notify-keyspace-events', 'Kt')
  const prefix = uniquePrefix('fault')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...FAST, ...opts.env })
  t.teardown(() => gw.close())
  const clients = await connectClients(gw, opts.clients, 'news')
  t.teardown(() => { for (const c of clients) c.stream.close() })
  await produce(redis, prefix, 'news', clients, 'before', opts.before)
  for (const c of clients) await c.stream.waitForEvents(2 * opts.before)
  return { redis, prefix, gw, clients }
}

t.test('notify mode goes silent when Redis loses its runtime setting: after a restart with AOF, every event arrives by blocking reads', async t => {
  const { redis, prefix, gw, clients } = await scenario(t, { redis: { appendonly: true }, runtimeNotify: true, env: { READER_MODE: 'notify' }, clients: 8, before: 10 })
  t.equal((await readyz(gw)).body.reader, 'notify', 'notify mode from the runtime setting')

  await redis.kill()
  await waitReady(gw, 503)
  await redis.restart()
  t.equal(await redis.client.config('GET', 'notify-keyspace-events').then(r => (r as string[])[1]), '', 'the restarted Redis has lost the runtime setting')
  await produce(redis, prefix, 'news', clients, 'after', 25)
  for (const c of clients) {
    await c.stream.until(s => dataOf(s).length >= 70, 30000, `${c.sub}: all 70 events`)
    assertAll(t, c, 'before', 10, 'before the restart')
    assertAll(t, c, 'after', 25, 'after the restart')
    t.same(gapsOf(c.stream), [], `${c.sub}: no gap (nothing was lost)`)
    t.notOk(c.stream.ended, `${c.sub}: still connected`)
  }
  const body = await waitReady(gw, 200)
  t.equal(body.reader, 'block', 'now reading with blocking XREAD')
  t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode_changes_total', { mode: 'block', because: 'server-setting' }) >= 1, 'the change is counted')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode', { mode: 'block' }), 1)
  t.equal(gw.logs.filter(l => l.includes('no longer covers streams')).length, 1, 'and logged once')
})

t.test('notify mode goes silent when Redis loses its runtime setting: where CONFIG is withheld (managed Redis), notifications switched off are caught by the probe', async t => {
  // CONFIG under another name: the gateway cannot read the setting, as on managed Redis.
  const { redis, prefix, gw, clients } = await scenario(t, { redis: { notify: 'Kt', args: ['--rename-command', 'CONFIG', 'sse-test-config'] }, env: { READER_MODE: 'notify' }, clients: 4, before: 5 })
  t.equal((await readyz(gw)).body.reader, 'notify')
  await redis.client.call('sse-test-config', 'SET', 'notify-keyspace-events', '')
  await produce(redis, prefix, 'news', clients, 'after', 10)
  for (const c of clients) {
    await c.stream.until(s => dataOf(s).length >= 30, 30000, `${c.sub}: all 30 events`)
    assertAll(t, c, 'after', 10, 'after notifications stopped')
    t.same(gapsOf(c.stream), [])
  }
  t.equal((await waitReady(gw, 200)).reader, 'block')
  t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode_changes_total', { mode: 'block', because: 'probe-timeout' }) >= 1, 'the fallback is counted')
  t.ok(gw.logs.some(l => l.includes('keyspace notifications stopped arriving')), 'and logged')
})

t.test('notify mode goes silent when Redis loses its runtime setting: the reader follows the setting both ways with no restart', async t => {
  const { redis, prefix, gw, clients } = await scenario(t, { redis: { notify: 'Kt' }, env: { READER_MODE: 'notify' }, clients: 4, before: 5 })
  t.equal((await readyz(gw)).body.reader, 'notify')
  await redis.client.config('SET', 'notify-keyspace-events', '')
  await produce(redis, prefix, 'news', clients, 'off', 5)
  await eventually(async () => (await readyz(gw)).body.reader === 'block', 10000, 'blocking reads')
  await redis.client.config('SET', 'notify-keyspace-events', 'Kt')
  await eventually(async () => (await readyz(gw)).body.reader === 'notify', 10000, 'back to notifications')
  await produce(redis, prefix, 'news', clients, 'on', 5)
  for (const c of clients) {
    await c.stream.until(s => dataOf(s).length >= 30, 30000, `${c.sub}: all 30 events`)
    assertAll(t, c, 'off', 5, 'with notifications off')
    assertAll(t, c, 'on', 5, 'with notifications back on')
    t.same(gapsOf(c.stream), [])
  }
  t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode_changes_total', { mode: 'block', because: 'server-setting' }) >= 1)
  t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_reader_mode_changes_total', { mode: 'notify', because: 'server-setting' }) >= 1)
})

for (const mode of ['block', 'notify', 'track'] as const) {
  t.test(`a Redis that lost data is not always told (${mode}): connected clients get gateway.gap naming every channel when Redis restarts empty`, async t => {
    const { redis, prefix, gw, clients } = await scenario(t, { redis: mode === 'notify' ? { notify: 'Kt' } : {}, env: { READER_MODE: mode }, clients: 6, before: 5 })
    // The last acknowledged entries: written, then Redis dies at once,
    // before the gateway may have read them.
    await produce(redis, prefix, 'news', clients, 'last', 1)
    await redis.kill()
    const down = await waitReady(gw, 503)
    t.ok(down.redis !== 'ready' || down.live !== 'flowing', `not ready while Redis is down, and says why (${JSON.stringify(down)})`)
    await redis.restart()
    for (const c of clients) {
      await c.stream.until(s => gapsOf(s).length >= 2, 30000, `${c.sub}: a gap for both channels`)
      const gaps = gapsOf(c.stream)
      t.same(gaps.map(g => g.channel).sort(), ['topic:news', `user:${c.sub}`].sort(), `${c.sub}: the gap names both channels`)
      t.ok(gaps.every(g => g.reason === 'reset'), `${c.sub}: reason reset`)
      t.equal(c.stream.events.filter(e => e.event === 'gateway.gap').length, 1, `${c.sub}: in one gap event`)
    }
    await produce(redis, prefix, 'news', clients, 'after', 5)
    for (const c of clients) {
      await c.stream.until(s => dataOf(s).filter(d => d.startsWith('after-')).length >= 10, 30000, `${c.sub}: the events after the restart`)
      assertAll(t, c, 'after', 5, 'after the restart')
      const gapAt = c.stream.events.findIndex(e => e.event === 'gateway.gap')
      t.ok(c.stream.events.slice(gapAt).some(e => e.data === 'after-t-0'), `${c.sub}: the new events come after the gap`)
      t.equal(new Set(dataOf(c.stream)).size, dataOf(c.stream).length, `${c.sub}: nothing twice`)
      t.notOk(c.stream.ended, `${c.sub}: still connected`)
    }
    await waitReady(gw, 200)
    t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_redis_data_lost_total'), 1, 'counted once')
    t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_gaps_total', { reason: 'reset' }) >= 12)
  })
}

t.test('a Redis that lost data is not always told: a client away during an empty restart is told at resume, also of a channel that was empty at connect', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('away')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...FAST })
  t.teardown(() => gw.close())
  const auth = { authorization: `Bearer ${hsToken({ sub: 'away', topics: ['news'] })}` }
  const first = await openStream(`${gw.url}/events?topic=news`, auth)
  for (let i = 0; i < 3; i++) await redis.client.xadd(`${prefix}topic:news`, '*', 'data', `news-${i}`)
  await first.waitForEvents(3)
  first.close()
  const lastId = first.events[2]?.id as string
  t.ok(lastId.startsWith('1.'), 'a two-channel cursor (the user channel still empty in it)')
  // Written while the client is away, then lost with everything else.
  await redis.client.xadd(`${prefix}user:away`, '*', 'data', 'away-1')
  await redis.kill()
  await waitReady(gw, 503)
  await redis.restart()
  // Ready again: the reconnect's server check has seen the new epoch.
  await waitReady(gw, 200)
  await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'news-after')

  // To the replica that saw the loss, and to one started after it.
  const other = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...FAST })
  t.teardown(() => other.close())
  for (const target of [gw, other]) {
    const back = await openStream(`${target.url}/events?topic=news`, { ...auth, 'last-event-id': lastId })
    await back.until(s => s.events.some(e => e.data === 'news-after'), 20000, 'the event after the restart')
    back.close()
    const gaps = gapsOf(back)
    t.same(gaps.map(g => g.channel).sort(), ['topic:news', 'user:away'], 'the gap names the user channel that was empty at connect, and the topic')
    t.ok(gaps.every(g => g.reason === 'reset'), 'reason reset')
    t.same(dataOf(back), ['news-after'], 'then what Redis holds now')
    // Resuming from the gap's id is not told again.
    const gapId = back.events.find(e => e.event === 'gateway.gap')?.id as string
    const again = await openStream(`${target.url}/events?topic=news`, { ...auth, 'last-event-id': back.events[back.events.length - 1]?.id ?? gapId })
    await sleep(500)
    again.close()
    t.same(gapsOf(again), [], 'a resume after the gap is not told again')
  }
})

t.test('a Redis that lost data is not always told: a flush with no reconnect is caught by the probe; an epoch deleted alone costs no gap and no duplicate', async t => {
  const { redis, prefix, gw, clients } = await scenario(t, { clients: 3, before: 5 })
  // The epoch key alone goes (evicted, deleted): every stream still holds its last entry.
  await redis.client.del(`${prefix}__gateway:epoch`)
  await eventually(() => gw.logs.some(l => l.includes('nothing was lost')), 10000, 'the replaced epoch seen')
  await produce(redis, prefix, 'news', clients, 'kept', 3)
  for (const c of clients) {
    await c.stream.until(s => dataOf(s).length >= 16, 20000, `${c.sub}: the events after it`)
    assertAll(t, c, 'before', 5, 'before the epoch went')
    assertAll(t, c, 'kept', 3, 'after the epoch went')
    t.same(gapsOf(c.stream), [], `${c.sub}: no gap, nothing twice`)
  }
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_redis_data_lost_total'), 0, 'not counted as a loss')

  // FLUSHALL while connected: no reconnect, the probe's epoch read notices.
  await redis.client.flushall()
  for (const c of clients) {
    await c.stream.until(s => gapsOf(s).length >= 2, 20000, `${c.sub}: told of the flush`)
    t.same(gapsOf(c.stream).map(g => `${g.channel} ${g.reason}`).sort(), ['topic:news reset', `user:${c.sub} reset`].sort())
  }
  await produce(redis, prefix, 'news', clients, 'after', 3)
  for (const c of clients) {
    await c.stream.until(s => dataOf(s).filter(d => d.startsWith('after-')).length >= 6, 20000, `${c.sub}: the events after the flush`)
    assertAll(t, c, 'after', 3, 'after the flush')
  }
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_redis_data_lost_total'), 1)
})

t.test('/readyz says ready while no event can flow: a SIGSTOP freeze makes the replica not ready until reads succeed again, and nothing is lost', async t => {
  const { redis, prefix, gw, clients } = await scenario(t, { clients: 4, before: 5 })
  t.equal((await readyz(gw)).status, 200)

  const pid = redis.pid as number
  process.kill(pid, 'SIGSTOP')
  let body: Record<string, unknown>
  const frozenAt = Date.now()
  try {
    body = await waitReady(gw, 503, 15000)
    t.comment(`not ready ${Date.now() - frozenAt} ms into the freeze`)
    await sleep(3000)
    t.equal((await readyz(gw)).status, 503, 'still not ready while frozen')
  } finally {
    process.kill(pid, 'SIGCONT')
  }
  t.not(body.live, 'flowing', `says why: ${JSON.stringify(body)}`)
  await waitReady(gw, 200, 30000)
  await produce(redis, prefix, 'news', clients, 'after', 5)
  for (const c of clients) {
    await c.stream.until(s => dataOf(s).length >= 20, 30000, `${c.sub}: all events`)
    assertAll(t, c, 'before', 5, 'before the freeze')
    assertAll(t, c, 'after', 5, 'after the freeze')
    t.same(gapsOf(c.stream), [], 'no gap: nothing was lost')
  }
  t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_live_stalls_total', { reason: 'probe-timeout' }) +
    await scrapeMetric(gw.internalUrl, 'sse_gateway_live_stalls_total', { reason: 'reader-error' }) >= 1, 'the stall is counted')
  t.ok(gw.logs.some(l => l.includes('live reads are not flowing')) && gw.logs.some(l => l.includes('live reads flowing again')), 'and logged, with the recovery')
})

async function waitForPort (port: number): Promise<void> {
  await eventually(async () => {
    const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    c.on('error', () => {})
    try { await c.connect(); await c.ping(); return true } catch { return false } finally { c.disconnect() }
  }, 10000, `port ${port}`)
}

t.test('/readyz says ready while no event can flow: a Redis Cluster node and a Sentinel port are not ready, and say why', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sse-gw-modes-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const clusterPort = await freePort()
  const cluster = spawn('redis-server', ['--port', String(clusterPort), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  t.teardown(() => { cluster.kill('SIGKILL') })
  const sentinelPort = await freePort()
  writeFileSync(join(dir, 'sentinel.conf'), `port ${sentinelPort}\nbind 127.0.0.1\ndir ${dir}\n`)
  const sentinel = spawn('redis-sentinel', [join(dir, 'sentinel.conf')], { stdio: 'ignore' })
  t.teardown(() => { sentinel.kill('SIGKILL') })
  await waitForPort(clusterPort)
  const admin = new Redis({ port: clusterPort, host: '127.0.0.1' })
  await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')
  admin.disconnect()
  await waitForPort(sentinelPort)

  for (const [what, port, mode] of [['a Cluster node', clusterPort, 'cluster'], ['a Sentinel', sentinelPort, 'sentinel']] as const) {
    const gw = await startGateway({ REDIS_URL: `redis://127.0.0.1:${port}`, KEY_PREFIX: uniquePrefix('mode'), PUBLIC_TOPICS: 'news', ...FAST })
    const body = await waitReady(gw, 503, 10000)
    t.equal(body.live, 'not-standalone', `${what}: not ready, and says why`)
    // A client's read would fail too: still not ready with one connected.
    const s = await openStream(`${gw.url}/events?topic=news`)
    await sleep(1500)
    t.equal((await readyz(gw)).status, 503, `${what}: still not ready with a client`)
    s.close()
    t.ok(gw.logs.some(l => l.includes(`${mode} mode`)), `${what}: the log names the mode`)
    if (mode === 'cluster') t.ok(gw.logs.some(l => l.includes('set REDIS_CLUSTER_NODES')), 'a Cluster node: the log says to set REDIS_CLUSTER_NODES')
    t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_live_stalls_total', { reason: 'not-standalone' }) >= 1)
    await gw.close()
  }
})

t.test('restart with AOF: no gap, nothing lost, not ready while down, ready after', async t => {
  const { redis, prefix, gw, clients } = await scenario(t, { redis: { appendonly: true }, clients: 4, before: 5 })
  await redis.kill()
  await waitReady(gw, 503)
  await redis.restart()
  await produce(redis, prefix, 'news', clients, 'after', 5)
  await waitReady(gw, 200)
  for (const c of clients) {
    await c.stream.until(s => dataOf(s).length >= 20, 30000, `${c.sub}: all events`)
    assertAll(t, c, 'before', 5, 'before')
    assertAll(t, c, 'after', 5, 'after')
    t.same(gapsOf(c.stream), [], 'no gap: AOF kept everything')
  }
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_redis_data_lost_total'), 0, 'no data loss seen')
})
