/**
 * Never a silent gap (issue 3, "must show" 4 and 5): history trimmed past the
 * cursor, a cursor entry that is gone, a cursor ahead of the stream, and a
 * cursor that is not ours all give a `gateway.gap` control event naming the
 * channels and the reason, on a 200 stream, then delivery goes on from the
 * documented point. Also: `lastEventId` as a query parameter, and the header
 * winning over it.
 */
import t, { type Test } from 'tap'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { GAP_EVENT, Ledger, dataEvents, metric } from '../helpers/ledger.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, sleep, type RawStream, type ReceivedEvent } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(120000)

const redis = await startRedis()
t.teardown(() => redis.stop())

const token = hsToken({ sub: 'bob', topics: ['t', 'u'] })
const auth = { authorization: `Bearer ${token}` }

async function gateway (t: Test, env: Record<string, string> = {}): Promise<{ gw: TestGateway, prefix: string }> {
  const prefix = uniquePrefix('gap')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...env })
  t.teardown(() => gw.close())
  return { gw, prefix }
}

async function open (t: Test, url: string, headers: Record<string, string> = {}): Promise<RawStream> {
  const s = await openStream(url, { ...auth, ...headers })
  t.teardown(() => { s.close() })
  return s
}

/** Payloads of data events on `s` (control events left out). */
const payloads = (s: RawStream): string[] => dataEvents(s).map(e => e.data)

function gapOf (e: ReceivedEvent | undefined): unknown {
  if (e === undefined || e.event !== GAP_EVENT) return undefined
  return JSON.parse(e.data)
}

async function gaps (gw: TestGateway, reason: string): Promise<number> {
  return await metric(gw.internalUrl, 'sse_gateway_gaps_total', { reason })
}

t.test('trimmed past the cursor (MAXLEN 0, then new entries): gap "trimmed", then the oldest retained entries', async t => {
  const { gw, prefix } = await gateway(t)
  const ledger = new Ledger(redis.client, prefix, ['user:bob', 'topic:t'])
  const url = `${gw.url}/events?topic=t`
  const first = await open(t, url)
  await ledger.write(5, { only: 'user:bob' })
  await ledger.write(5, { only: 'topic:t' })
  await first.waitForEvents(10)
  const lastId = first.lastId as string
  first.close()
  await first.waitForEnd()

  await ledger.write(4, { only: 'user:bob' }) // missed, still retained
  await ledger.write(6, { only: 'topic:t' }) // missed, then trimmed away
  await redis.client.xtrim(ledger.key('topic:t'), 'MAXLEN', 0)
  await ledger.write(3, { only: 'topic:t' }) // the oldest retained now

  const s = await open(t, url, { 'last-event-id': lastId })
  t.equal(s.status, 200, 'status 200, never an error that would stop EventSource')
  await s.waitForEvents(1 + 4 + 3)
  await sleep(200)
  t.equal(s.events[0]?.event, GAP_EVENT, 'the control event comes first')
  t.same(gapOf(s.events[0]), { channels: [{ channel: 'topic:t', reason: 'trimmed' }] }, 'it names the trimmed channel and the reason')
  t.same(s.events.filter(e => e.event === GAP_EVENT).length, 1, 'one gap event')
  const got = payloads(s)
  t.same(got.filter(d => d.startsWith('topic:t:')), ['topic:t:12', 'topic:t:13', 'topic:t:14'], 'then the oldest retained entries of the trimmed channel, in order')
  t.same(got.filter(d => d.startsWith('user:bob:')), ['user:bob:6', 'user:bob:7', 'user:bob:8', 'user:bob:9'], 'the other channel resumes exactly')
  t.equal(got.length, 7, 'nothing else')
  t.equal(await gaps(gw, 'trimmed'), 1, 'sse_gateway_gaps_total{reason="trimmed"} counts it')

  // The gap event carries an id: resuming from it does not report the same gap again.
  const gapId = s.events[0]?.id as string
  t.type(gapId, 'string', 'the gap event has an id')
  s.close()
  await s.waitForEnd()
  const again = await open(t, url, { 'last-event-id': gapId })
  await again.waitForEvents(7)
  await sleep(200)
  t.same(again.events.filter(e => e.event === GAP_EVENT), [], 'no second gap from the gap event\'s id')
  t.same(payloads(again).sort(), got.slice().sort(), 'it resumes right after the gap')
  t.equal(await gaps(gw, 'trimmed'), 1, 'the counter did not move')
})

