/**
 * The Sentinel settings: REDIS_SENTINELS and REDIS_SENTINEL_MASTER go
 * together, each Sentinel is host:port, REDIS_URL beside them carries only
 * the data nodes' credentials (its host is the master name), and no message
 * quotes a password. The engine is Redis with Sentinels alone.
 */
import t from 'tap'
import { loadConfig } from '../../src/core/config.js'
import { ConfigError } from '../../src/core/errors.js'
import { engineKind } from '../../src/source/engines.js'
import { sentinelAddress, sentinelConnection, sentinelTargetOf, type SentinelTarget } from '../../src/source/sentinel-connection.js'
import { makeTestCa } from '../helpers/tls.js'

const BASE = { JWT_SECRET: 'x'.repeat(40) }
const SENTINELS = { REDIS_SENTINELS: 's1:26379, s2:26379,[::1]:26380', REDIS_SENTINEL_MASTER: 'mymaster' }

function refusal (env: Record<string, string>): string {
  try {
    loadConfig({ ...BASE, ...env })
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  return '(accepted)'
}

t.test('Sentinels and a master name: the Redis engine, with no REDIS_URL', async t => {
  const config = loadConfig({ ...BASE, ...SENTINELS })
  t.same(config.redisSentinels, ['s1:26379', 's2:26379', '[::1]:26380'])
  t.equal(config.redisSentinelMaster, 'mymaster')
  t.equal(config.redisUrl, undefined)
  t.equal(engineKind(config), 'redis')
  t.equal(config.demoEnabled, false, 'a Sentinel deployment is no first run: no demo by default')
  t.same(sentinelTargetOf(config), { sentinels: ['s1:26379', 's2:26379', '[::1]:26380'], master: 'mymaster' })
  t.same(sentinelAddress('[::1]:26380'), { host: '::1', port: 26380 })
  t.same(sentinelAddress('s1:26379'), { host: 's1', port: 26379 })
})

t.test('REDIS_URL beside them gives the data nodes\' credentials and db, with the master name as host', async t => {
  const config = loadConfig({ ...BASE, ...SENTINELS, REDIS_URL: 'redis://app:s3cret@mymaster/2', REDIS_SENTINEL_PASSWORD: 'sentinel-pw' })
  t.same(sentinelTargetOf(config), { sentinels: config.redisSentinels, master: 'mymaster', sentinelPassword: 'sentinel-pw', url: 'redis://app:s3cret@mymaster/2' })
})

t.test('the rules, one message each, naming the variable and never the password', async t => {
  t.match(refusal({ REDIS_SENTINELS: 's1:26379' }), /REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not/)
  t.match(refusal({ REDIS_SENTINEL_MASTER: 'm' }), /REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not/)
  t.match(refusal({ REDIS_SENTINEL_PASSWORD: 'hunter2-secret' }), /REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not/)
  t.match(refusal({ REDIS_SENTINEL_USERNAME: 'u' }), /REDIS_SENTINEL_USERNAME is set but REDIS_SENTINELS is not/)
  for (const bad of ['s1', 's1:', ':26379', 's1:99999', 'http://s1:26379', 's1:26379:1']) {
    t.match(refusal({ ...SENTINELS, REDIS_SENTINELS: bad }), /REDIS_SENTINELS has ".*", which is not host:port/, bad)
  }
  t.match(refusal({ ...SENTINELS, REDIS_SENTINEL_MASTER: 'a b' }), /REDIS_SENTINEL_MASTER must be one master name/)
  const other = refusal({ ...SENTINELS, REDIS_URL: 'redis://:hunter2-secret@redis-0:6379' })
  t.match(other, /with REDIS_SENTINELS, REDIS_URL only carries the data nodes' credentials/)
  t.notMatch(other, /hunter2/, 'the password is never quoted')
  t.match(refusal({ ...SENTINELS, REDIS_URL: 'redis://mymaster:6379' }), /no port/)
  t.match(refusal({ ...SENTINELS, REDIS_URL: 'unix:///run/redis.sock' }), /unix socket, which Sentinel cannot hand out/)
  t.equal(refusal({ ...SENTINELS, REDIS_URL: 'rediss://MyMaster' }), '(accepted)', 'the master name in any case, TLS to the data nodes')
})

t.test('Sentinel and Redis Cluster are two deployments: both set is refused, naming both', async t => {
  const message = refusal({ ...SENTINELS, REDIS_CLUSTER_NODES: '10.0.0.1:6379' })
  t.match(message, /REDIS_CLUSTER_NODES .*REDIS_SENTINELS .*not both/)
  t.equal(loadConfig({ ...BASE, REDIS_CLUSTER_NODES: '10.0.0.1:6379' }).demoEnabled, false, 'no demo by default on a cluster either')
})

t.test('the access settings reach every data connection through the Sentinels', async t => {
  const ca = makeTestCa()
  t.teardown(() => { ca.remove() })
  /** The ioredis options of one (never connected) data connection. */
  const optionsOf = (target: SentinelTarget, access: Parameters<typeof sentinelConnection>[1]): Record<string, any> => {
    const client = sentinelConnection(target, access).connect({ lazyConnect: true })
    t.teardown(() => { client.disconnect() })
    return client.options as Record<string, any>
  }

  // User and password from the variables, without REDIS_URL.
  const plain = loadConfig({ ...BASE, ...SENTINELS, REDIS_USERNAME: 'app', REDIS_PASSWORD: 'data-pw' })
  t.same(plain.redisAccess, { username: 'app', password: 'data-pw' }, 'REDIS_USERNAME and REDIS_PASSWORD are taken beside REDIS_SENTINELS')
  const o = optionsOf(sentinelTargetOf(plain) as SentinelTarget, plain.redisAccess)
  t.equal(o.username, 'app')
  t.equal(o.password, 'data-pw')
  t.equal(o.tls, undefined, 'no TLS without rediss://')
  t.equal(o.name, 'mymaster')

  // TLS to the data nodes: a rediss:// REDIS_URL with the master name as host, and the CA file.
  const tls = loadConfig({ ...BASE, ...SENTINELS, REDIS_URL: 'rediss://mymaster', REDIS_PASSWORD: 'data-pw', REDIS_TLS_CA_FILE: ca.caCert, REDIS_TLS_CERT_FILE: ca.clientCert, REDIS_TLS_KEY_FILE: ca.clientKey })
  t.match(tls.redisAccess.tls?.ca, /BEGIN CERTIFICATE/)
  const ot = optionsOf(sentinelTargetOf(tls) as SentinelTarget, tls.redisAccess)
  t.match(ot.tls?.ca, /BEGIN CERTIFICATE/, 'the CA is on the data connection')
  t.match(ot.tls?.cert, /BEGIN CERTIFICATE/, 'and the client certificate')
  t.equal(ot.enableTLSForSentinelMode, true, 'TLS is used for the master the Sentinels name')
  t.equal(ot.password, 'data-pw')

  t.match(ot.sentinelTLS?.ca, /BEGIN CERTIFICATE/, 'rediss:// in REDIS_URL alone: the Sentinels are asked over TLS too, with the same CA')

  // TLS files without rediss:// are refused, saying what to give.
  t.match(refusal({ ...SENTINELS, REDIS_TLS_CA_FILE: ca.caCert }), /REDIS_TLS_CA_FILE .*neither REDIS_SENTINELS nor REDIS_URL is rediss:\/\/.*rediss:\/\/<master name>/)
  // One place per credential, as for one Redis.
  t.match(refusal({ ...SENTINELS, REDIS_URL: 'redis://:in-url@mymaster', REDIS_PASSWORD: 'data-pw' }), /password in one place/)
})

t.test('TLS on each side: one rediss:// applies to both, redis:// on the other side keeps that side plain', async t => {
  const ca = makeTestCa()
  t.teardown(() => { ca.remove() })
  const sides = (env: Record<string, string>): { sentinels: boolean, dataNodes: boolean, servername?: string } => {
    const config = loadConfig({ ...BASE, REDIS_SENTINEL_MASTER: 'mymaster', REDIS_TLS_CA_FILE: ca.caCert, REDIS_TLS_SERVERNAME: 'redis.internal', ...env })
    const client = sentinelConnection(sentinelTargetOf(config) as SentinelTarget, config.redisAccess).connect({ lazyConnect: true })
    t.teardown(() => { client.disconnect() })
    const o = client.options as Record<string, any>
    t.equal(o.tls !== undefined, o.enableTLSForSentinelMode === true, 'tls and enableTLSForSentinelMode go together')
    if (o.sentinelTLS !== undefined) t.match(o.sentinelTLS.ca, /BEGIN CERTIFICATE/, 'the Sentinels\' TLS has the CA')
    return { sentinels: o.sentinelTLS !== undefined, dataNodes: o.enableTLSForSentinelMode === true, servername: o.tls?.servername ?? o.sentinelTLS?.servername }
  }
  t.same(sides({ REDIS_SENTINELS: 'rediss://s1:26379,rediss://s2:26379' }), { sentinels: true, dataNodes: true, servername: 'redis.internal' }, 'rediss:// Sentinels, no REDIS_URL: both')
  t.same(sides({ REDIS_SENTINELS: 's1:26379', REDIS_URL: 'rediss://mymaster' }), { sentinels: true, dataNodes: true, servername: 'redis.internal' }, 'rediss:// REDIS_URL, bare Sentinels: both')
  t.same(sides({ REDIS_SENTINELS: 'redis://s1:26379', REDIS_URL: 'rediss://mymaster' }), { sentinels: false, dataNodes: true, servername: 'redis.internal' }, 'redis:// Sentinels: only the data nodes')
  t.same(sides({ REDIS_SENTINELS: 'rediss://s1:26379', REDIS_URL: 'redis://mymaster' }), { sentinels: true, dataNodes: false, servername: 'redis.internal' }, 'redis:// REDIS_URL: only the Sentinels')
  t.match(refusal({ REDIS_SENTINELS: 'rediss://s1:26379,s2:26379', REDIS_SENTINEL_MASTER: 'mymaster' }), /REDIS_SENTINELS has rediss:\/\/ and plain entries/)
  const withPassword = refusal({ REDIS_SENTINELS: 'rediss://:hunter2-secret@s1:26379', REDIS_SENTINEL_MASTER: 'mymaster' })
  t.match(withPassword, /REDIS_SENTINELS has an entry with a user or password in it/)
  t.notMatch(withPassword, /hunter2/, 'never quoted')
  t.same(sentinelAddress('rediss://[::1]:26380'), { host: '::1', port: 26380 })
})
