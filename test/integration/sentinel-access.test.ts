/**
 * ACL and TLS to Sentinel-managed Redis (1 master, 1 replica, 3 Sentinels).
 *
 * ACL: the Sentinels let in only their own user, the data nodes only
 * theirs (the default user is off on both). With REDIS_SENTINEL_USERNAME /
 * REDIS_SENTINEL_PASSWORD for the Sentinels and REDIS_USERNAME /
 * REDIS_PASSWORD for the data nodes, the gateway is ready, delivers and
 * writes POST /publish; with a wrong Sentinel password, or a wrong data
 * password, it is not ready and one log line names the settings to check,
 * never the password.
 *
 * TLS: every process TLS only, the certificate naming `localhost` while the
 * Sentinels hand out 127.0.0.1: one `rediss://` (the Sentinels as
 * rediss://host:port) means TLS to the Sentinels and to the data nodes, with
 * REDIS_TLS_CA_FILE and REDIS_TLS_SERVERNAME; every connection of the
 * gateway reaches the master over TLS and events flow. The wrong CA: not
 * ready, told.
 */
import t, { type Test } from 'tap'
import { eventually } from '../helpers/extra.js'
import { startGateway, readyWithin, type TestGateway } from '../helpers/gateway.js'
import { bearer, post } from '../helpers/publish.js'
import { uniquePrefix } from '../helpers/redis.js'
import { startSentinel, type TestSentinel } from '../helpers/sentinel.js'
import { getJson, openStream, sleep } from '../helpers/sse.js'
import { makeTestCa } from '../helpers/tls.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(120000)

const ACL = { sentinelUser: 'gw-sentinel', sentinelPassword: 'sentinel-secret-0123', dataUser: 'gw-data', dataPassword: 'data-secret-4567' }

/** A client on topic news gets an entry a producer wrote through the Sentinels, and one posted through the gateway. */
async function eventsFlow (t: Test, topo: TestSentinel, gw: TestGateway, prefix: string): Promise<void> {
  const s = await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ sub: 'sentinel-user', topics: ['news'] })}` })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  await sleep(300)
  await topo.client.xadd(`${prefix}topic:news`, '*', 'data', 'written')
  const posted = await post(`${gw.url}/publish`, { channel: 'topic:news', data: 'posted' }, bearer(hsToken({ sub: 'svc', publish: ['topic:news'] })))
  t.equal(posted.status, 200, `POST /publish writes to the master (${JSON.stringify(posted.body)})`)
  await s.waitForEvents(2, 10000)
  t.same(s.events.map(e => e.data), ['written', 'posted'], 'events flow')
}

/** The gateway's connections on the master: name and user of each. */
async function gatewayClients (topo: TestSentinel): Promise<Array<{ name: string, user: string }>> {
  const list = String(await topo.node(await topo.masterPort()).call('CLIENT', 'LIST'))
  return list.split('\n').filter(l => / name=sse-gateway:/.test(l)).map(l => ({ name: / name=(\S+)/.exec(l)?.[1] ?? '', user: / user=(\S+)/.exec(l)?.[1] ?? '' }))
}

/** Not ready after a while, and the one "redis unreachable" line. */
async function refused (t: Test, gw: TestGateway): Promise<string> {
  // The line may wait for one more connection that finds out why (explain()).
  await eventually(() => gw.logs.some(l => l.includes('redis unreachable')), 15000, 'the "redis unreachable" line')
  await sleep(1500)
  const r = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(r.status, 503, `not ready (${JSON.stringify(r.body)})`)
  const lines = gw.logs.filter(l => l.includes('redis unreachable'))
  t.equal(lines.length, 1, `one line, not one per retry (${lines.join('\n')})`)
  return lines[0] ?? ''
}

t.test('ACL: the Sentinels\' own user and the data nodes\' user', async t => {
  const topo = await startSentinel({ acl: ACL })
  t.teardown(() => topo.stop())
  const base = { REDIS_SENTINELS: topo.sentinels.join(','), REDIS_SENTINEL_MASTER: topo.master, READER_PROBE_INTERVAL_MS: '300' }
  const secrets = [ACL.sentinelPassword, ACL.dataPassword, 'wrong-sentinel-secret', 'wrong-data-secret']

  t.test('the documented settings: ready, events flow, every connection is the data user', async t => {
    const prefix = uniquePrefix('sacl')
    const gw = await startGateway({ ...base, REDIS_SENTINEL_USERNAME: ACL.sentinelUser, REDIS_SENTINEL_PASSWORD: ACL.sentinelPassword, REDIS_USERNAME: ACL.dataUser, REDIS_PASSWORD: ACL.dataPassword, KEY_PREFIX: prefix })
    t.teardown(() => gw.close())
    const r = await readyWithin(gw, 15000)
    t.equal(r.status, 200, `ready (${JSON.stringify(r.body)})`)
    await eventsFlow(t, topo, gw, prefix)
    const clients = await gatewayClients(topo)
    t.ok(clients.some(c => c.name === 'sse-gateway:commands'), `the gateway is connected to the master (${clients.map(c => c.name).join(', ')})`)
    t.same([...new Set(clients.map(c => c.user))], [ACL.dataUser], 'every connection to the master is the data nodes\' user')
    t.notOk(gw.logs.some(l => secrets.some(p => l.includes(p))), 'no password in any log line')
  })

  t.test('the data user in REDIS_URL (redis://user:password@<master name>): the same', async t => {
    const prefix = uniquePrefix('surl')
    const gw = await startGateway({ ...base, REDIS_SENTINEL_USERNAME: ACL.sentinelUser, REDIS_SENTINEL_PASSWORD: ACL.sentinelPassword, REDIS_URL: `redis://${ACL.dataUser}:${ACL.dataPassword}@${topo.master}`, KEY_PREFIX: prefix })
    t.teardown(() => gw.close())
    t.equal((await readyWithin(gw, 15000)).status, 200, 'ready')
    await eventsFlow(t, topo, gw, prefix)
  })

  t.test('a wrong Sentinel password: not ready, and the line names the Sentinel settings', async t => {
    const gw = await startGateway({ ...base, REDIS_SENTINEL_USERNAME: ACL.sentinelUser, REDIS_SENTINEL_PASSWORD: 'wrong-sentinel-secret', REDIS_USERNAME: ACL.dataUser, REDIS_PASSWORD: ACL.dataPassword, KEY_PREFIX: uniquePrefix('swrong') })
    t.teardown(() => gw.close())
    const line = await refused(t, gw)
    t.match(line, /the Sentinels refused the login/, 'it says who refused')
    t.match(line, /REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD/, 'and which settings to check')
    t.notOk(gw.logs.some(l => secrets.some(p => l.includes(p))), 'no password in any log line')
  })

  t.test('no Sentinel credentials at all: the same', async t => {
    const gw = await startGateway({ ...base, REDIS_USERNAME: ACL.dataUser, REDIS_PASSWORD: ACL.dataPassword, KEY_PREFIX: uniquePrefix('snone') })
    t.teardown(() => gw.close())
    t.match(await refused(t, gw), /REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD/)
  })

  t.test('a wrong data password: not ready, and the line names the data nodes\' settings', async t => {
    const gw = await startGateway({ ...base, REDIS_SENTINEL_USERNAME: ACL.sentinelUser, REDIS_SENTINEL_PASSWORD: ACL.sentinelPassword, REDIS_USERNAME: ACL.dataUser, REDIS_PASSWORD: 'wrong-data-secret', KEY_PREFIX: uniquePrefix('dwrong') })
    t.teardown(() => gw.close())
    const line = await refused(t, gw)
    t.match(line, /WRONGPASS/, 'Redis\'s answer')
    t.match(line, /REDIS_USERNAME, REDIS_PASSWORD/, 'and which settings to check')
    t.notOk(gw.logs.some(l => secrets.some(p => l.includes(p))), 'no password in any log line')
  })
})

