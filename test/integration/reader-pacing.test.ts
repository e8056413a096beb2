/**
 * The blocking reader's key budget (READER_BLOCK_MAX_KEYS_PER_SECOND): each
 * XREAD lists every key of its shard, so with many keys and a steady trickle
 * of entries it would re-read at once, over and over, and take a Redis core.
 * Under the budget a shard waits between reads; clients still get every
 * event once, in order, only in bigger batches. The operator is told once.
 */
import t, { type Test } from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { commandCalls } from '../helpers/ledger.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(120000)

const USERS = 200
const SHARDS = 2
const ROUNDS = 10

async function run (t: Test, budget: number): Promise<{ calls: number, elapsedMs: number, keysPerShard: number, logs: string[] }> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('pacing')
  const gw = await startGateway({
    REDIS_URL: redis.url,
    KEY_PREFIX: prefix,
    READER_MODE: 'block',
    READER_SHARDS: String(SHARDS),
    READER_BLOCK_MAX_KEYS_PER_SECOND: String(budget),
    LOG_LEVEL: 'info',
  })
  t.teardown(() => gw.close())
  const streams: RawStream[] = []
  for (let i = 0; i < USERS; i += 50) {
    streams.push(...await Promise.all(Array.from({ length: 50 }, async (_, k) =>
      await openStream(`${gw.url}/events`, { authorization: `Bearer ${hsToken({ sub: `u${i + k}` })}` }))))
  }
  t.teardown(() => { for (const s of streams) s.close() })
  await sleep(300)

  // A steady trickle: one entry every 5 ms to the next user, two seconds long.
  const before = await commandCalls(redis.client, 'xread')
  const started = Date.now()
  for (let n = 0; n < USERS * ROUNDS; n += 5) {
    const pipe = redis.client.pipeline()
    for (let k = n; k < n + 5; k++) pipe.xadd(`${prefix}user:u${k % USERS}`, '*', 'data', `u${k % USERS}-${Math.floor(k / USERS)}`)
    await pipe.exec()
    await sleep(5)
  }
  for (const s of streams) await s.waitForEvents(ROUNDS, 30000)
  const elapsedMs = Date.now() - started
  const calls = await commandCalls(redis.client, 'xread') - before
  for (const [u, s] of streams.entries()) {
    t.same(s.events.map(e => e.data), Array.from({ length: ROUNDS }, (_, r) => `u${u}-${r}`), `u${u}: every event once, in order`)
  }
  return { calls, elapsedMs, keysPerShard: USERS / SHARDS, logs: gw.logs }
}

t.test('a small budget: reads are spaced out, nothing is lost, the operator is told once', async t => {
  const budget = 2000
  const { calls, elapsedMs, keysPerShard, logs } = await run(t, budget)
  // Each shard lists about keysPerShard + 1 keys per read (hashing spreads
  // the users about evenly); its reads start at least that many keys'
  // share of the budget apart.
  const intervalMs = (keysPerShard * 0.6) * SHARDS * 1000 / budget
  const bound = SHARDS * (elapsedMs / intervalMs + 2)
  t.ok(calls <= bound, `${calls} XREAD calls in ${elapsedMs} ms, at most ${Math.round(bound)} under the budget`)
  t.equal(logs.filter(l => l.includes('waits between reads')).length, 1, 'one log line says the reader waits, and why')
})

t.test('no budget (0): the reader reads again at once, so the trickle costs many more reads', async t => {
  const { calls, elapsedMs } = await run(t, 0)
  const pacedBound = SHARDS * (elapsedMs / ((USERS / SHARDS * 0.6) * SHARDS * 1000 / 2000) + 2)
  t.ok(calls > pacedBound, `${calls} XREAD calls in ${elapsedMs} ms: more than the ${Math.round(pacedBound)} a 2,000 keys/s budget allows`)
})
