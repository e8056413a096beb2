/**
 * The handover from catch-up to live delivery under a reconnect storm: 20
 * clients (each its user channel and two shared topics) drop, a backlog
 * builds, and all 20 resume at once while a producer keeps writing, on a
 * gateway that allows only 2 concurrent catch-up reads of 7 entries each.
 * Every client ends with every event of its channels exactly once, in
 * per-channel order.
 */
import t from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { GAP_EVENT, Ledger, assertExactlyOnce, dataEvents, metric } from '../helpers/ledger.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(170000)

const redis = await startRedis()
t.teardown(() => redis.stop())

const CLIENTS = 20

t.test('20 clients resume at once with MAX_CONCURRENT_CATCHUPS=2 and CATCHUP_PAGE_SIZE=7 while a producer writes: all get everything once, in order', async t => {
  const prefix = uniquePrefix('storm')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, MAX_CONCURRENT_CATCHUPS: '2', CATCHUP_PAGE_SIZE: '7', LOG_LEVEL: 'warn' })
  t.teardown(() => gw.close())
  const users = Array.from({ length: CLIENTS }, (_, i) => `u${i}`)
  const ledger = new Ledger(redis.client, prefix, [...users.map(u => `user:${u}`), 'topic:a', 'topic:b'])
  const url = `${gw.url}/events?topic=a&topic=b`
  const headers = (u: string): Record<string, string> => ({ authorization: `Bearer ${hsToken({ sub: u, topics: ['a', 'b'] })}` })
  const channelsOf = (u: string): string[] => [`user:${u}`, 'topic:a', 'topic:b']
  const expectedFor = (u: string): Map<string, string[]> => new Map(channelsOf(u).map(ch => [ch, ledger.written.get(ch) as string[]]))
  const countFor = (u: string): number => channelsOf(u).reduce((n, ch) => n + (ledger.written.get(ch) as string[]).length, 0)

  const first = await Promise.all(users.map(async u => await openStream(url, headers(u))))
  t.teardown(() => { for (const s of first) s.close() })
  for (const ch of ledger.channels) await ledger.write(5, { only: ch })
  await Promise.all(first.map(async (s, i) => { await s.waitForEvents(countFor(users[i] as string), 30000) }))
  const ids = first.map(s => s.lastId as string)
  for (const s of first) s.close()
  await Promise.all(first.map(async s => { await s.waitForEnd() }))

  await ledger.write(5000)
  const backlog = users.map(u => countFor(u))
  const writer = ledger.startWriter(22, 2)
  const second: RawStream[] = await Promise.all(users.map(async (u, i) => await openStream(url, { ...headers(u), 'last-event-id': ids[i] as string })))
  t.teardown(() => { for (const s of second) s.close() })
  t.ok(second.every(s => s.status === 200), 'all 20 resumed with 200')
  // Let the producer run through the storm and for a while after it.
  await Promise.all(second.map(async (s, i) => {
    await s.until(x => dataEvents(first[i] as RawStream, x).length >= (backlog[i] as number), 90000, 'the backlog')
  }))
  await sleep(500)
  const rounds = await writer.stop()
  t.comment(`producer wrote ${rounds} rounds of 22 during the storm; ${ledger.total} events in all`)

  for (let i = 0; i < CLIENTS; i++) {
    const u = users[i] as string
    const s = second[i] as RawStream
    const want = countFor(u) - dataEvents(first[i] as RawStream).length
    await s.until(x => dataEvents(x).length >= want, 60000, `client ${u}`).catch(() => {})
  }
  await sleep(300)
  let allOk = true
  for (let i = 0; i < CLIENTS; i++) {
    const u = users[i] as string
    const s = second[i] as RawStream
    t.same(s.events.filter(e => e.event === GAP_EVENT), [], `${u}: no gap`)
    allOk = assertExactlyOnce(t, expectedFor(u), dataEvents(first[i] as RawStream, s), u) && allOk
  }
  t.ok(allOk, 'every client got every event of its channels once, in order')
  t.ok(await metric(gw.internalUrl, 'sse_gateway_events_delivered_total', { source: 'replay' }) > 0, 'the backlog went through catch-up reads')
})
