/**
 * An ACL user with exactly the rights the README documents runs the gateway
 * in each reader mode: a client gets events, resumes, POST /publish writes,
 * and the probe keeps /readyz ready. A user missing an optional right gets a
 * log line naming the missing rule, and the gateway carries on with what it
 * may do.
 */
import { readFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { aclRule } from '../../src/source/server-check.js'
import { startGateway, readyWithin, type TestGateway } from '../helpers/gateway.js'
import { bearer, post } from '../helpers/publish.js'
import { startRedis, uniquePrefix, type TestRedis } from '../helpers/redis.js'
import { getJson, openStream, sleep } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(90000)

const PASSWORD = 'acl-test-password-0123456789'

async function user (redis: TestRedis, name: string, rule: string): Promise<void> {
  await redis.client.call('ACL', 'SETUSER', name, 'reset', 'on', `>${PASSWORD}`, ...rule.split(' '))
}

/** Sleeps several probe intervals, then: still ready. */
async function staysReady (t: Test, gw: TestGateway): Promise<void> {
  await sleep(1500)
  const r = await readyWithin(gw, 3000)
  t.equal(r.status, 200, `ready after several probes (${JSON.stringify(r.body)})`)
}

/** A client on topic news gets an entry written by the test and one posted through the gateway; it resumes after the first. */
async function eventsFlow (t: Test, redis: TestRedis, gw: TestGateway, prefix: string): Promise<void> {
  const auth = { authorization: `Bearer ${hsToken({ sub: 'acl-user', topics: ['news'], publish: ['topic:news'] })}` }
  const s = await openStream(`${gw.url}/events?topic=news`, auth)
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  await sleep(200)
  await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'one')
  await s.waitForEvents(1, 10000)
  t.equal(s.events[0]?.data, 'one', 'an entry XADDed by a producer arrives')
  const first = s.lastId as string
  s.close()
  await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'two')
  const posted = await post(`${gw.url}/publish`, { channel: 'topic:news', data: 'three' }, bearer(hsToken({ sub: 'acl-user', publish: ['topic:news'] })))
  t.equal(posted.status, 200, `POST /publish writes with the documented rights (${JSON.stringify(posted.body)})`)
  const resumed = await openStream(`${gw.url}/events?topic=news`, { ...auth, 'last-event-id': first })
  t.teardown(() => { resumed.close() })
  await resumed.waitForEvents(2, 10000)
  t.same(resumed.events.map(e => e.data), ['two', 'three'], 'a resumed client gets what it missed, once, in order')
}

const refusals = (gw: TestGateway): string[] => gw.logs.filter(l => /NOPERM|"grant"/.test(l))

t.test('the README gives the rules the gateway is tested with', async t => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  for (const mode of ['block', 'track', 'notify', 'auto'] as const) {
    for (const publish of [true, false]) {
      const rule = aclRule(mode, 'sse:', { publish })
      t.ok(readme.includes(rule), `README has the ${mode} rule${publish ? ' with publishing' : ''}: ${rule}`)
    }
  }
  // A Redis Cluster: block reads as auto there, so has no line of its own.
  for (const mode of ['track', 'notify', 'auto'] as const) {
    for (const publish of [true, false]) {
      const rule = aclRule(mode, 'sse:', { publish, cluster: true })
      t.ok(readme.includes(`user sse-gateway on >secret ${rule}\n`), `README has the cluster ${mode} rule${publish ? ' with publishing' : ''}: ${rule}`)
    }
  }
  t.equal(aclRule('block', 'sse:', { publish: true, cluster: true }), aclRule('auto', 'sse:', { publish: true, cluster: true }), 'on a cluster block needs what auto does')
})

/** The reader each mode takes with its documented rights (auto: track, the first it may use). */
const READER_OF = { block: 'block', track: 'track', notify: 'notify', auto: 'track' } as const

for (const mode of ['block', 'track', 'notify', 'auto'] as const) {
  t.test(`${mode}: a user with exactly the documented rights`, async t => {
    const redis = await startRedis({ notify: mode === 'notify' || mode === 'auto' ? 'Kt' : undefined })
    t.teardown(() => redis.stop())
    const prefix = uniquePrefix(mode)
    await user(redis, 'gateway', aclRule(mode, prefix, { publish: true }))
    const gw = await startGateway({ REDIS_URL: redis.url, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: PASSWORD, KEY_PREFIX: prefix, READER_MODE: mode, READER_PROBE_INTERVAL_MS: '300' })
    t.teardown(() => gw.close())
    t.equal((await readyWithin(gw, 10000)).status, 200, 'ready')
    t.equal((gw.gateway.source as { mode?: string }).mode, READER_OF[mode], 'reads with the reader the mode calls for')
    await eventsFlow(t, redis, gw, prefix)
    await staysReady(t, gw)
    t.same(refusals(gw), [], 'no command was refused')
    t.notOk(gw.logs.some(l => l.includes(PASSWORD)), 'the password is in no log line')
  })
}

