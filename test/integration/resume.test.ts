/**
 * Resume with Last-Event-ID (issue 3, "must show" 1 to 3): a client on its
 * user channel and three topics drops, 5,000 events are written across the
 * four channels, and it reconnects with the id it last saw: it gets exactly
 * what it missed, in per-channel order, once. The same while producers keep
 * writing during the catch-up, and the same when the reconnect lands on a
 * second gateway process.
 */
import t, { type Test } from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { GAP_EVENT, Ledger, assertExactlyOnce, controlEvents, dataEvents, metric, remaining } from '../helpers/ledger.js'
import { spawnGateway } from '../helpers/process.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(170000)

const redis = await startRedis()
t.teardown(() => redis.stop())

const CHANNELS = ['user:alice', 'topic:a', 'topic:b', 'topic:c']
const QUERY = '/events?topic=a&topic=b&topic=c'
const token = hsToken({ sub: 'alice', topics: ['a', 'b', 'c'] })
const auth = { authorization: `Bearer ${token}` }

/** Waits until `s` holds at least `n` events; false (not a throw) on timeout, so the comparison still reports. */
async function waitForCount (s: RawStream, n: number, timeoutMs = 60000): Promise<boolean> {
  try {
    await s.until(x => x.events.length >= n, timeoutMs, `${n} events`)
    // Let anything extra (a duplicate) arrive before the books are checked.
    await sleep(300)
    return true
  } catch {
    return false
  }
}

/** Connects, writes a few events on every channel and waits for them: the client now holds a real cursor. */
async function connectAndWarmUp (t: Test, url: string, ledger: Ledger): Promise<RawStream> {
  const s = await openStream(url + QUERY, auth)
  t.teardown(() => { s.close() })
  t.equal(s.status, 200, 'first connection: 200')
  for (const ch of CHANNELS) await ledger.write(10, { only: ch })
  t.ok(await waitForCount(s, 40), 'first connection: the warm-up events arrive')
  return s
}

t.test('reconnect with Last-Event-ID after 5,000 events on 4 channels: exactly the missed ones, in order, once', async t => {
  const prefix = uniquePrefix('resume')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  const ledger = new Ledger(redis.client, prefix, CHANNELS)

  const first = await connectAndWarmUp(t, gw.url, ledger)
  const lastId = first.lastId
  t.type(lastId, 'string', 'the client holds an id')
  t.match(lastId, /^1(\.[0-9a-z_]+){4}$/, 'a multi-channel cursor holding four positions')
  first.close()
  await first.waitForEnd()

  await ledger.write(5000)
  const missed = remaining(ledger.written, dataEvents(first))
  let count = 0
  for (const list of missed.values()) count += list.length
  t.equal(count, 5000, 'the client missed 5,000 events')

  const second = await openStream(gw.url + QUERY, { ...auth, 'last-event-id': lastId as string })
  t.teardown(() => { second.close() })
  t.equal(second.status, 200, 'resume: 200')
  await waitForCount(second, 5000)
  assertExactlyOnce(t, missed, dataEvents(second), 'resumed connection')
  t.same(controlEvents(second, GAP_EVENT), [], 'no gap event: nothing was lost')
  assertExactlyOnce(t, ledger.written, dataEvents(first, second), 'both connections together')

  // The resumed stream is live again afterwards.
  await ledger.write(40)
  await waitForCount(second, 5040)
  assertExactlyOnce(t, remaining(ledger.written, dataEvents(first)), dataEvents(second), 'resumed connection, then live')
  t.ok(await metric(gw.internalUrl, 'sse_gateway_events_delivered_total', { source: 'replay' }) >= 5000, 'the backlog was counted as replay')
})