t.test('TLS: rediss:// Sentinels, TLS to them and to the data nodes', async t => {
  const ca = makeTestCa()
  t.teardown(() => { ca.remove() })
  const topo = await startSentinel({ tls: ca, acl: ACL })
  t.teardown(() => topo.stop())
  const base = {
    REDIS_SENTINELS: topo.sentinels.map(s => `rediss://${s}`).join(','),
    REDIS_SENTINEL_MASTER: topo.master,
    REDIS_SENTINEL_USERNAME: ACL.sentinelUser,
    REDIS_SENTINEL_PASSWORD: ACL.sentinelPassword,
    REDIS_USERNAME: ACL.dataUser,
    REDIS_PASSWORD: ACL.dataPassword,
    READER_PROBE_INTERVAL_MS: '300',
  }

  t.test('the CA and the name the certificate holds: ready, events flow over TLS', async t => {
    const prefix = uniquePrefix('stls')
    const gw = await startGateway({ ...base, REDIS_TLS_CA_FILE: ca.caCert, REDIS_TLS_SERVERNAME: 'localhost', KEY_PREFIX: prefix })
    t.teardown(() => gw.close())
    const r = await readyWithin(gw, 15000)
    t.equal(r.status, 200, `ready (${JSON.stringify(r.body)})`)
    await eventsFlow(t, topo, gw, prefix)
    // The nodes have no plain port: every connection there is TLS.
    const names = (await gatewayClients(topo)).map(c => c.name)
    for (const name of ['sse-gateway:commands', 'sse-gateway:publish']) t.ok(names.includes(name), `${name} is connected to the master over TLS (${names.join(', ')})`)
  })

  t.test('rediss:// in REDIS_URL with bare Sentinels: TLS to both as well', async t => {
    const prefix = uniquePrefix('surltls')
    const gw = await startGateway({ ...base, REDIS_SENTINELS: topo.sentinels.join(','), REDIS_URL: `rediss://${topo.master}`, REDIS_TLS_CA_FILE: ca.caCert, REDIS_TLS_SERVERNAME: 'localhost', KEY_PREFIX: prefix })
    t.teardown(() => gw.close())
    t.equal((await readyWithin(gw, 15000)).status, 200, 'ready')
    await eventsFlow(t, topo, gw, prefix)
  })

  t.test('the wrong CA: not ready, and the line says the Sentinels\' certificate is not trusted and what to set', async t => {
    const gw = await startGateway({ ...base, REDIS_TLS_CA_FILE: ca.otherCaCert, REDIS_TLS_SERVERNAME: 'localhost', KEY_PREFIX: uniquePrefix('sbadca') })
    t.teardown(() => gw.close())
    const line = await refused(t, gw)
    t.match(line, /the Sentinels' TLS certificate is not trusted/)
    t.match(line, /REDIS_TLS_CA_FILE/)
  })

  t.test('no REDIS_TLS_SERVERNAME, the certificate names another host: not ready, and the line names the setting', async t => {
    const gw = await startGateway({ ...base, REDIS_TLS_CA_FILE: ca.caCert, KEY_PREFIX: uniquePrefix('sname') })
    t.teardown(() => gw.close())
    t.match(await refused(t, gw), /does not name the host connected to.*REDIS_TLS_SERVERNAME/)
  })
})
