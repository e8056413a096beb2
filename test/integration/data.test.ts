/**
 * What producers write is what clients read: every kind of text arrives
 * exactly (line breaks normalised to LF, as SSE defines), and entries that
 * break the producer contract never reach a client, are counted and logged
 * once per stream, and do not stop the stream.
 */
import t from 'tap'
import { eventually, scrapeMetric, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

const MAX_EVENT_BYTES = 150000

async function setup (t: TestContext, topics: string[]): Promise<{ gw: TestGateway, prefix: string, s: RawStream }> {
  const prefix = uniquePrefix('data')
  // A roomy socket budget: these streams must be delivered live, never paused
  // into a catch-up (which would read the skipped entries a second time).
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, MAX_EVENT_BYTES: String(MAX_EVENT_BYTES), SLOW_CLIENT_BUFFER_BYTES: String(8 * 1024 * 1024) })
  t.teardown(() => gw.close())
  // No `sub`: the topics are the only channels (one topic: ids are plain entry ids).
  const token = hsToken({ topics: ['*'] })
  const s = await openStream(`${gw.url}/events?${topics.map(x => `topic=${x}`).join('&')}`, { authorization: `Bearer ${token}` })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200, 'stream open')
  return { gw, prefix, s }
}

/** SSE turns CR, LF and CRLF alike into one LF; nothing else changes. */
const asReceived = (data: string): string => data.replace(/\r\n|\r/g, '\n')

function bigPayload (): string {
  const pieces = ['abc', ' ', 'é', '😀', 'ש', '\r\n', 'x'.repeat(50), '\n', '  lead', '\r', 'data: no', 'id: 1']
  let s = ''
  let i = 0
  while (Buffer.byteLength(s) < 100 * 1024) s += pieces[(i++ * 7) % pieces.length] as string
  return s
}

const CASES: Array<[string, string]> = [
  ['LF', 'first\nsecond'],
  ['CR', 'first\rsecond'],
  ['CRLF', 'first\r\nsecond'],
  ['mixed breaks', '1\r2\n3\r\n4\n\r5\r\r6\n\n7'],
  ['trailing LF', 'ends with a break\n'],
  ['trailing CR', 'ends with a CR\r'],
  ['leading CRLF', '\r\nstarts with a break'],
  ['only a CRLF', '\r\n'],
  ['empty string', ''],
  ['astral', '😀 🇫🇷 𝄞 𠜎 👩‍👩‍👧'],
  ['combining', 'e\u0301 n\u0303 Z\u0351\u0362 a\u0308\u0304'],
  ['RTL', 'שלום עולם مرحبا \u202Ereversed\u202C \u200Fmark'],
  ['leading spaces', '   three spaces'],
  ['one leading space', ' one'],
  ['leading space on every line', ' a\r\n  b\r   c\n    d'],
  ['tab and NUL inside', '\tx\u0000y'],
  ['looks like fields', 'id: x\nevent: y\nretry: 10\n: a comment\ndata: z\n\nafter a blank line'],
  ['starts with a colon', ':not a comment'],
  ['JSON', JSON.stringify({ a: 'line\nbreak', b: [1, 2], c: '\u2028\u2029' })],
  ['100 KB', bigPayload()],
]

t.test('data arrives exactly, line by line, whatever it holds', async t => {
  const { prefix, s } = await setup(t, ['text'])
  const key = `${prefix}topic:text`
  const ids: string[] = []
  for (const [, data] of CASES) ids.push(await redis.client.xadd(key, '*', 'data', data) as string)
  // An event name is relayed too, unchanged.
  ids.push(await redis.client.xadd(key, '*', 'event', 'order.créée 😀', 'data', 'named') as string)
  const events = await s.waitForEvents(CASES.length + 1)
  t.equal(events.length, CASES.length + 1, 'one event per entry, nothing more')
  CASES.forEach(([name, data], i) => {
    const got = events[i]
    const want = asReceived(data)
    t.same(got?.data.split('\n'), want.split('\n'), `${name}: same lines`)
    t.equal(got?.data, want, `${name}: same text`)
    t.equal(got?.event, 'message', `${name}: no event name`)
    t.equal(got?.id, ids[i], `${name}: id is the entry id`)
  })
  const named = events[CASES.length]
  t.equal(named?.event, 'order.créée 😀')
  t.equal(named?.data, 'named')
  t.equal(named?.id, ids[CASES.length])
})