t.test('trimmed with MINID beyond the cursor, one-channel connection (bare id): gap, then from the oldest retained entry', async t => {
  const { gw, prefix } = await gateway(t)
  const tok = hsToken({ topics: ['t'] }) // no sub: one channel, bare entry ids
  const ledger = new Ledger(redis.client, prefix, ['topic:t'])
  const url = `${gw.url}/events?topic=t`
  const first = await openStream(url, { authorization: `Bearer ${tok}` })
  t.teardown(() => { first.close() })
  await ledger.write(5)
  await first.waitForEvents(5)
  const lastId = first.lastId as string
  t.match(lastId, /^\d+-\d+$/, 'a one-channel connection uses the bare entry id')
  t.equal(lastId, ledger.ids.get('topic:t')?.[4], 'which is the entry\'s own id')
  first.close()
  await first.waitForEnd()

  await ledger.write(10) // topic:t:6 .. topic:t:15
  const ids = ledger.ids.get('topic:t') as string[]
  await redis.client.xtrim(ledger.key('topic:t'), 'MINID', ids[9] as string) // keeps 10..15

  const s = await openStream(url, { authorization: `Bearer ${tok}`, 'last-event-id': lastId })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  await s.waitForEvents(1 + 6)
  await sleep(200)
  t.same(gapOf(s.events[0]), { channels: [{ channel: 'topic:t', reason: 'trimmed' }] }, 'gap "trimmed" first')
  t.same(payloads(s), ['topic:t:10', 'topic:t:11', 'topic:t:12', 'topic:t:13', 'topic:t:14', 'topic:t:15'], 'then from the oldest retained entry, in order')
  t.equal(await gaps(gw, 'trimmed'), 1)
})

t.test('the cursor entry was deleted (XDEL) but newer ones remain: gap "missing", delivery continues right after the cursor', async t => {
  const { gw, prefix } = await gateway(t)
  const ledger = new Ledger(redis.client, prefix, ['user:bob', 'topic:t'])
  const url = `${gw.url}/events?topic=t`
  const first = await open(t, url)
  await ledger.write(3, { only: 'topic:t' })
  await ledger.write(10, { only: 'user:bob' })
  await first.waitForEvents(13)
  const lastId = first.lastId as string
  first.close()
  await first.waitForEnd()

  await ledger.write(5, { only: 'user:bob' }) // user:bob:11..15
  await ledger.write(2, { only: 'topic:t' }) // topic:t:4..5
  await redis.client.xdel(ledger.key('user:bob'), ledger.ids.get('user:bob')?.[9] as string) // the last one seen

  const s = await open(t, url, { 'last-event-id': lastId })
  t.equal(s.status, 200)
  await s.waitForEvents(1 + 5 + 2)
  await sleep(200)
  t.same(gapOf(s.events[0]), { channels: [{ channel: 'user:bob', reason: 'missing' }] }, 'gap "missing" names the user channel')
  const got = payloads(s)
  t.same(got.filter(d => d.startsWith('user:bob:')), ['user:bob:11', 'user:bob:12', 'user:bob:13', 'user:bob:14', 'user:bob:15'], 'continues right after the cursor')
  t.same(got.filter(d => d.startsWith('topic:t:')), ['topic:t:4', 'topic:t:5'], 'the other channel resumes exactly')
  t.equal(got.length, 7)
  t.equal(await gaps(gw, 'missing'), 1, 'sse_gateway_gaps_total{reason="missing"}')
})

t.test('a cursor ahead of the stream (bare id in the far future): gap "ahead", then new entries', async t => {
  const { gw, prefix } = await gateway(t)
  const tok = hsToken({ topics: ['t'] })
  const ledger = new Ledger(redis.client, prefix, ['topic:t'])
  await ledger.write(5)
  const tail = ledger.ids.get('topic:t')?.[4] as string
  const s = await openStream(`${gw.url}/events?topic=t`, { authorization: `Bearer ${tok}`, 'last-event-id': '9999999999999-0' })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  await s.waitForEvents(1)
  t.same(gapOf(s.events[0]), { channels: [{ channel: 'topic:t', reason: 'ahead' }] }, 'gap "ahead"')
  t.equal(s.events[0]?.id, tail, 'the gap event\'s id is the stream\'s newest entry: delivery goes on after it')
  await ledger.write(3)
  await s.waitForEvents(4)
  await sleep(200)
  t.same(payloads(s), ['topic:t:6', 'topic:t:7', 'topic:t:8'], 'new entries arrive; the retained ones are not replayed')
  t.equal(await gaps(gw, 'ahead'), 1, 'sse_gateway_gaps_total{reason="ahead"}')
})

