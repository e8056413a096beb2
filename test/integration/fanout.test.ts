/**
 * Fan-out: 1,000 clients on one topic each receive every one of 1,000 events,
 * in order, exactly once. No timing assertions: only completeness and order.
 *
 * Each client checks its events as they arrive (CheckedStream) rather than
 * keeping a million of them for the end: on a 2-core machine the garbage
 * collector would otherwise cost more than the gateway under test.
 */
import t from 'tap'
import { compareIds } from '../../src/core/stream-id.js'
import { CheckedStream, openMany } from '../helpers/extra.js'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import type { ReceivedEvent } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const CLIENTS = 1000
const EVENTS = 1000

const redis = await startRedis()
t.teardown(() => redis.stop())

/** Per client: event i must be `tick` / `e<i>`, with an id above the previous one. */
function inOrder (): { check: (e: ReceivedEvent, i: number) => string | undefined, ids: { first?: string, last?: string } } {
  const ids: { first?: string, last?: string } = {}
  const check = (e: ReceivedEvent, i: number): string | undefined => {
    if (e.id === undefined) return `event ${i} has no id`
    const previous = ids.last
    if (i === 0) ids.first = e.id
    ids.last = e.id
    if (e.event !== 'tick' || e.data !== `e${i}`) return `event ${i} is ${e.event} ${JSON.stringify(e.data)}, expected tick "e${i}"`
    if (previous !== undefined && compareIds(e.id, previous) <= 0) return `event ${i} id ${e.id} is not after ${previous}`
    return undefined
  }
  return { check, ids }
}

t.test(`${CLIENTS} clients on one topic each receive all ${EVENTS} events, in order, once`, async t => {
  t.setTimeout(120000)
  const prefix = uniquePrefix('fan')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  const key = `${prefix}topic:ticks`
  const headers = { authorization: `Bearer ${hsToken({ topics: ['ticks'] })}` }
  const url = `${gw.url}/events?topic=ticks`

  const seen: Array<{ first?: string, last?: string }> = []
  const streams = await openMany<CheckedStream>(CLIENTS, 100, () => {
    const { check, ids } = inOrder()
    seen.push(ids)
    return new CheckedStream(url, headers, check)
  })
  t.teardown(() => { for (const s of streams) s.close() })
  t.equal(streams.filter(s => s.status === 200).length, CLIENTS, 'every client got a 200 stream')
  t.equal(gw.gateway.sessions.size, CLIENTS, 'every session is registered')
  t.equal(gw.gateway.hub.size, 1, 'one key read for all of them')

  // One pipeline: the reader takes the entries in a few large batches.
  const p = redis.client.pipeline()
  for (let i = 0; i < EVENTS; i++) p.xadd(key, '*', 'event', 'tick', 'data', `e${i}`)
  const ids: string[] = []
  for (const [err, id] of await p.exec() ?? []) {
    if (err !== null) throw err
    ids.push(id as string)
  }
  t.equal(ids.length, EVENTS, 'all events written')

  for (const s of streams) await s.until(x => (x as CheckedStream).received >= EVENTS || x.ended, 90000, `${EVENTS} events`)
  const problems = streams.map((s, i) => {
    if (s.problem !== undefined) return s.problem
    if (s.received !== EVENTS) return `${s.received} events, expected ${EVENTS}`
    if (seen[i]?.first !== ids[0] || seen[i]?.last !== ids[EVENTS - 1]) return `ids ${String(seen[i]?.first)}..${String(seen[i]?.last)}, expected ${String(ids[0])}..${String(ids[EVENTS - 1])}`
    return undefined
  }).filter((p): p is string => p !== undefined)
  t.equal(problems.length, 0, `every client has all events in order, no duplicates${problems.length > 0 ? `; first problem: ${String(problems[0])}` : ''}`)
  t.equal(streams.filter(s => s.ended).length, 0, 'no stream ended')
  t.equal(streams.reduce((n, s) => n + s.received, 0), CLIENTS * EVENTS, `${CLIENTS * EVENTS} deliveries in all`)
})
