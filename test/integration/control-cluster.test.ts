/**
 * The control plane on a Redis Cluster (3 masters): two gateways, each
 * with its own Cluster client. The admission script runs on the user's
 * slot, the jti check on another, the control stream on a third: a
 * revocation reaches the other gateway, the per-user limit holds across
 * them, presence answers, and no command fails with CROSSSLOT.
 */
import { request } from 'node:http'
import t from 'tap'
import { startCluster } from '../helpers/cluster.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { uniquePrefix } from '../helpers/redis.js'
import { RawStream, getJson, openStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const CONTROL_TOKEN = 'cluster-control-token-0123456789-abcdef'
const cluster = await startCluster({ masters: 3, replicas: 0 })
const prefix = uniquePrefix('cc')
const gws: TestGateway[] = []
t.teardown(async () => {
  for (const g of gws) await g.close()
  await cluster.stop()
})
for (let i = 0; i < 2; i++) gws.push(await startGateway({ REDIS_CLUSTER_NODES: cluster.seeds, KEY_PREFIX: prefix, CONTROL_TOKEN, MAX_CONNECTIONS_PER_USER: '2', DEMO_ENABLED: 'false' }))
const [a, b] = gws as [TestGateway, TestGateway]
const auth = { authorization: `Bearer ${CONTROL_TOKEN}` }

t.test('revoke, the limit and presence on a cluster', async t => {
  const streams: RawStream[] = []
  t.teardown(() => { for (const s of streams) s.close() })
  const tok = hsToken({ sub: 'cu', jti: 'cj', iat: Math.floor(Date.now() / 1000) - 10, topics: ['t1'] })
  for (const g of [a, b]) {
    const s = await openStream(`${g.url}/events?token=${tok}&topic=t1`)
    streams.push(s)
    t.equal(s.status, 200)
  }
  t.equal((await getJson(`${a.url}/events?token=${tok}`)).status, 429, 'the limit counts both gateways')
  const p = (await getJson(`${b.internalUrl}/control/presence?channel=topic:t1`, auth)).body
  t.equal(p.streams, 2)
  t.same(p.users, ['cu'])
  const res = await new Promise<number>((resolve, reject) => {
    const req = request(`${a.internalUrl}/control/revoke`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth } }, r => { r.resume(); resolve(r.statusCode ?? 0) })
    req.on('error', reject)
    req.end(JSON.stringify({ jti: 'cj' }))
  })
  t.equal(res, 200)
  for (const s of streams) {
    await s.waitForEnd(1500)
    t.equal(s.events[s.events.length - 1]?.event, 'gateway.revoked')
  }
  t.equal((await getJson(`${b.url}/events?token=${tok}`)).body.error, 'SSEGW_ERR_AUTH_REVOKED_TOKEN', 'refused on the other gateway')
  const fresh = hsToken({ sub: 'cu', iat: Math.floor(Date.now() / 1000) })
  t.equal((await getJson(`${b.url}/events?token=${fresh}`, {}, { stopAtStream: true })).status, 200)
  const logs = gws.flatMap(g => g.logs).join('\n')
  t.notMatch(logs, /CROSSSLOT|cannot check revocations/, 'no cross-slot command, no failed admission')
})
