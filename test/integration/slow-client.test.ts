/**
 * Slow clients (issue 3, "must show" 6). Redis is the buffer: a client that
 * stops reading while 20,000 events of 1 KB are published costs the gateway
 * process a small multiple of SLOW_CLIENT_BUFFER_BYTES, not the 20 MB (the
 * issue's target, under twice the cap, is a TODO below), another client of
 * the same topic gets all 20,000 meanwhile, and the slow one, reading again,
 * catches up from Redis: all 20,000, in order, once. A client stuck longer
 * than SLOW_CLIENT_TIMEOUT_MS is disconnected and resumes from its last id
 * with nothing lost.
 *
 * The memory is the gateway's own: it runs as a separate process, and what it
 * holds is read after a full garbage collection in that process (a preloaded
 * probe, see test/helpers/memory-probe.mjs): VmRSS from /proc, and V8's heap
 * and external (Buffer) figures. Kernel socket buffers (several MB on
 * loopback) hold data too, outside any process's RSS.
 */
import t from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { Ledger, assertExactlyOnce, dataEvents, metric } from '../helpers/ledger.js'
import { spawnGateway, type MemoryProbe } from '../helpers/process.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(170000)

const redis = await startRedis()
t.teardown(() => redis.stop())

const MIB = 1024 * 1024
// Large enough that allocator noise in RSS (a few MiB either way) cannot pass for held data.
const BUFFER_BYTES = 4 * MIB
const EVENTS = 20000
const PAD = 1000 // payload ~1 KB: `topic:slow:<n>#` + 1,000 bytes
// One channel (no sub): ids are bare entry ids.
const auth = { authorization: `Bearer ${hsToken({ topics: ['slow'] })}` }

async function waitCount (s: RawStream, n: number, what: string, timeoutMs = 90000): Promise<void> {
  await s.until(x => x.events.length >= n, timeoutMs, what)
}

/** The entries of `channel` from the `from`-th on (1-based), as `assertExactlyOnce` expects them. */
function from (ledger: Ledger, channel: string, first: number): Map<string, string[]> {
  return new Map([[channel, (ledger.written.get(channel) as string[]).slice(first - 1)]])
}

/**
 * Memory after a full GC once VmRSS has settled. After a burst, the pages
 * of its garbage go back to the kernel over a second or more (slower on a
 * busy machine: one sample half a second after a burst read up to 9 MiB
 * high with nothing held, in the build before and after alike), so a
 * sample is taken every 400 ms until VmRSS stops falling (two in a row
 * within 0.25 MiB), at most 8 times.
 */
async function settledMemory (gw: { probeMemory: () => Promise<MemoryProbe> }): Promise<MemoryProbe> {
  await sleep(500)
  let last = await gw.probeMemory()
  for (let i = 0; i < 7; i++) {
    await sleep(400)
    const next = await gw.probeMemory()
    const settled = next.vmRss > last.vmRss - MIB / 4
    if (next.vmRss < last.vmRss) last = next
    if (settled) break
  }
  return last
}

