/**
 * The gateway on Sentinel (REDIS_SENTINELS, 1 master, 1 replica, 3
 * Sentinels), the master SIGKILLed mid-stream and the replica promoted, the
 * replica having missed the last entries (cut off first, as asynchronous
 * replication loses them): every connected client gets every entry the new
 * master holds, in order, none twice, and one `gateway.gap` (reason
 * `reset`) for the channel whose last entries the new master lacks, none
 * for the channels it holds whole. `/readyz` goes 503 during the failover
 * and 200 after it. Never silence. Before that, the command line publishes
 * through the Sentinels.
 */
import { spawn } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { Redis } from 'ioredis'
import { ensureBuilt } from '../helpers/process.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { eventually, scrapeMetric } from '../helpers/extra.js'
import { uniquePrefix } from '../helpers/redis.js'
import { startSentinel } from '../helpers/sentinel.js'
import { getJson, openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(60000)

const dataOf = (s: RawStream): string[] => s.events.filter(e => !e.event.startsWith('gateway.')).map(e => e.data)
const gapsOf = (s: RawStream): Array<{ channel: string, reason: string }> =>
  s.events.filter(e => e.event === 'gateway.gap').flatMap(e => (JSON.parse(e.data) as { channels: Array<{ channel: string, reason: string }> }).channels)

async function readyz (gw: TestGateway): Promise<number> {
  return (await getJson(`${gw.internalUrl}/readyz`)).status
}

/** A producer's retry: right after a failover its Sentinel-aware client may still drop a connection. */
async function xadd (client: Redis, key: string, data: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.xadd(key, '*', 'data', data)
      return
    } catch (err) {
      if (attempt >= 30 || !/Connection is closed|ECONNREFUSED|READONLY/.test((err as Error).message)) throw err
      // Seen now and then: the producer's client ended during the failover.
      if (client.status === 'end') await client.connect().catch(() => {})
      await sleep(100)
    }
  }
}

const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'dist', 'src', 'cli.js')
ensureBuilt()
const topology = await startSentinel()
t.teardown(() => topology.stop())

async function cli (args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 20000)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

t.test('sse-gateway publish --sentinels --sentinel-master writes to the master the Sentinels name', async t => {
  const prefix = uniquePrefix('cli')
  const r = await cli(['publish', '--channel', 'topic:cli', '--data', 'hello', '--prefix', prefix, '--sentinels', topology.sentinels.join(','), '--sentinel-master', topology.master])
  t.equal(r.code, 0, r.stderr)
  const id = r.stdout.trim()
  const master = topology.node(await topology.masterPort())
  t.same(await master.xrange(`${prefix}topic:cli`, '-', '+'), [[id, ['data', 'hello']]], 'the entry is on the master')
  const env = await cli(['publish', '--channel', 'topic:cli', '--data', 'again', '--prefix', prefix], { REDIS_SENTINELS: topology.sentinels.join(','), REDIS_SENTINEL_MASTER: topology.master })
  t.equal(env.code, 0, `REDIS_SENTINELS and REDIS_SENTINEL_MASTER from the environment: ${env.stderr}`)
  const noMaster = await cli(['publish', '--channel', 'topic:cli', '--data', 'x', '--sentinels', topology.sentinels.join(',')])
  t.equal(noMaster.code, 2)
  t.match(noMaster.stderr, /--sentinels needs --sentinel-master NAME/)
  const badAddress = await cli(['publish', '--channel', 'topic:cli', '--data', 'x', '--sentinels', 'nowhere', '--sentinel-master', 'm'])
  t.equal(badAddress.code, 2)
  t.match(badAddress.stderr, /--sentinels has "nowhere", which is not host:port/)
  const unknown = await cli(['publish', '--channel', 'topic:cli', '--data', 'x', '--sentinels', topology.sentinels.join(','), '--sentinel-master', 'no-such-master'])
  t.equal(unknown.code, 1, 'a master the Sentinels do not know: fails, and says where it tried')
  t.match(unknown.stderr, /cannot reach the master "no-such-master" of the Sentinels/)
})

