/**
 * Regression: history trimmed past a client's cursor while it was catching
 * up was a silent gap. The cursor was checked once, before the first page;
 * the next exclusive range read simply started at the new oldest entry, and
 * the client went from event 2,003 to 60,001 with no `gateway.gap`. That is
 * what a producer trimming with MAXLEN/MINID does to a client resuming from
 * near the end of retention.
 */
import t from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { GAP_EVENT, Ledger, dataEvents, parsePayload } from '../helpers/ledger.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, sleep } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(120000)

const redis = await startRedis()
t.teardown(() => redis.stop())

t.test('catch-up was a silent gap when the stream was trimmed past the cursor during it', async t => {
  const prefix = uniquePrefix('trimcu')
  // Small pages: the catch-up of 100,000 entries takes thousands of reads.
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, CATCHUP_PAGE_SIZE: '10', LOG_LEVEL: 'warn' })
  t.teardown(() => gw.close())
  const ledger = new Ledger(redis.client, prefix, ['topic:t'])
  const auth = { authorization: `Bearer ${hsToken({ topics: ['t'] })}` }
  const url = `${gw.url}/events?topic=t`

  const first = await openStream(url, auth)
  t.teardown(() => { first.close() })
  await ledger.write(3)
  await first.waitForEvents(3)
  const lastId = first.lastId as string
  first.close()
  await first.waitForEnd()
  await ledger.write(100000, { pipeline: 5000 }) // topic:t:4 .. topic:t:100003

  const s = await openStream(url, { ...auth, 'last-event-id': lastId })
  t.teardown(() => { s.close() })
  await s.until(x => x.events.length >= 2000, 60000, 'the catch-up under way')
  const ids = ledger.ids.get('topic:t') as string[]
  await redis.client.xtrim(ledger.key('topic:t'), 'MINID', ids[60000] as string) // keeps topic:t:60001 on
  const hadAtTrim = s.events.length
  t.ok(hadAtTrim < 50000, `the trim came in the middle of the catch-up (${hadAtTrim} events read)`)

  await s.until(x => x.events.some(e => e.data === 'topic:t:100003'), 60000, 'the last event')
  await sleep(300)

  // Every jump in the sequence must be announced by a gap event before it.
  let last = 3
  let announced = false
  const silent: string[] = []
  for (const e of s.events) {
    if (e.event === GAP_EVENT) {
      t.same(JSON.parse(e.data), { channels: [{ channel: 'topic:t', reason: 'trimmed' }] }, 'gap "trimmed"')
      announced = true
      continue
    }
    const n = parsePayload(e.data)?.n ?? 0
    if (n <= last) silent.push(`${last} then ${n} (out of order or repeated)`)
    else if (n !== last + 1 && !announced) silent.push(`${last} -> ${n} with no gap event`)
    announced = false
    last = n
  }
  t.same(silent, [], 'no silent jump, no repeat')
  t.equal(s.events.filter(e => e.event === GAP_EVENT).length, 1, 'one gap event')
  const got = dataEvents(s).map(e => parsePayload(e.data)?.n ?? 0)
  t.equal(got[got.length - 1], 100003, 'delivery went on to the end')
  t.ok(got.includes(60001), 'from the oldest retained entry')
})