t.test('a client that stops reading costs no memory; the other client is not held back; reading again, it gets all 20,000 in order', async t => {
  const prefix = uniquePrefix('slow')
  const gw = await spawnGateway({
    REDIS_URL: redis.url,
    KEY_PREFIX: prefix,
    SLOW_CLIENT_BUFFER_BYTES: String(BUFFER_BYTES),
    SLOW_CLIENT_TIMEOUT_MS: '600000',
  }, {
    memoryProbe: true,
    // Measurement only: V8 resizes its young generation (1 to 16 MiB per
    // semi-space) with the allocation rate, which moved VmRSS after a full GC
    // by up to 4 MiB either way in runs with no slow client at all, enough to
    // swamp a 2 MiB bound. Pinned, the same runs vary by under 0.6 MiB. What
    // the gateway retains does not depend on it.
    nodeArgs: ['--min-semi-space-size=1', '--max-semi-space-size=1'],
  })
  t.teardown(() => gw.stop())
  const ledger = new Ledger(redis.client, prefix, ['topic:slow'])
  const url = `${gw.url}/events?topic=slow`
  const fast = await openStream(url, auth)
  t.teardown(() => { fast.close() })
  t.equal(fast.status, 200)

  // Warm-up with the same traffic, two readers: the process's heap, pools and
  // compiled code reach their working size. The baseline is taken the same
  // way as the measurements that follow (after a burst of 20,000, once VmRSS
  // has settled: see settledMemory).
  const companion = await openStream(url, auth)
  for (let round = 1; round <= 2; round++) {
    await ledger.write(EVENTS, { pad: PAD, pipeline: 500 })
    await waitCount(fast, round * EVENTS, 'warm-up, fast client')
    await waitCount(companion, round * EVENTS, 'warm-up, second client')
  }
  const before = await settledMemory(gw)
  const rssBefore = gw.rss()
  let peak = rssBefore
  companion.close()
  let fastCount = 2 * EVENTS

  // A fresh connection for the slow client: one that had been reading fast
  // would have a kernel receive buffer grown to tens of MB by TCP autotuning,
  // and the gateway would see no back-pressure at all.
  const slow = await openStream(url, auth)
  t.teardown(() => { slow.close() })
  t.equal(slow.status, 200)
  const firstOfSlow = ledger.total + 1
  await ledger.write(10, { pad: PAD })
  fastCount += 10
  await waitCount(slow, 10, 'the slow client\'s first events')
  await waitCount(fast, fastCount, 'fast client')
  const pausesBefore = await metric(gw.internalUrl, 'sse_gateway_slow_client_pauses_total')
  const replayBefore = await metric(gw.internalUrl, 'sse_gateway_events_delivered_total', { source: 'replay' })

  slow.pause()
  const sampler = setInterval(() => { try { peak = Math.max(peak, gw.rss()) } catch {} }, 10)
  const started = Date.now()
  const firstOfBurst = ledger.total + 1
  await ledger.write(EVENTS, { pad: PAD, pipeline: 500 })
  fastCount += EVENTS
  await waitCount(fast, fastCount, 'the fast client, while the slow one is stuck')
  const fastMs = Date.now() - started
  clearInterval(sampler)
  const stuck = await settledMemory(gw)
  const slowSeen = slow.events.length - 10

  t.ok(slowSeen < EVENTS, `the slow client had read ${slowSeen} of the ${EVENTS} when the fast one had them all`)
  assertExactlyOnce(t, from(ledger, 'topic:slow', firstOfBurst), dataEvents(fast).slice(fastCount - EVENTS), 'fast client, the 20,000')
  t.ok(await metric(gw.internalUrl, 'sse_gateway_slow_client_pauses_total') > pausesBefore, 'sse_gateway_slow_client_pauses_total counted the pause')

  const mib = (n: number): string => (n / MIB).toFixed(2)
  const rssGrowth = stuck.vmRss - before.vmRss
  const dataHeld = stuck.external - before.external
  const heapHeld = stuck.heapUsed - before.heapUsed
  t.comment(`gateway memory with one client stuck (SLOW_CLIENT_BUFFER_BYTES = ${mib(BUFFER_BYTES)} MiB; ${EVENTS} x ~1 KB = ${mib(EVENTS * (PAD + 20))} MiB published):`)
  t.comment(`  VmRSS after a full GC, settled after a burst of ${EVENTS}: ${mib(before.vmRss)} MiB with two clients reading, ${mib(stuck.vmRss)} MiB with one reading and one stuck (${rssGrowth >= 0 ? '+' : ''}${mib(rssGrowth)}); peak VmRSS sampled during the burst: +${mib(peak - rssBefore)} MiB (garbage of the fast path included)`)
  t.comment(`  held after a full GC: event data (external) +${mib(dataHeld)} MiB, JS heap +${mib(heapHeld)} MiB, together +${mib(dataHeld + heapHeld)} MiB`)
  t.comment(`  the fast client had all ${EVENTS} in ${fastMs} ms`)
  // The target: less than twice the cap. What the gateway holds is
  // the cap of payload plus at most one tick's writes (one XREAD batch); a
  // session sends everything queued in one tick as one write, so the socket's
  // write queue holds payload, not per-event bookkeeping.
  t.ok(dataHeld < 2 * BUFFER_BYTES, `event data held for the stuck client: ${mib(dataHeld)} MiB, less than 2 x SLOW_CLIENT_BUFFER_BYTES, not the ${mib(EVENTS * PAD)} MiB published`)
  t.ok(rssGrowth < 2 * BUFFER_BYTES, `gateway RSS grew by ${mib(rssGrowth)} MiB: less than 2 x SLOW_CLIENT_BUFFER_BYTES`)
  t.ok(dataHeld + heapHeld < 2 * BUFFER_BYTES, `all memory held for it: ${mib(dataHeld + heapHeld)} MiB, less than 2 x SLOW_CLIENT_BUFFER_BYTES`)

  // Bounded, not proportional: 20,000 more while it is still stuck add nothing.
  await ledger.write(EVENTS, { pad: PAD, pipeline: 500 })
  fastCount += EVENTS
  await waitCount(fast, fastCount, 'the fast client, second burst')
  const stuck2 = await settledMemory(gw)
  const more = (stuck2.external + stuck2.heapUsed) - (stuck.external + stuck.heapUsed)
  t.comment(`  after 20,000 more: held ${more >= 0 ? '+' : ''}${mib(more)} MiB, VmRSS after GC ${mib(stuck2.vmRss)} MiB`)
  t.ok(more < BUFFER_BYTES / 2, `20,000 more events while it is stuck: memory held for it changes by ${mib(more)} MiB`)
  t.ok(stuck2.vmRss - before.vmRss < 3 * BUFFER_BYTES, `gateway RSS still within 3 x SLOW_CLIENT_BUFFER_BYTES of where it was (${mib(stuck2.vmRss - before.vmRss)} MiB)`)

  slow.resume()
  await waitCount(slow, 10 + 2 * EVENTS, 'the slow client, reading again')
  await sleep(300)
  assertExactlyOnce(t, from(ledger, 'topic:slow', firstOfSlow), dataEvents(slow), 'slow client')
  t.ok(await metric(gw.internalUrl, 'sse_gateway_events_delivered_total', { source: 'replay' }) > replayBefore, 'it caught up from Redis (events delivered with source="replay")')
  t.equal(await metric(gw.internalUrl, 'sse_gateway_slow_client_closes_total'), 0, 'it was not disconnected')
  t.notOk(slow.ended, 'its stream is still open')

  // Live again: one more event reaches both.
  await ledger.write(1)
  await waitCount(slow, 10 + 2 * EVENTS + 1, 'live after the catch-up')
  await waitCount(fast, fastCount + 1, 'live, fast client')
  assertExactlyOnce(t, from(ledger, 'topic:slow', firstOfSlow), dataEvents(slow), 'slow client, then live')
})