t.test('Sentinel: the master killed mid-stream, a replica that missed the last entries promoted: every entry it holds, once, in order, and gateway.gap for the rest', async t => {
  const prefix = uniquePrefix('failover')
  const gw = await startGateway({
    REDIS_SENTINELS: topology.sentinels.join(','),
    REDIS_SENTINEL_MASTER: topology.master,
    KEY_PREFIX: prefix,
    READER_PROBE_INTERVAL_MS: '300',
    READER_BLOCK_MS: '1000',
    HEARTBEAT_INTERVAL_MS: '1000',
  })
  t.teardown(() => gw.close())
  await eventually(async () => await readyz(gw) === 200, 15000, '/readyz 200 at start')
  const subs = ['a', 'b', 'c']
  const clients = await Promise.all(subs.map(async sub =>
    await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ sub, topics: ['news'] })}` })))
  t.teardown(() => { for (const c of clients) c.close() })
  const news = `${prefix}topic:news`
  const producer = topology.client

  // A: replicated (WAIT), so the new master will hold it.
  for (let i = 0; i < 30; i++) await xadd(producer, news, `news-a${i}`)
  for (const sub of subs) for (let i = 0; i < 3; i++) await xadd(producer, `${prefix}user:${sub}`, `${sub}-a${i}`)
  t.equal(await producer.call('WAIT', '1', '5000'), 1, 'the replica holds A')
  for (const c of clients) await c.waitForEvents(33)

  // B: read by the gateway, never replicated.
  await topology.cutReplica()
  for (let i = 0; i < 10; i++) await xadd(producer, news, `news-b${i}`)
  for (const c of clients) await c.waitForEvents(43)

  // Watch readiness from the kill on: it must drop while the master is gone.
  let sawNotReady = false
  const watching = { on: true }
  const watcher = (async () => {
    while (watching.on) {
      if (await readyz(gw).catch(() => 0) === 503) sawNotReady = true
      await sleep(50)
    }
  })()
  const old = await topology.killMaster()
  const promoted = await topology.failedOver(old)
  t.not(promoted, old, 'the replica is master now')
  await eventually(async () => sawNotReady && await readyz(gw) === 200, 20000, '/readyz 503 during the failover, then 200')
  watching.on = false
  await watcher
  t.ok(sawNotReady, '/readyz said not ready during the failover')

  // C: written on the new master.
  for (let i = 0; i < 20; i++) await xadd(producer, news, `news-c${i}`)
  for (const sub of subs) for (let i = 0; i < 3; i++) await xadd(producer, `${prefix}user:${sub}`, `${sub}-c${i}`)
  const range = (tag: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${tag}${i}`)
  for (const [i, c] of clients.entries()) {
    const sub = subs[i] as string
    await c.waitForEvents(43 + 1 + 23, 20000)
    await sleep(300)
    const data = dataOf(c)
    t.same(data.filter(d => d.startsWith('news-')), [...range('news-a', 30), ...range('news-b', 10), ...range('news-c', 20)], `${sub}: news: A and B as read, then C; nothing twice`)
    t.same(data.filter(d => d.startsWith(`${sub}-`)), [...range(`${sub}-a`, 3), ...range(`${sub}-c`, 3)], `${sub}: its user channel, whole, nothing twice`)
    t.equal(data.length, 66, `${sub}: nothing else`)
    t.same(gapsOf(c), [{ channel: 'topic:news', reason: 'reset' }], `${sub}: one gap, for the channel that lost entries, none for the user channel`)
    const gapAt = c.events.findIndex(e => e.event === 'gateway.gap')
    const firstC = c.events.findIndex(e => e.data === 'news-c0')
    t.ok(gapAt > c.events.findIndex(e => e.data === 'news-b9') && gapAt < firstC, `${sub}: the gap comes after B and before C`)
    t.notOk(c.ended, `${sub}: still connected`)
  }
  t.ok(gw.logs.some(l => l.includes('lacks the newest entries read from the old one')), 'the loss is logged')
  t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_gaps_total', { reason: 'reset' }) >= 3, 'and counted')
})
