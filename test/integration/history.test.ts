/**
 * First-connect history (issue 3, "must show" 7): `history=N` starts each
 * channel N entries back, `since=<time>` from a moment (entry ids carry
 * milliseconds); both are ignored when the client resumes; bad values are a
 * 400 with a stable code.
 */
import t, { type Test } from 'tap'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { GAP_EVENT, Ledger, assertExactlyOnce, dataEvents } from '../helpers/ledger.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { getJson, openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(90000)

const redis = await startRedis()
t.teardown(() => redis.stop())

const CHANNELS = ['user:dave', 'topic:a', 'topic:b']
const auth = { authorization: `Bearer ${hsToken({ sub: 'dave', topics: ['a', 'b'] })}` }
const QUERY = '/events?topic=a&topic=b'

async function setup (t: Test, env: Record<string, string> = {}): Promise<{ gw: TestGateway, ledger: Ledger }> {
  const prefix = uniquePrefix('hist')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...env })
  t.teardown(() => gw.close())
  return { gw, ledger: new Ledger(redis.client, prefix, CHANNELS) }
}

async function open (t: Test, url: string, headers: Record<string, string> = {}): Promise<RawStream> {
  const s = await openStream(url, { ...auth, ...headers })
  t.teardown(() => { s.close() })
  return s
}

/** The payloads of `channel` numbered `from`..`to` (1-based, inclusive). */
function range (channel: string, from: number, to: number): string[] {
  const out: string[] = []
  for (let n = from; n <= to; n++) out.push(`${channel}:${n}`)
  return out
}

const msOf = (id: string): number => Number(id.slice(0, id.indexOf('-')))

t.test('history=3: the 3 newest entries of each channel, then live', async t => {
  const { gw, ledger } = await setup(t)
  await ledger.write(10, { only: 'user:dave' })
  await ledger.write(10, { only: 'topic:a' })
  await ledger.write(2, { only: 'topic:b' }) // fewer than asked: all of them
  const s = await open(t, `${gw.url}${QUERY}&history=3`)
  t.equal(s.status, 200)
  await s.waitForEvents(3 + 3 + 2)
  await sleep(200)
  const history = new Map([
    ['user:dave', range('user:dave', 8, 10)],
    ['topic:a', range('topic:a', 8, 10)],
    ['topic:b', range('topic:b', 1, 2)],
  ])
  assertExactlyOnce(t, history, dataEvents(s), 'history')
  t.same(s.events.filter(e => e.event === GAP_EVENT), [], 'history is not a gap')

  await ledger.write(30)
  await s.waitForEvents(8 + 30)
  await sleep(200)
  const expected = new Map([...ledger.written].map(([ch, list]) => [ch, list.slice(ch === 'topic:b' ? 0 : 7)]))
  assertExactlyOnce(t, expected, dataEvents(s), 'history then live')
})

t.test('since=<ms> and since=<ISO 8601>: every entry from that time on, then live', async t => {
  const { gw, ledger } = await setup(t)
  // Ten rounds a few milliseconds apart, so the entries span distinct times.
  for (let i = 0; i < 10; i++) {
    for (const ch of CHANNELS) await ledger.write(1, { only: ch })
    await sleep(5)
  }
  const since = msOf(ledger.ids.get('topic:a')?.[5] as string)
  const expected = new Map<string, string[]>()
  for (const ch of CHANNELS) {
    const ids = ledger.ids.get(ch) as string[]
    expected.set(ch, (ledger.written.get(ch) as string[]).filter((_, i) => msOf(ids[i] as string) >= since))
  }
  let n = 0
  for (const list of expected.values()) n += list.length
  t.ok(n > 0 && n < 30, `the cut falls inside the history (${n} of 30)`)

  for (const form of [String(since), new Date(since).toISOString()]) {
    const s = await open(t, `${gw.url}${QUERY}&since=${encodeURIComponent(form)}`)
    t.equal(s.status, 200, `since=${form}: 200`)
    await s.waitForEvents(n)
    await sleep(200)
    assertExactlyOnce(t, expected, dataEvents(s), `since=${form}`)
    t.same(s.events.filter(e => e.event === GAP_EVENT), [], `since=${form}: no gap`)
    s.close()
  }

  const s = await open(t, `${gw.url}${QUERY}&since=${since}`)
  await s.waitForEvents(n)
  await ledger.write(9)
  await s.waitForEvents(n + 9)
  await sleep(200)
  // Every channel had 10 entries before: live ones are numbered from 11.
  const live = new Map([...expected].map(([ch, list]) => [ch, [...list, ...(ledger.written.get(ch) as string[]).slice(10)]]))
  assertExactlyOnce(t, live, dataEvents(s), 'since, then live')
})

