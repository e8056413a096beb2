/**
 * The control plane on the in-memory engine (one replica, in process):
 * the endpoints end and refuse streams as with Redis, the per-user limit
 * is the replica's, presence is the replica's streams; without
 * CONTROL_TOKEN the endpoints refuse.
 */
import { request } from 'node:http'
import t from 'tap'
import { signatureOf } from '../helpers/extra.js'
import { startGateway } from '../helpers/gateway.js'
import { getJson, openStream, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const CONTROL_TOKEN = 'memory-control-token-0123456789-abcdef'

async function post (url: string, body: unknown, auth = CONTROL_TOKEN): Promise<{ status: number, body: any }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${auth}` } }, res => {
      let data = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { data += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(data) }) })
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

t.test('memory engine: revoke by user and by jti, disconnect a session, the replica\'s limit, presence', async t => {
  const gw = await startGateway({ CONTROL_TOKEN, MAX_CONNECTIONS_PER_USER: '2', DEMO_ENABLED: 'false' })
  t.teardown(() => gw.close())
  const streams: RawStream[] = []
  t.teardown(() => { for (const s of streams) s.close() })
  const open = async (tok: string, query = ''): Promise<RawStream> => {
    const s = await openStream(`${gw.url}/events?token=${tok}${query}`)
    streams.push(s)
    return s
  }
  const iat = Math.floor(Date.now() / 1000) - 10
  const old = hsToken({ sub: 'm1', iat, topics: ['a'] })
  const [s1, s2] = [await open(old, '&topic=a'), await open(old)]
  t.equal((await getJson(`${gw.url}/events?token=${old}`)).status, 429, 'MAX_CONNECTIONS_PER_USER per replica')
  const who = (await getJson(`${gw.internalUrl}/control/presence?user=m1`, { authorization: `Bearer ${CONTROL_TOKEN}` })).body
  t.equal(who.streams, 2)
  t.same([...who.channels].sort(), ['topic:a', 'user:m1'])
  t.equal((await getJson(`${gw.internalUrl}/control/presence?channel=topic:a`, { authorization: `Bearer ${CONTROL_TOKEN}` })).body.streams, 1)

  const res = await post(`${gw.internalUrl}/control/revoke`, { user: 'm1' })
  t.equal(res.status, 200)
  for (const s of [s1, s2]) {
    await s.waitForEnd(1000)
    t.equal(s.events[s.events.length - 1]?.event, 'gateway.revoked')
  }
  t.equal((await getJson(`${gw.url}/events?token=${old}`)).body.error, 'SSEGW_ERR_AUTH_REVOKED_TOKEN')
  t.equal((await getJson(`${gw.url}/events?token=${hsToken({ sub: 'm1', iat: Math.floor(Date.now() / 1000) })}`, {}, { stopAtStream: true })).status, 200, 'a newer token is accepted')
  t.equal((await getJson(`${gw.url}/events?token=${hsToken({ sub: 'm1' })}`)).body.error, 'SSEGW_ERR_AUTH_REVOKED_TOKEN', 'a token without iat is refused by a cut-off')

  const withJti = hsToken({ sub: 'm2', jti: 'mem-j' })
  const s3 = await open(withJti)
  t.equal((await post(`${gw.internalUrl}/control/revoke`, { jti: 'mem-j' })).status, 200)
  await s3.waitForEnd(1000)
  t.equal((await getJson(`${gw.url}/events?token=${withJti}`)).body.error, 'SSEGW_ERR_AUTH_REVOKED_TOKEN')

  const s4 = await open(hsToken({ sub: 'm3' }))
  const session = (await getJson(`${gw.internalUrl}/control/presence?user=m3`, { authorization: `Bearer ${CONTROL_TOKEN}` })).body.sessions[0].session
  t.equal((await post(`${gw.internalUrl}/control/disconnect`, { session })).body.applied, 'disconnect-session')
  await s4.waitForEnd(1000)
  t.equal(s4.events[s4.events.length - 1]?.event, 'gateway.disconnected')
  t.equal(s4.retry !== undefined, true, 'with a retry:')
  t.notOk(gw.logs.join('\n').includes(signatureOf(old)), 'no token in the logs')
  t.notOk(gw.logs.join('\n').includes(CONTROL_TOKEN), 'no CONTROL_TOKEN in the logs')
})

t.test('without CONTROL_TOKEN the endpoints refuse with 403 and say what to set', async t => {
  const gw = await startGateway({ DEMO_ENABLED: 'false' })
  t.teardown(() => gw.close())
  const res = await post(`${gw.internalUrl}/control/disconnect`, { user: 'x' })
  t.equal(res.status, 403)
  t.equal(res.body.error, 'SSEGW_ERR_CONTROL_NOT_CONFIGURED')
  t.match(res.body.message, /set CONTROL_TOKEN/)
  t.equal((await getJson(`${gw.internalUrl}/control/presence?user=x`)).status, 403)
})
