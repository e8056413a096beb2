/**
 * SIGTERM on one replica: readiness goes, every open stream gets a final
 * `retry:` within the drain window, the clients resume on the other replica
 * with nothing lost, and the process exits 0.
 */
import t from 'tap'
import { spawnGateway } from '../helpers/process.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { RawStream, getJson, openStream, sleep } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(240000)
const CLIENTS = 500

t.test('SIGTERM with 500 open clients: final retry, resume on the other replica, nothing lost, exit 0 in the window', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('drain')
  const env = { REDIS_URL: redis.url, KEY_PREFIX: prefix, DRAIN_WINDOW_MS: '3000', RETRY_MS: '500', RETRY_JITTER_MS: '500', LOG_LEVEL: 'info' }
  const a = await spawnGateway(env, { keepOutputChars: 4_000_000 })
  t.teardown(() => a.stop())
  const b = await spawnGateway(env)
  t.teardown(() => b.stop())

  const tokens = Array.from({ length: CLIENTS }, (_, i) => hsToken({ sub: `u${i}`, topics: ['news'] }))
  const first: RawStream[] = []
  for (let i = 0; i < CLIENTS; i += 50) {
    first.push(...await Promise.all(tokens.slice(i, i + 50).map(async tk => await openStream(`${a.url}/events?topic=news`, { authorization: `Bearer ${tk}` }))))
  }
  t.teardown(() => { for (const s of first) s.close() })
  t.ok(first.every(s => s.status === 200), 'all connected to replica A')

  // A producer writes throughout: before, during and after the drain.
  let n = 0
  let writing = true
  const producer = (async () => {
    // eslint-disable-next-line no-unmodified-loop-condition -- set false by the test while the loop awaits
    while (writing) {
      await redis.client.xadd(`${prefix}topic:news`, '*', 'data', `e${n++}`)
      await sleep(20)
    }
  })()

  await sleep(300)
  const termAt = Date.now()
  a.kill('SIGTERM')
  await sleep(200)
  t.equal((await getJson(`${a.internalUrl}/readyz`)).status, 503, 'A leaves readiness at once')

  // Each client reconnects to B with its Last-Event-ID when its stream ends.
  const second: Array<RawStream | undefined> = new Array(CLIENTS)
  await Promise.all(first.map(async (s, i) => {
    await s.waitForEnd(20000)
    second[i] = await openStream(`${b.url}/events?topic=news`, { authorization: `Bearer ${tokens[i] as string}`, 'last-event-id': s.lastId ?? '' })
  }))
  t.teardown(() => { for (const s of second) s?.close() })
  const exit = await a.exited
  const exitMs = Date.now() - termAt
  t.equal(exit, 0, 'A exits 0')
  t.ok(exitMs < 3000 + 5000, `A exits within the drain window plus a margin (${exitMs} ms)`)
  t.ok(first.every(s => s.retry !== undefined && s.retry >= 500), 'every client got a retry: (first frame and final frame)')

  await sleep(300)
  writing = false
  await producer
  const total = n
  for (let i = 0; i < CLIENTS; i++) {
    const s2 = second[i] as RawStream
    await s2.until(s => s.events.some(e => e.data === `e${total - 1}`), 30000, `client ${i} to reach e${total - 1}`)
  }
  let perfect = 0
  for (let i = 0; i < CLIENTS; i++) {
    const s1 = first[i] as RawStream
    const s2 = second[i] as RawStream
    const got = [...s1.events, ...s2.events].map(e => e.data)
    const start = Number((got[0] ?? 'e0').slice(1))
    const want = Array.from({ length: total - start }, (_, k) => `e${start + k}`)
    if (JSON.stringify(got) === JSON.stringify(want)) perfect++
    else t.fail(`client ${i}: ${got.length} events, want ${want.length} from e${start}`)
  }
  t.equal(perfect, CLIENTS, 'every client has every event once, in order, across the two replicas')
  const closes = a.output().split('\n').filter(l => l.includes('"session closed"') && l.includes('"reason":"shutdown"')).length
  t.equal(closes, CLIENTS, 'A logged each session closing with reason shutdown')
})

t.test('a second signal during the drain exits at once', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const gw = await spawnGateway({ REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('drain2'), DRAIN_WINDOW_MS: '60000', LOG_LEVEL: 'info' })
  t.teardown(() => gw.stop())
  const s = await openStream(`${gw.url}/events`, { authorization: `Bearer ${hsToken({ sub: 'x' })}` })
  t.teardown(() => s.close())
  gw.kill('SIGTERM')
  await sleep(300)
  t.equal((await getJson(`${gw.internalUrl}/readyz`)).status, 503, 'the first signal starts a 60 s drain')
  const at = Date.now()
  gw.kill('SIGTERM')
  const code = await gw.exited
  t.equal(code, 1, 'the second signal exits with status 1')
  t.ok(Date.now() - at < 5000, `without waiting for the drain window (${Date.now() - at} ms)`)
  t.match(gw.output(), /second signal: exiting now/)
})
