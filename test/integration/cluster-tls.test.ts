/**
 * TLS and ACL to a Redis Cluster of 3 masters and 3 replicas that speaks
 * TLS only (no plain port; the cluster bus and replication over TLS too),
 * requires client certificates, and has an ACL user for the gateway: with
 * `rediss://` seeds, REDIS_TLS_CA_FILE, the client certificate and the
 * user, every connection the gateway opens to every node (the routed
 * commands, each master's live feed, POST /publish, the command line) is
 * TLS as that user, and clients get events from every master.
 *
 * The nodes' certificate names `localhost`, not 127.0.0.1, which the nodes
 * announce: what a managed cluster that announces IP addresses does. Without
 * REDIS_TLS_SERVERNAME the gateway is not ready and says to set it; with it,
 * it runs. Once the nodes announce the host name (cluster-announce-hostname),
 * seeds given by name need nothing more: the gateway connects to the names
 * given (no lookup to an address first). A wrong CA: not ready, one log line
 * naming the setting.
 */
import { spawn } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { startCluster, type TestCluster } from '../helpers/cluster.js'
import { eventually } from '../helpers/extra.js'
import { startGateway, readyWithin, type TestGateway } from '../helpers/gateway.js'
import { ensureBuilt } from '../helpers/process.js'
import { bearer, post } from '../helpers/publish.js'
import { uniquePrefix } from '../helpers/redis.js'
import { getJson, openStream, sleep } from '../helpers/sse.js'
import { makeTestCa, tlsNodeClient } from '../helpers/tls.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(150000)
const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'dist', 'src', 'cli.js')
ensureBuilt()

const PASSWORD = 'cluster-tls-password-0123'
const ca = makeTestCa()
let cluster: TestCluster
try {
  cluster = await startCluster({ tls: { ca, clientCertificates: true }, args: ['--user', 'gateway', 'on', `>${PASSWORD}`, '~*', '&*', '+@all'] })
} catch (err) {
  ca.remove()
  throw err
}
t.teardown(async () => {
  await cluster.stop()
  ca.remove()
})

/** The seeds by the name the certificate holds. */
const seeds = cluster.nodes.map(n => n.port).slice(0, 3).map(p => `rediss://localhost:${p}`).join(',')
const access = { REDIS_TLS_CA_FILE: ca.caCert, REDIS_TLS_CERT_FILE: ca.clientCert, REDIS_TLS_KEY_FILE: ca.clientKey, REDIS_USERNAME: 'gateway', REDIS_PASSWORD: PASSWORD }

/** One topic whose stream lives on each master (found by the slot map, no hash tags). */
async function topicPerMaster (prefix: string): Promise<string[]> {
  const masters = (await cluster.masters()).map(m => m.address)
  const found = new Map<string, string>()
  for (let i = 0; found.size < masters.length && i < 1000; i++) {
    const owner = await cluster.ownerOf(`${prefix}topic:t${i}`)
    if (!found.has(owner)) found.set(owner, `t${i}`)
  }
  return [...found.values()]
}

/** A client on a topic of every master and its own channel gets what producers write and what POST /publish writes. */
async function eventsFromEveryMaster (t: Test, gw: TestGateway, prefix: string): Promise<void> {
  const topics = await topicPerMaster(prefix)
  t.equal(topics.length, 3, 'a topic on each of the 3 masters')
  const s = await openStream(`${gw.url}/events?${topics.map(x => `topic=${x}`).join('&')}`, { authorization: `Bearer ${hsToken({ sub: 'tls-user', topics: '*' })}` })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  await sleep(300)
  for (const topic of topics) await cluster.client.xadd(`${prefix}topic:${topic}`, '*', 'data', `on-${topic}`)
  const posted = await post(`${gw.url}/publish`, { channel: 'user:tls-user', data: 'posted' }, bearer(hsToken({ sub: 'svc', publish: ['user:*'] })))
  t.equal(posted.status, 200, `POST /publish writes to the cluster over TLS (${JSON.stringify(posted.body)})`)
  await s.waitForEvents(4, 15000)
  t.same(s.events.map(e => e.data).sort(), [...topics.map(x => `on-${x}`), 'posted'].sort(), 'events from every master, and the posted one')
}

/** The gateway's connections on the node at `port`: name and user of each (every TCP connection is TLS: the nodes have no plain port). */
async function gatewayClients (port: number): Promise<Array<{ name: string, user: string }>> {
  const node = cluster.client.nodes().find(n => n.options.port === port)
  if (node === undefined) throw new Error(`no connection to ${port}`)
  const list = String(await node.call('CLIENT', 'LIST'))
  return list.split('\n').filter(l => / name=sse-gateway:/.test(l)).map(l => ({ name: / name=(\S+)/.exec(l)?.[1] ?? '', user: / user=(\S+)/.exec(l)?.[1] ?? '' }))
}

/** `sse-gateway publish` to the cluster with the gateway's variables `env`. */
async function cli (prefix: string, env: Record<string, string>): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'publish', '--channel', 'user:tls-user', '--data', 'from-cli', '--prefix', prefix], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', REDIS_CLUSTER_NODES: seeds, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    child.on('error', reject)
    child.on('close', code => { resolve({ code, stdout, stderr }) })
  })
}