t.test('malformed and foreign cursors: gap "invalid-cursor" on a 200 stream, then live delivery', async t => {
  const { gw, prefix } = await gateway(t)
  const ledger = new Ledger(redis.client, prefix, ['user:bob', 'topic:t'])
  await ledger.write(3) // history that must not be replayed
  const url = `${gw.url}/events?topic=t`
  const cases: Array<[string, string]> = [
    ['garbage', 'garbage'],
    ['a bad segment', '1.zzz'],
    ['overlong', '1' + '.abcdef1'.repeat(600)],
    ['an unknown version', '2.abcdef1'],
    ['a Mercure-style id', 'urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427'],
    ['an integer offset', '12345'],
    ['a bare entry id on a two-channel connection', ledger.ids.get('topic:t')?.[0] ?? ledger.ids.get('user:bob')?.[0] as string],
  ]
  let expected = 0
  for (const [what, cursor] of cases) {
    const s = await open(t, url, { 'last-event-id': cursor })
    t.equal(s.status, 200, `${what}: 200`)
    await s.waitForEvents(1)
    t.same(gapOf(s.events[0]), {
      channels: [{ channel: 'user:bob', reason: 'invalid-cursor' }, { channel: 'topic:t', reason: 'invalid-cursor' }],
    }, `${what}: gap "invalid-cursor" naming every channel`)
    expected += 2
    const old = new Set([...ledger.written.values()].flat())
    await ledger.write(2)
    const fresh = [...ledger.written.values()].flat().filter(d => !old.has(d)).sort()
    await s.waitForEvents(3)
    await sleep(100)
    t.same(payloads(s).sort(), fresh, `${what}: live delivery goes on, no history replayed`)
    s.close()
    await s.waitForEnd()
  }
  t.equal(await gaps(gw, 'invalid-cursor'), expected, 'sse_gateway_gaps_total{reason="invalid-cursor"} counts each channel')
})

t.test('lastEventId query parameter resumes like the header; the header wins when both are sent', async t => {
  const { gw, prefix } = await gateway(t)
  const ledger = new Ledger(redis.client, prefix, ['user:bob', 'topic:t'])
  const url = `${gw.url}/events?topic=t`
  const first = await open(t, url)
  await ledger.write(10)
  await first.waitForEvents(10)
  const lastId = first.lastId as string
  first.close()
  await first.waitForEnd()
  await ledger.write(10)
  const missed = [...ledger.written.values()].flat().filter(d => !payloads(first).includes(d)).sort()
  t.equal(missed.length, 10)

  const q = await open(t, `${url}&lastEventId=${encodeURIComponent(lastId)}`)
  t.equal(q.status, 200)
  await q.waitForEvents(10)
  await sleep(200)
  t.same(q.events.filter(e => e.event === GAP_EVENT), [], 'query parameter: no gap')
  t.same(payloads(q).sort(), missed, 'query parameter: exactly the missed events')

  const hq = await open(t, `${url}&lastEventId=garbage`, { 'last-event-id': lastId })
  await hq.waitForEvents(10)
  await sleep(200)
  t.same(hq.events.filter(e => e.event === GAP_EVENT), [], 'valid header, garbage query: the header wins, no gap')
  t.same(payloads(hq).sort(), missed, 'valid header, garbage query: resumes from the header')

  const qh = await open(t, `${url}&lastEventId=${encodeURIComponent(lastId)}`, { 'last-event-id': 'garbage' })
  await qh.waitForEvents(1)
  t.equal(gapOf(qh.events[0]) !== undefined, true, 'garbage header, valid query: the header wins, so an invalid-cursor gap')
  t.match(gapOf(qh.events[0]), { channels: [{ reason: 'invalid-cursor' }] })
  await sleep(200)
  t.same(payloads(qh), [], 'and no replay from the query parameter')
})

t.test('regression: a channel that was empty when the client connected, written and trimmed while it was away, gets a gap (not a silent loss)', async t => {
  const { gw, prefix } = await gateway(t)
  const ledger = new Ledger(redis.client, prefix, ['user:bob', 'topic:t'])
  const url = `${gw.url}/events?topic=t`
  const first = await open(t, url) // topic:t does not exist yet
  await ledger.write(3, { only: 'user:bob' })
  await first.waitForEvents(3)
  const lastId = first.lastId as string
  first.close()
  await first.waitForEnd()
  await ledger.write(10, { only: 'topic:t' })
  await redis.client.xtrim(ledger.key('topic:t'), 'MAXLEN', 5) // topic:t:1..5 never reach the client

  const s = await open(t, url, { 'last-event-id': lastId })
  await s.waitForEvents(5)
  await sleep(300)
  t.same(gapOf(s.events[0]), { channels: [{ channel: 'topic:t', reason: 'trimmed' }] }, 'gap "trimmed" for the channel that lost entries')
  t.same(payloads(s), ['topic:t:6', 'topic:t:7', 'topic:t:8', 'topic:t:9', 'topic:t:10'], 'then the oldest retained entries')
})
