/**
 * Per-user channels: 500 clients, each on its own `user:<sub>` stream. Every
 * client receives all of its own events, in order, and nobody else's.
 */
import t from 'tap'
import { openMany } from '../helpers/extra.js'
import { startGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { hsToken } from '../helpers/token.js'

const USERS = 500

const redis = await startRedis()
t.teardown(() => redis.stop())

/** A fixed shuffle, so every run interleaves users the same way. */
function shuffled (n: number, seed: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i)
  let x = seed
  for (let i = n - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const j = x % (i + 1)
    const tmp = a[i] as number
    a[i] = a[j] as number
    a[j] = tmp
  }
  return a
}

t.test(`${USERS} clients on their own user channels each get exactly their own events, in order`, async t => {
  t.setTimeout(120000)
  const prefix = uniquePrefix('user')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  const key = (n: number): string => `${prefix}user:user-${n}`

  const streams = await openMany(USERS, 100, n => ({ url: `${gw.url}/events`, headers: { authorization: `Bearer ${hsToken({ sub: `user-${n}` })}` } }))
  t.teardown(() => { for (const s of streams) s.close() })
  t.equal(streams.filter(s => s.status === 200).length, USERS, 'every client got a 200 stream')
  t.equal(gw.gateway.hub.size, USERS, 'one key per user')

  const sent: string[][] = Array.from({ length: USERS }, () => [])
  const ids: string[][] = Array.from({ length: USERS }, () => [])
  /** Writes one entry per listed user, interleaved, in one pipeline. */
  const write = async (users: number[], label: (n: number) => string): Promise<void> => {
    const p = redis.client.pipeline()
    for (const n of users) {
      const data = label(n)
      sent[n]?.push(data)
      p.xadd(key(n), '*', 'data', data)
    }
    const replies = await p.exec()
    replies?.forEach(([err, id], i) => {
      if (err !== null) throw err
      ids[users[i] as number]?.push(id as string)
    })
  }

  // Phase 1: two rounds over every user, each round in a different order.
  await write(shuffled(USERS, 1), n => `user-${n} #1`)
  await write(shuffled(USERS, 2), n => `user-${n} #2`)
  // Users with no client, including names that prefix a real one: never delivered.
  await redis.client.xadd(`${prefix}user:user-`, '*', 'data', 'nobody')
  await redis.client.xadd(`${prefix}user:user-1000`, '*', 'data', 'nobody')
  await redis.client.xadd(`${prefix}user:user-1 `, '*', 'data', 'nobody')
  for (const s of streams) await s.until(x => x.events.length >= 2 || x.ended, 60000, 'phase 1')

  // Phase 2, once every key is being read live: a few more each, several
  // entries per user back to back for some, interleaved for the others.
  const odd = shuffled(USERS, 3).filter(n => n % 2 === 1)
  await write(odd, n => `user-${n} #3`)
  await write(odd, n => `user-${n} #4`)
  await write(shuffled(USERS, 4), n => `user-${n} #${n % 2 === 1 ? 5 : 3}`)
  await write(shuffled(USERS, 5), n => `user-${n} #last`)
  for (const s of streams) await s.until(x => x.events.some(e => e.data.endsWith('#last')) || x.ended, 60000, 'last event')

  let wrong = 0
  let first = ''
  streams.forEach((s, n) => {
    const got = s.events.map(e => `${e.data} @${String(e.id)}`)
    const want = (sent[n] ?? []).map((d, i) => `${d} @${String(ids[n]?.[i])}`)
    if (got.join('\n') !== want.join('\n') || s.ended) {
      wrong++
      if (first === '') first = `user-${n}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}, ended=${String(s.ended)}`
    }
  })
  t.equal(wrong, 0, `every client has exactly its own events with their ids, in order${first === '' ? '' : `; ${first}`}`)
  t.equal(streams.reduce((k, s) => k + s.events.length, 0), sent.reduce((k, l) => k + l.length, 0), 'no extra deliveries in all')
  t.ok(streams.every(s => s.events.every(e => !e.data.includes('nobody'))), 'streams of users with no client reach nobody')
})