t.test('rediss:// seeds, the CA, a client certificate, REDIS_TLS_SERVERNAME and an ACL user: every connection to every node is TLS as that user, and events flow from every master', async t => {
  const prefix = uniquePrefix('ctls')
  const gw = await startGateway({ REDIS_CLUSTER_NODES: seeds, ...access, REDIS_TLS_SERVERNAME: 'localhost', KEY_PREFIX: prefix, READER_PROBE_INTERVAL_MS: '500' })
  t.teardown(() => gw.close())
  const r = await readyWithin(gw, 20000)
  t.equal(r.status, 200, `ready (${JSON.stringify(r.body)})`)
  await eventsFromEveryMaster(t, gw, prefix)

  const masters = (await cluster.masters()).map(m => Number(m.address.split(':')[1]))
  for (const port of masters) {
    const clients = await gatewayClients(port)
    const names = clients.map(c => c.name)
    t.ok(names.includes('sse-gateway:cluster-feed'), `master ${port}: its live feed is connected (${names.join(', ')})`)
    t.ok(names.includes('sse-gateway:commands'), `master ${port}: the routed commands too`)
    t.same([...new Set(clients.map(c => c.user))], ['gateway'], `master ${port}: every connection of the gateway is the ACL user`)
  }
  await sleep(1500)
  t.equal((await getJson(`${gw.internalUrl}/readyz`)).status, 200, 'the probe keeps it ready on every master')
  t.notOk(gw.logs.some(l => l.includes(PASSWORD)), 'the password is in no log line')

  // The command line takes the same settings.
  const run = await cli(prefix, { REDIS_TLS_SERVERNAME: 'localhost', ...access })
  t.equal(run.code, 0, `the CLI publishes to the TLS cluster (${run.stderr})`)
  t.match(run.stdout, /^\d+-\d+\n$/, 'and prints the entry id')
  t.same((await cluster.client.xrange(`${prefix}user:tls-user`, '-', '+')).map(([, f]) => f[1]), ['posted', 'from-cli'])
})

t.test('nodes announced by IP, a certificate for a host name, no REDIS_TLS_SERVERNAME: not ready, and the log says to set it', async t => {
  const gw = await startGateway({ REDIS_CLUSTER_NODES: seeds, ...access, KEY_PREFIX: uniquePrefix('noname'), READER_PROBE_INTERVAL_MS: '500' })
  t.teardown(() => gw.close())
  await eventually(() => gw.logs.some(l => l.includes('REDIS_TLS_SERVERNAME')), 15000, 'a line naming REDIS_TLS_SERVERNAME').catch(() => {})
  const r = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(r.status, 503, `not ready (${JSON.stringify(r.body)})`)
  const lines = gw.logs.filter(l => l.includes('REDIS_TLS_SERVERNAME'))
  t.ok(lines.length >= 1, `a log line names REDIS_TLS_SERVERNAME (${gw.logs.slice(0, 5).join('\n')})`)
  t.match(lines[0], /certificate/, 'and the certificate problem')
})

t.test('the wrong CA: not ready, and one log line that names the certificate problem and REDIS_TLS_CA_FILE', async t => {
  const gw = await startGateway({ REDIS_CLUSTER_NODES: seeds, ...access, REDIS_TLS_CA_FILE: ca.otherCaCert, REDIS_TLS_SERVERNAME: 'localhost', KEY_PREFIX: uniquePrefix('badca'), READER_PROBE_INTERVAL_MS: '500' })
  t.teardown(() => gw.close())
  // The line waits for one more connection that finds out why (explain()).
  await eventually(() => gw.logs.some(l => l.includes('redis unreachable')), 15000, 'the "redis unreachable" line')
  await sleep(1500)
  const r = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(r.status, 503, 'not ready')
  t.equal(r.body.redis, 'down', `readiness says Redis cannot be reached (${JSON.stringify(r.body)})`)
  const lines = gw.logs.filter(l => l.includes('redis unreachable'))
  t.equal(lines.length, 1, `one line, not one per retry (${gw.logs.join('\n')})`)
  t.match(lines[0], /certificate/, 'it names the certificate problem')
  t.match(lines[0], /REDIS_TLS_CA_FILE/, 'and the setting that mends it')
  const run = await cli(uniquePrefix('badca'), { ...access, REDIS_TLS_CA_FILE: ca.otherCaCert, REDIS_TLS_SERVERNAME: 'localhost' })
  t.equal(run.code, 1, 'the CLI fails')
  t.match(run.stderr, /cannot reach .*self-signed certificate/, `and says why (${run.stderr})`)
})

t.test('nodes announced by host name (cluster-announce-hostname): seeds by that name need no REDIS_TLS_SERVERNAME', async t => {
  for (const n of cluster.nodes) {
    const c = new Redis({ host: '127.0.0.1', port: n.port, tls: tlsNodeClient(ca), lazyConnect: true })
    try {
      await c.connect()
      await c.call('CONFIG', 'SET', 'cluster-announce-hostname', 'localhost', 'cluster-preferred-endpoint-type', 'hostname')
    } finally {
      c.disconnect()
    }
  }
  await eventually(async () => {
    const slots = await cluster.client.cluster('SLOTS') as unknown[][]
    return slots.length > 0 && slots.every(s => (s[2] as unknown[])[0] === 'localhost')
  }, 10000, 'CLUSTER SLOTS to name localhost')
  const prefix = uniquePrefix('byname')
  const gw = await startGateway({ REDIS_CLUSTER_NODES: seeds, ...access, KEY_PREFIX: prefix, READER_PROBE_INTERVAL_MS: '500' })
  t.teardown(() => gw.close())
  const r = await readyWithin(gw, 20000)
  t.equal(r.status, 200, `ready (${JSON.stringify(r.body)})`)
  await eventsFromEveryMaster(t, gw, prefix)
})
