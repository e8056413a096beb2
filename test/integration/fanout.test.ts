/**
 * Fan-out: 1,000 clients on one topic each receive every one of 1,000 events,
 * in order, exactly once. No timing assertions: only completeness and order.
 */
import t from 'tap'
import { openMany } from '../helpers/extra.js'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import type { RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const CLIENTS = 1000
const EVENTS = 1000

const redis = await startRedis()
t.teardown(() => redis.stop())

/** Why `s` did not get exactly `ids` with data `e<n>` in order, or undefined if it did. */
function problem (s: RawStream, ids: string[]): string | undefined {
  if (s.status !== 200) return `status ${s.status}`
  if (s.events.length !== ids.length) return `${s.events.length} events, expected ${ids.length}`
  const seen = new Set<string>()
  for (let i = 0; i < ids.length; i++) {
    const e = s.events[i]
    if (e === undefined) return `event ${i} missing`
    if (e.id !== undefined && seen.has(e.id)) return `duplicate id ${e.id} at ${i}`
    if (e.id !== undefined) seen.add(e.id)
    if (e.data !== `e${i}` || e.id !== ids[i] || e.event !== 'tick') {
      return `event ${i} is ${JSON.stringify(e)}, expected e${i} with id ${String(ids[i])}`
    }
  }
  return undefined
}

t.test(`${CLIENTS} clients on one topic each receive all ${EVENTS} events, in order, once`, async t => {
  t.setTimeout(120000)
  const prefix = uniquePrefix('fan')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  const key = `${prefix}topic:ticks`
  const token = hsToken({ topics: ['ticks'] })
  const url = `${gw.url}/events?topic=ticks`

  const streams = await openMany(CLIENTS, 100, () => ({ url, headers: { authorization: `Bearer ${token}` } }))
  t.teardown(() => { for (const s of streams) s.close() })
  t.equal(streams.filter(s => s.status === 200).length, CLIENTS, 'every client got a 200 stream')
  t.equal(gw.gateway.sessions.size, CLIENTS, 'every session is registered')
  t.equal(gw.gateway.hub.size, 1, 'one key read for all of them')

  const ids: string[] = []
  for (let start = 0; start < EVENTS; start += 100) {
    const p = redis.client.pipeline()
    for (let i = start; i < Math.min(EVENTS, start + 100); i++) p.xadd(key, '*', 'event', 'tick', 'data', `e${i}`)
    const replies = await p.exec()
    for (const [err, id] of replies ?? []) {
      if (err !== null) throw err
      ids.push(id as string)
    }
  }
  t.equal(ids.length, EVENTS, 'all events written')

  for (const s of streams) await s.until(x => x.events.length >= EVENTS || x.ended, 90000, `${EVENTS} events`)
  const problems = streams.map(s => problem(s, ids)).filter((p): p is string => p !== undefined)
  t.equal(problems.length, 0, `every client has all events in order, no duplicates${problems.length > 0 ? `; first problem: ${String(problems[0])}` : ''}`)
  t.equal(streams.filter(s => s.ended).length, 0, 'no stream ended')
  t.equal(streams.reduce((n, s) => n + s.events.length, 0), CLIENTS * EVENTS, `${CLIENTS * EVENTS} deliveries in all`)
})