t.test('reconnect while producers keep writing during the catch-up: every event once, in order', async t => {
  const prefix = uniquePrefix('resume')
  // Small pages: the catch-up takes many round-trips, so the writer interleaves with it.
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, CATCHUP_PAGE_SIZE: '50' })
  t.teardown(() => gw.close())
  const ledger = new Ledger(redis.client, prefix, CHANNELS)

  // Another client stays connected all along: the hub keeps reading these
  // keys live, so the resumed session's catch-up races real live batches.
  const observer = await openStream(gw.url + QUERY, auth)
  t.teardown(() => { observer.close() })
  const first = await connectAndWarmUp(t, gw.url, ledger)
  const lastId = first.lastId as string
  first.close()
  await first.waitForEnd()

  await ledger.write(5000)
  const writer = ledger.startWriter(20, 2)
  const second = await openStream(gw.url + QUERY, { ...auth, 'last-event-id': lastId })
  t.teardown(() => { second.close() })
  t.equal(second.status, 200, 'resume: 200')
  const roundsAtResume = writer.rounds()
  // Let the writer run through the catch-up and a while after it.
  await second.until(s => s.events.length >= 5000, 60000, 'the backlog')
  const roundsAtBacklog = writer.rounds()
  await sleep(500)
  const rounds = await writer.stop()
  t.comment(`writer: ${roundsAtBacklog - roundsAtResume} rounds of 20 during the catch-up, ${rounds} in all`)
  t.ok(rounds > roundsAtResume, 'producers wrote after the reconnect')

  const expectedSecond = remaining(ledger.written, dataEvents(first))
  let n = 0
  for (const list of expectedSecond.values()) n += list.length
  await waitForCount(second, n)
  assertExactlyOnce(t, expectedSecond, dataEvents(second), 'resumed connection')
  t.same(controlEvents(second, GAP_EVENT), [], 'no gap event')
  assertExactlyOnce(t, ledger.written, dataEvents(first, second), 'both connections together')
  await waitForCount(observer, ledger.total)
  assertExactlyOnce(t, ledger.written, dataEvents(observer), 'the client that stayed connected')
})

t.test('reconnect to a second gateway process, and back: every event once, in order', async t => {
  const prefix = uniquePrefix('resume')
  const gwA = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, CATCHUP_PAGE_SIZE: '100' })
  t.teardown(() => gwA.close())
  const gwB = await spawnGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, CATCHUP_PAGE_SIZE: '100' })
  t.teardown(() => gwB.stop())
  t.not(gwB.pid, process.pid, 'gateway B is another process')
  const ledger = new Ledger(redis.client, prefix, CHANNELS)

  const first = await connectAndWarmUp(t, gwA.url, ledger)
  const idFromA = first.lastId as string
  first.close()
  await first.waitForEnd()

  await ledger.write(5000)
  let writer = ledger.startWriter(20, 2)
  const second = await openStream(gwB.url + QUERY, { ...auth, 'last-event-id': idFromA })
  t.teardown(() => { second.close() })
  t.equal(second.status, 200, 'resume on gateway B: 200')
  await second.until(s => s.events.length >= 5000, 60000, 'the backlog on gateway B')
  await sleep(300)
  await writer.stop()
  const expectedB = remaining(ledger.written, dataEvents(first))
  let n = 0
  for (const list of expectedB.values()) n += list.length
  await waitForCount(second, n)
  assertExactlyOnce(t, expectedB, dataEvents(second), 'resumed on gateway B')
  t.same(controlEvents(second, GAP_EVENT), [], 'no gap event on gateway B')
  t.ok(await metric(gwB.internalUrl, 'sse_gateway_events_delivered_total', { source: 'replay' }) > 0, 'gateway B replayed the backlog (its own /metrics)')

  // And back to gateway A with the id gateway B wrote.
  const idFromB = second.lastId as string
  second.close()
  await second.waitForEnd()
  await ledger.write(2000)
  writer = ledger.startWriter(20, 2)
  const third = await openStream(gwA.url + QUERY, { ...auth, 'last-event-id': idFromB })
  t.teardown(() => { third.close() })
  t.equal(third.status, 200, 'resume on gateway A: 200')
  await third.until(s => s.events.length >= 2000, 60000, 'the backlog on gateway A')
  await sleep(300)
  await writer.stop()
  const expectedA = remaining(ledger.written, dataEvents(first, second))
  n = 0
  for (const list of expectedA.values()) n += list.length
  await waitForCount(third, n)
  assertExactlyOnce(t, expectedA, dataEvents(third), 'back on gateway A')
  t.same(controlEvents(third, GAP_EVENT), [], 'no gap event on gateway A')
  assertExactlyOnce(t, ledger.written, dataEvents(first, second, third), 'A, then B, then A together')
})