t.test('a client stuck past SLOW_CLIENT_TIMEOUT_MS is disconnected, and resumes from its last id with nothing lost', async t => {
  const prefix = uniquePrefix('slow')
  const gw = await startGateway({
    REDIS_URL: redis.url,
    KEY_PREFIX: prefix,
    SLOW_CLIENT_BUFFER_BYTES: '65536',
    SLOW_CLIENT_TIMEOUT_MS: '2000',
  })
  t.teardown(() => gw.close())
  const ledger = new Ledger(redis.client, prefix, ['topic:slow'])
  const url = `${gw.url}/events?topic=slow`
  const stuck = await openStream(url, auth)
  t.teardown(() => { stuck.close() })
  await ledger.write(10)
  await waitCount(stuck, 10, 'the first events')

  stuck.pause()
  // Far more than loopback socket buffers hold, so the gateway sees it stuck.
  await ledger.write(EVENTS, { pad: PAD, pipeline: 500 })
  const m = async (name: string, labels?: Record<string, string>): Promise<number> => await metric(gw.internalUrl, name, labels)
  const deadline = Date.now() + 30000
  while (await m('sse_gateway_slow_client_closes_total') < 1 && Date.now() < deadline) await sleep(100)
  t.equal(await m('sse_gateway_slow_client_closes_total'), 1, 'sse_gateway_slow_client_closes_total')
  t.equal(await m('sse_gateway_connections_closed_total', { reason: 'slow-client' }), 1, 'sse_gateway_connections_closed_total{reason="slow-client"}')
  t.ok(gw.logs.some(l => l.includes('closing a client that stopped reading')), 'logged')

  // Reading again, the client drains what the kernel held, then sees the end.
  stuck.resume()
  await stuck.waitForEnd(30000)
  const got = stuck.events.length
  t.ok(got < 10 + EVENTS, `it had ${got - 10} of the ${EVENTS} when it was cut`)
  const lastId = stuck.lastId as string

  const again = await openStream(url, { ...auth, 'last-event-id': lastId })
  t.teardown(() => { again.close() })
  t.equal(again.status, 200)
  await waitCount(again, 10 + EVENTS - got, 'the rest, after reconnecting')
  await sleep(300)
  t.same(again.events.filter(e => e.event.startsWith('gateway.')), [], 'no gap: Redis held everything')
  assertExactlyOnce(t, ledger.written, dataEvents(stuck, again), 'before and after the disconnect')
})
