/**
 * Lease renewal spread over the renewal interval (regression: "renewals in
 * one burst"). A replica renewed every stream's lease at once: 10,000
 * streams were 10,000 scripts in one go, about 110 ms of Redis and as long
 * of the gateway's event loop, which held up every live read behind it
 * (per-user p99 65 ms in the bench instead of 5). Each stream must still be
 * renewed once per interval (a third of CONTROL_LEASE_MS), so no lease
 * lapses while its stream is open.
 */
import pino from 'pino'
import t from 'tap'
import { connectionFor } from '../../src/source/redis-connection.js'
import { RedisControlStore } from '../../src/source/redis-control.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

t.test('renewals in one burst: each stream is renewed once per interval, a slice at a time', async t => {
  const leaseMs = 3000
  const store = new RedisControlStore({ connection: connectionFor(redis.url), keyPrefix: uniquePrefix('renew'), leaseMs, maxTokenLifetimeMs: 86_400_000, presence: false, logger: pino({ level: 'silent' }) })
  await store.start()
  t.teardown(() => store.close())
  const streams = 600
  const refused = (await Promise.all(Array.from({ length: streams }, async (_, i) =>
    await store.admit({ session: `s${i}`, user: `u${i}`, jti: undefined, issuedAtMs: undefined, topics: [], maxPerUser: 0 })))).filter(r => r !== undefined)
  t.same(refused, [], `${streams} streams admitted`)
  // Count the renewal scripts as they go out, by the 50 ms window they go out in.
  const client = (store as unknown as { client: { evalsha: (...args: unknown[]) => Promise<unknown> } }).client
  const evalsha = client.evalsha.bind(client)
  const windows = new Map<number, number>()
  const started = Date.now()
  client.evalsha = async (...args: unknown[]) => {
    const w = Math.floor((Date.now() - started) / 50)
    windows.set(w, (windows.get(w) ?? 0) + 1)
    return await evalsha(...args)
  }
  await new Promise(resolve => setTimeout(resolve, 2 * leaseMs / 3 + 100))
  const total = [...windows.values()].reduce((a, b) => a + b, 0)
  t.ok(total >= streams && total <= 2 * streams + 2 * Math.ceil(streams / 10), `every stream renewed once or twice in two intervals (${total} scripts for ${streams} streams)`)
  const peak = Math.max(...windows.values())
  t.ok(peak <= Math.ceil(streams / 5), `no burst: at most ${peak} scripts in any 50 ms (of ${streams})`)
  // And the leases hold: every one is still live after more than a lease.
  await new Promise(resolve => setTimeout(resolve, leaseMs / 2))
  const live = await redis.client.eval("local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1] .. '*')) do n = n + redis.call('ZCOUNT', k, '(' .. ARGV[2], '+inf') end return n", 0, (store as unknown as { opts: { keyPrefix: string } }).opts.keyPrefix, String(Date.now()))
  t.equal(live, streams, 'no lease lapsed')
})