t.test('a reading-only user (PUBLISH_ENABLED=false): the rule without writes to the streams', async t => {
  const redis = await startRedis({ notify: 'Kt' })
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('ro')
  await user(redis, 'reader', aclRule('auto', prefix, { publish: false }))
  const gw = await startGateway({ REDIS_URL: redis.url, REDIS_USERNAME: 'reader', REDIS_PASSWORD: PASSWORD, KEY_PREFIX: prefix, PUBLISH_ENABLED: 'false', READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => gw.close())
  t.equal((await readyWithin(gw, 10000)).status, 200, 'ready')
  const s = await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ sub: 'ro', topics: ['news'] })}` })
  t.teardown(() => { s.close() })
  await sleep(200)
  await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'ro-1')
  await s.waitForEvents(1, 10000)
  t.equal(s.events[0]?.data, 'ro-1')
  await staysReady(t, gw)
  t.same(refusals(gw), [], 'no command was refused')
  // The user really cannot write streams: the rule is what it says.
  const probe = new Redis({ path: redis.socket, username: 'reader', password: PASSWORD, lazyConnect: true })
  t.teardown(() => { probe.disconnect() })
  await t.rejects(probe.xadd(`${prefix}topic:news`, '*', 'data', 'x'), /NOPERM/, 'XADD on a stream key is refused')
})

/** A rule with `drop` removed (as `-cmd`). */
function without (rule: string, ...drop: string[]): string {
  return `${rule} ${drop.map(d => `-${d}`).join(' ')}`
}

for (const notify of ['Kt', ''] as const) {
  const reader = notify === '' ? 'block' : 'notify'
  t.test(`refused CLIENT TRACKING and CONFIG GET (auto, as on Memorystore), notifications ${notify === '' ? 'off' : 'on'}: the log names both rules, and reads by ${reader === 'notify' ? 'the notifications seen to arrive' : 'blocking XREAD'}`, async t => {
    const redis = await startRedis(notify === '' ? {} : { notify })
    t.teardown(() => redis.stop())
    const prefix = uniquePrefix('cfg')
    await user(redis, 'gateway', without(aclRule('auto', prefix, { publish: true }), 'client|tracking', 'config|get'))
    const gw = await startGateway({ REDIS_URL: redis.url, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: PASSWORD, KEY_PREFIX: prefix, READER_PROBE_INTERVAL_MS: '300' })
    t.teardown(() => gw.close())
    t.equal((await readyWithin(gw, 10000)).status, 200, 'ready')
    t.equal((gw.gateway.source as { mode?: string }).mode, reader, `reads by ${reader}`)
    t.ok(gw.logs.some(l => l.includes('"grant":"+client|id +client|tracking +subscribe &__redis__:invalidate"') && l.includes('client tracking refused')), 'a log line names the tracking rule')
    t.ok(gw.logs.some(l => l.includes('"grant":"+config|get"') && l.includes('Redis refused CONFIG GET')), 'a log line names the missing rule')
    t.equal(gw.logs.some(l => l.includes('keyspace notifications for streams arrive (seen')), reader === 'notify', 'says so when notifications were seen')
    await eventsFlow(t, redis, gw, prefix)
    await staysReady(t, gw)
    t.equal((gw.gateway.source as { mode?: string }).mode, reader, 'and keeps that reader across probes')
  })
}

t.test('refused history queries (no XRANGE): a resuming client is told to retry, and the log names the history rule', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('hist')
  await user(redis, 'gateway', without(aclRule('block', prefix, { publish: true }), 'xrange', 'xrevrange'))
  const gw = await startGateway({ REDIS_URL: redis.url, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: PASSWORD, KEY_PREFIX: prefix, READER_MODE: 'block', READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => gw.close())
  t.equal((await readyWithin(gw, 10000)).status, 200, 'ready (live reads need no XRANGE)')
  const first = await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'one')
  await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'two')
  const auth = { authorization: `Bearer ${hsToken({ sub: 'acl-user', topics: ['news'] })}`, 'last-event-id': `${first}` }
  const s = await openStream(`${gw.url}/events?topic=news`, auth)
  t.teardown(() => { s.close() })
  await s.waitForEnd(5000)
  t.same(s.events.filter(e => e.event === 'message').map(e => e.data), [], 'nothing delivered out of order past the missed entry')
  t.ok(s.retry !== undefined || s.status !== 200, `the client is told to come back (status ${s.status}, retry ${String(s.retry)})`)
  const deadline = Date.now() + 5000
  while (!gw.logs.some(l => l.includes('"grant":"+xrange +xrevrange +xinfo|stream')) && Date.now() < deadline) await sleep(50)
  t.ok(gw.logs.some(l => l.includes(`"grant":"+xrange +xrevrange +xinfo|stream %R~${prefix}*"`)), 'a log line names the history rule')
})

t.test('refused INFO: the log names +info, and the gateway carries on', async t => {
  const redis = await startRedis({ notify: 'Kt' })
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('info')
  await user(redis, 'gateway', without(aclRule('auto', prefix, { publish: true }), 'info', 'client|tracking'))
  const gw = await startGateway({ REDIS_URL: redis.url, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: PASSWORD, KEY_PREFIX: prefix, READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => gw.close())
  t.equal((await readyWithin(gw, 10000)).status, 200, 'ready')
  t.ok(gw.logs.some(l => l.includes('"grant":"+info"') && l.includes('Redis refused INFO')), 'a log line names the missing rule')
  t.equal((gw.gateway.source as { mode?: string }).mode, 'notify', 'still follows the server setting')
  await eventsFlow(t, redis, gw, prefix)
  await staysReady(t, gw)
})

t.test('refused keyspace channels (notify): the log names the channel rule, and reads fall back to blocking XREAD', async t => {
  const redis = await startRedis({ notify: 'Kt' })
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('chan')
  // The notify rule, but with no channel pattern.
  await user(redis, 'gateway', `${aclRule('notify', prefix, { publish: true })} resetchannels`)
  const gw = await startGateway({ REDIS_URL: redis.url, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: PASSWORD, KEY_PREFIX: prefix, READER_MODE: 'notify', READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => gw.close())
  const deadline = Date.now() + 10000
  while ((gw.gateway.source as { mode?: string }).mode !== 'block' && Date.now() < deadline) await sleep(50)
  t.equal((gw.gateway.source as { mode?: string }).mode, 'block', 'fell back to blocking reads')
  t.ok(gw.logs.some(l => l.includes(`"grant":"+subscribe +unsubscribe &__keyspace@*__:${prefix}*"`)), 'a log line names the missing rule')
  t.equal((await readyWithin(gw, 10000)).status, 200, 'ready again')
  await eventsFlow(t, redis, gw, prefix)
})

t.test('no rights under <prefix>__gateway: (required): the log names the rules, and the replica is not ready', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('keys')
  // The block rule, but with the stream keys only: nothing under <prefix>__gateway:.
  await user(redis, 'gateway', `${aclRule('block', prefix, { publish: true })} resetkeys ~${prefix}topic:* ~${prefix}user:*`)
  const gw = await startGateway({ REDIS_URL: redis.url, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: PASSWORD, KEY_PREFIX: prefix, READER_MODE: 'block', READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => gw.close())
  const deadline = Date.now() + 5000
  const has = (grant: string): boolean => gw.logs.some(l => l.includes(`"grant":"${grant}"`))
  while (!(has(`+time +get +set ~${prefix}__gateway:*`) && has(`+xread %R~${prefix}*`)) && Date.now() < deadline) await sleep(50)
  t.ok(has(`+time +get +set ~${prefix}__gateway:*`), 'the epoch line names its rule')
  t.ok(has(`+xread %R~${prefix}*`), 'the refused live read names its rule')
  const r = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(r.status, 503, 'not ready: live reads cannot flow')
  t.notOk(gw.logs.some(l => l.includes(PASSWORD)), 'the password is in no log line')
})

t.test('a wrong password: not ready, one log line that says which settings to check, and no password in it', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('pw')
  await user(redis, 'gateway', aclRule('block', prefix, { publish: true }))
  const gw = await startGateway({ REDIS_URL: redis.url, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: 'wrong-s3cret-password', KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  await sleep(1500)
  const r = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(r.status, 503, 'not ready')
  const lines = gw.logs.filter(l => l.includes('redis unreachable'))
  t.equal(lines.length, 1, 'one line, not one per retry')
  t.match(lines[0], /WRONGPASS/, 'Redis\'s answer')
  t.match(lines[0], /REDIS_PASSWORD/, 'and the settings to check')
  t.notOk(gw.logs.some(l => l.includes('wrong-s3cret-password')), 'the password is in no log line')
})