t.test('entries that break the contract are skipped, counted and logged once per stream; the stream goes on', async t => {
  const { gw, prefix, s } = await setup(t, ['skips', 'skips2'])
  const key = `${prefix}topic:skips`
  const key2 = `${prefix}topic:skips2`
  const add = async (k: string, ...fields: string[]): Promise<void> => { await redis.client.xadd(k, '*', ...fields) }
  const atMax = 'é'.repeat(MAX_EVENT_BYTES / 2) // exactly MAX_EVENT_BYTES in UTF-8
  await add(key, 'data', 'v1')
  await add(key, 'text', 'no data field here')
  await add(key, 'data', 'v2')
  await add(key, 'event', 'bad\r\nname', 'data', 'forged by CRLF')
  await add(key, 'event', 'bad\nname', 'data', 'forged by LF')
  await add(key, 'data', 'v3')
  await add(key, 'event', 'bad\rname', 'data', 'forged by CR')
  await add(key, 'event', 'gateway.token-expired', 'data', '{"reason":"token-expired"}')
  await add(key, 'event', 'gateway.gap', 'data', '{}')
  await add(key, 'data', 'v4')
  await add(key, 'data', atMax + 'a') // one byte over, though fewer characters than the limit
  await add(key, 'data', 'x'.repeat(MAX_EVENT_BYTES * 2))
  await add(key, 'data', atMax)
  await add(key, 'event', 'bad\u0000name', 'data', 'NUL in the name')
  await add(key, 'data', 'v5')
  await add(key2, 'data', 'w1')
  await add(key2, 'other', 'no data')
  await add(key2, 'data', 'w2')

  await s.waitForEvents(8)
  // A last valid entry on each stream, to be sure nothing else is on its way.
  await add(key, 'data', 'v-last')
  await add(key2, 'data', 'w-last')
  await s.until(x => x.events.some(e => e.data === 'v-last') && x.events.some(e => e.data === 'w-last'), 20000, 'last entries')
  const first = s.events.filter(e => e.data !== 'w1' && e.data !== 'w2' && e.data !== 'w-last').map(e => e.data === atMax ? '<at max>' : e.data)
  t.same(first, ['v1', 'v2', 'v3', 'v4', '<at max>', 'v5', 'v-last'], 'only valid entries of the first stream, in order')
  t.same(s.events.filter(e => e.data.startsWith('w')).map(e => e.data), ['w1', 'w2', 'w-last'], 'only valid entries of the second stream, in order')
  t.notOk(s.events.some(e => e.event.startsWith('gateway.')), 'no forged control event')
  t.ok(s.events.every(e => e.event === 'message'), 'no forged event name')
  t.notOk(s.ended, 'the stream is still open')

  const skipped = async (reason: string): Promise<number> => await scrapeMetric(gw.internalUrl, 'sse_gateway_entries_skipped_total', { reason })
  await eventually(async () => await skipped('no-data') === 2, 5000, 'no-data count')
  t.equal(await skipped('no-data'), 2, 'no-data counted')
  t.equal(await skipped('bad-event-name'), 6, 'bad-event-name counted (CRLF, LF, CR, NUL, two gateway.*)')
  t.equal(await skipped('too-large'), 2, 'too-large counted')

  const warnings = gw.logs.map(l => JSON.parse(l) as Record<string, unknown>)
    .filter(l => typeof l.msg === 'string' && l.msg.startsWith('skipped a stream entry'))
  t.equal(warnings.filter(w => w.key === key).length, 1, 'one warning for the first stream')
  t.equal(warnings.filter(w => w.key === key2).length, 1, 'one warning for the second stream')
  t.ok(warnings.every(w => w.level === 40), 'at warn level')
  t.equal(warnings.length, 2, 'no other warnings')
  for (const line of gw.logs) {
    t.notOk(line.includes('forged by'), 'entry payloads are not logged')
    if (line.includes('forged by')) break
  }
})

t.test('a skipped entry is counted once, not again by every client that replays it', async t => {
  const { gw, prefix, s } = await setup(t, ['replayed'])
  const key = `${prefix}topic:replayed`
  const token = hsToken({ topics: ['*'] })
  const before = await redis.client.xadd(key, '*', 'data', 'v0') as string
  await redis.client.xadd(key, '*', 'no', 'data')
  await redis.client.xadd(key, '*', 'data', 'v1')
  await s.until(x => x.events.some(e => e.data === 'v1'), 20000, 'v1 live')
  const skipped = async (): Promise<number> => await scrapeMetric(gw.internalUrl, 'sse_gateway_entries_skipped_total', { reason: 'no-data' })
  t.equal(await skipped(), 1, 'counted once when read live')
  // Three clients resume from before the bad entry: they replay it from Redis.
  for (let i = 0; i < 3; i++) {
    const r = await openStream(`${gw.url}/events?topic=replayed`, { authorization: `Bearer ${token}`, 'last-event-id': before })
    await r.until(x => x.events.some(e => e.data === 'v1'), 20000, 'v1 replayed')
    t.same(r.events.map(e => e.data), ['v1'], `resume ${i + 1}: the bad entry is skipped on replay too`)
    r.close()
  }
  t.equal(await skipped(), 1, 'still one entry skipped, however many clients replayed it')
})