t.test('history is ignored when the client resumes (header or query parameter)', async t => {
  const { gw, ledger } = await setup(t)
  for (const ch of CHANNELS) await ledger.write(2, { only: ch })
  const first = await open(t, gw.url + QUERY)
  for (const ch of CHANNELS) await ledger.write(2, { only: ch }) // n = 3, 4: seen
  await first.waitForEvents(6)
  const lastId = first.lastId as string
  first.close()
  await first.waitForEnd()
  for (const ch of CHANNELS) await ledger.write(6, { only: ch }) // n = 5..10: missed
  const missed = new Map(CHANNELS.map(ch => [ch, range(ch, 5, 10)]))

  for (const [what, url, headers] of [
    ['Last-Event-ID header', `${gw.url}${QUERY}&history=3`, { 'last-event-id': lastId }],
    ['lastEventId query parameter', `${gw.url}${QUERY}&history=3&lastEventId=${encodeURIComponent(lastId)}`, {}],
    ['Last-Event-ID header, since=0', `${gw.url}${QUERY}&since=0`, { 'last-event-id': lastId }],
  ] as Array<[string, string, Record<string, string>]>) {
    const s = await open(t, url, headers)
    t.equal(s.status, 200, `${what}: 200`)
    await s.waitForEvents(18)
    await sleep(200)
    assertExactlyOnce(t, missed, dataEvents(s), `${what}: exactly the missed events, not the history`)
    t.same(s.events.filter(e => e.event === GAP_EVENT), [], `${what}: no gap`)
    s.close()
  }
})

t.test('bad history parameters: 400 SSEGW_ERR_HISTORY_INVALID', async t => {
  const { gw } = await setup(t, { HISTORY_MAX_ENTRIES: '50' })
  for (const q of ['history=0', 'history=abc', 'history=-1', 'history=1.5', 'history=', 'history=51', 'history=3&since=0', 'since=abc', 'since=', 'since=yesterday', 'history=1&history=2']) {
    const res = await getJson(`${gw.url}${QUERY}&${q}`, auth)
    t.equal(res.status, 400, `${q}: 400`)
    t.equal(res.body?.error, 'SSEGW_ERR_HISTORY_INVALID', `${q}: stable code`)
    t.type(res.body?.message, 'string', `${q}: a message`)
  }
  const ok = await open(t, `${gw.url}${QUERY}&history=50`)
  t.equal(ok.status, 200, 'history=50 (the maximum): 200')
})

t.test('HISTORY_MAX_ENTRIES=0 turns history off: 400 SSEGW_ERR_HISTORY_INVALID', async t => {
  const { gw } = await setup(t, { HISTORY_MAX_ENTRIES: '0' })
  for (const q of ['history=1', 'since=0']) {
    const res = await getJson(`${gw.url}${QUERY}&${q}`, auth)
    t.equal(res.status, 400, `${q}: 400`)
    t.equal(res.body?.error, 'SSEGW_ERR_HISTORY_INVALID', `${q}: stable code`)
  }
})

/**
 * Ten entries per channel, each in its own millisecond (sequence 0): the
 * common case for a quiet channel, and the one where a start cursor "just
 * before the oldest wanted entry" names no real entry.
 */
async function quietHistory (ledger: Ledger): Promise<void> {
  for (let i = 0; i < 10; i++) {
    for (const ch of CHANNELS) {
      await ledger.write(1, { only: ch })
      await sleep(2)
    }
  }
}

/**
 * Connects with `query`, takes the id of the first event only (a client that
 * dropped right then), resumes from it and checks the rest arrives with no
 * gap event: nothing was lost.
 */
async function resumeFromFirstHistoryEvent (t: Test, gw: TestGateway, query: string, rest: Map<string, string[]>): Promise<void> {
  const s = await open(t, `${gw.url}${QUERY}&${query}`)
  await s.until(x => dataEvents(x).length >= 1, 10000, 'the first history event')
  const first = dataEvents(s)[0]
  t.equal(first?.data, 'user:dave:8', `${query}: the user channel's history comes first`)
  s.close()
  await s.waitForEnd()
  const r = await open(t, gw.url + QUERY, { 'last-event-id': first?.id as string })
  t.equal(r.status, 200)
  let n = 0
  for (const list of rest.values()) n += list.length
  await r.until(x => dataEvents(x).length >= n, 10000, 'the rest of the history').catch(() => {})
  await sleep(300)
  t.same(r.events.filter(e => e.event === GAP_EVENT).map(e => e.data), [], `${query}: no gap event, nothing was lost`)
  assertExactlyOnce(t, rest, dataEvents(r), `${query}: the rest of the history`)
}

const REST = new Map([
  ['user:dave', range('user:dave', 9, 10)],
  ['topic:a', range('topic:a', 8, 10)],
  ['topic:b', range('topic:b', 8, 10)],
])

t.test('regression: an id sent during a history=N replay resumed with a false "missing" gap', async t => {
  const { gw, ledger } = await setup(t)
  await quietHistory(ledger)
  await resumeFromFirstHistoryEvent(t, gw, 'history=3', REST)
})

t.test('regression: an id sent during a since= replay resumed with a false gap', async t => {
  const { gw, ledger } = await setup(t)
  await quietHistory(ledger)
  await resumeFromFirstHistoryEvent(t, gw, `since=${msOf(ledger.ids.get('user:dave')?.[7] as string)}`, REST)
})
