/**
 * The hash slot the gateway computes for a key (where its per-master probe
 * streams land) is the one Redis Cluster computes: values from `CLUSTER
 * KEYSLOT` on redis-server 7.0.15, hash tags included.
 */
import t from 'tap'
import { keySlot, parseClusterNode } from '../../src/source/cluster-connection.js'

t.test('keySlot agrees with CLUSTER KEYSLOT, hash tags included', async t => {
  const redisSays: Record<string, number> = {
    foo: 12182,
    bar: 5061,
    hello: 866,
    'sse:user:42': 2919,
    '{user1000}.following': 3443,
    '{}x': 10595,
    'a{}b{c}': 7353,
    ünïcode: 6051,
  }
  for (const [key, slot] of Object.entries(redisSays)) t.equal(keySlot(key), slot, key)
  t.equal(keySlot('sse:__gateway:probe:{p7}:abc'), keySlot('p7'), 'a probe key lands where its tag does')
})

t.test('parseClusterNode: host:port, IPv6 in brackets', async t => {
  t.same(parseClusterNode('10.0.0.1:7000'), { host: '10.0.0.1', port: 7000 })
  t.same(parseClusterNode(' redis-a.example:6379 '), { host: 'redis-a.example', port: 6379 })
  t.same(parseClusterNode('[::1]:7002'), { host: '::1', port: 7002 })
  t.throws(() => parseClusterNode('redis-a.example'), /host:port/)
})
