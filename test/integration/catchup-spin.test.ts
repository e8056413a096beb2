/**
 * Regression: a session whose cursor was behind the hub's live position, on a
 * stream that held nothing past that cursor any more (trimmed to nothing, or
 * every newer entry deleted), re-read the same empty range in a tight loop
 * (thousands of XRANGE a second) until a new entry arrived, which for an
 * expired per-user stream may be never.
 */
import t, { type Test } from 'tap'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { GAP_EVENT, Ledger, commandCalls, dataEvents } from '../helpers/ledger.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(60000)

const redis = await startRedis()
t.teardown(() => redis.stop())

const auth = { authorization: `Bearer ${hsToken({ sub: 'carol', topics: ['t'] })}` }

async function gateway (t: Test): Promise<{ gw: TestGateway, ledger: Ledger, url: string }> {
  const prefix = uniquePrefix('spin')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  return { gw, ledger: new Ledger(redis.client, prefix, ['user:carol', 'topic:t']), url: `${gw.url}/events?topic=t` }
}

async function open (t: Test, url: string, headers: Record<string, string> = {}): Promise<RawStream> {
  const s = await openStream(url, { ...auth, ...headers })
  t.teardown(() => { s.close() })
  return s
}

const payloads = (s: RawStream): string[] => dataEvents(s).map(e => e.data)

/**
 * A client reads 3 entries and drops; an observer stays, so the hub reads 3
 * more (its live position passes the client's cursor); then `remove` runs.
 */
async function behindTheHub (t: Test, remove: (ledger: Ledger) => Promise<void>): Promise<{ ledger: Ledger, observer: RawStream, lastId: string, url: string }> {
  const { ledger, url } = await gateway(t)
  const observer = await open(t, url)
  const first = await open(t, url)
  await ledger.write(3, { only: 'topic:t' })
  await first.waitForEvents(3)
  const lastId = first.lastId as string
  first.close()
  await first.waitForEnd()
  await ledger.write(3, { only: 'topic:t' })
  await observer.waitForEvents(6)
  await remove(ledger)
  return { ledger, observer, lastId, url }
}

async function xrangeCallsWhileQuiet (): Promise<number> {
  await sleep(300)
  const before = await commandCalls(redis.client, 'xrange')
  await sleep(1000)
  return await commandCalls(redis.client, 'xrange') - before
}

t.test('catch-up spun on an emptied stream: trimmed to nothing behind the hub\'s position', async t => {
  const { ledger, observer, lastId, url } = await behindTheHub(t, async l => { await redis.client.xtrim(l.key('topic:t'), 'MAXLEN', 0) })
  const s = await open(t, url, { 'last-event-id': lastId })
  t.equal(s.status, 200)
  await s.waitForEvents(1)
  t.same(JSON.parse(s.events[0]?.event === GAP_EVENT ? s.events[0].data : 'null'), { channels: [{ channel: 'topic:t', reason: 'trimmed' }] }, 'gap "trimmed"')
  const reads = await xrangeCallsWhileQuiet()
  t.ok(reads < 50, `no busy loop: ${reads} XRANGE in 1 s with nothing to read`)
  await ledger.write(2, { only: 'topic:t' })
  await s.until(x => payloads(x).length >= 2, 10000, 'new entries')
  await sleep(200)
  t.same(payloads(s), ['topic:t:7', 'topic:t:8'], 'entries written afterwards arrive, once')
  t.same(payloads(observer).slice(6), ['topic:t:7', 'topic:t:8'], 'and reach the observer')
})

t.test('catch-up spun on an emptied stream: every entry after the cursor deleted', async t => {
  const { ledger, observer, lastId, url } = await behindTheHub(t, async l => {
    await redis.client.xdel(l.key('topic:t'), ...(l.ids.get('topic:t') as string[]).slice(3))
  })
  const s = await open(t, url, { 'last-event-id': lastId })
  t.equal(s.status, 200)
  await sleep(300)
  t.same(s.events, [], 'the cursor entry is retained: no gap, nothing to send')
  const reads = await xrangeCallsWhileQuiet()
  t.ok(reads < 50, `no busy loop: ${reads} XRANGE in 1 s with nothing to read`)
  await ledger.write(2, { only: 'topic:t' })
  await s.until(x => payloads(x).length >= 2, 10000, 'new entries')
  await sleep(200)
  t.same(payloads(s), ['topic:t:7', 'topic:t:8'], 'entries written afterwards arrive, once')
  t.same(payloads(observer).slice(6), ['topic:t:7', 'topic:t:8'], 'and reach the observer')
})
