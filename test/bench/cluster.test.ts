/**
 * The bench's Redis Cluster (bench/lib/cluster.ts) and what its figures
 * rest on: the producer sends every key to the master of its slot (a MOVED
 * would fail the phase), the feeds seen on Redis name what the gateway ran
 * (keyspace subscriptions, client tracking), Redis CPU is summed over the
 * masters only, and stopping kills every node it started.
 */
import { Redis } from 'ioredis'
import t from 'tap'
import { figuresOf } from '../../bench/lib/cluster-compare.js'
import { startCluster } from '../../bench/lib/cluster.js'
import type { StreamingResult } from '../../bench/lib/phase.js'
import { feedName, feedsOf } from '../../bench/lib/procs.js'

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('the bench cluster: keys routed to their masters, feeds seen per master, every node stopped by PID', async t => {
  const cluster = await startCluster()
  let stopped = false
  t.teardown(async () => { if (!stopped) await cluster.stop() })
  t.equal(cluster.masters.length, 3, 'three masters')
  t.equal(cluster.replicas.length, 3, 'one replica each')
  t.equal(cluster.seeds.split(',').length, 3, 'the masters are the seeds')

  const producer = cluster.producer()
  const keys = Array.from({ length: 200 }, (_, i) => `bench:t:user:u${i}`)
  for (const k of keys) producer.xadd(k, 'x', 100)
  await producer.drain()
  t.equal(producer.errors, 0, `no MOVED or other error (${producer.firstError ?? 'none'})`)
  producer.close()

  // Each key is on one master, and together they hold every key: the
  // producer spread them over all three.
  const perMaster: number[] = []
  for (const m of cluster.masters) {
    const c = new Redis({ host: '127.0.0.1', port: Number(m.address.split(':')[1]), lazyConnect: true, protocol: 2 })
    c.on('error', () => {})
    await c.connect()
    perMaster.push(Number(await c.dbsize()))
    if (m === cluster.masters[0]) {
      // The feeds a gateway would hold on this master: one keyspace pattern, one tracking connection.
      t.same(await cluster.feeds().then(f => f[0]), { address: m.address, notify: 0, track: 0 }, 'nothing before a feed connects')
      const sub = new Redis({ host: '127.0.0.1', port: Number(m.address.split(':')[1]), lazyConnect: true, protocol: 2 })
      sub.on('error', () => {})
      await sub.connect()
      await sub.psubscribe('__keyspace@0__:bench:*')
      const tracker = new Redis({ host: '127.0.0.1', port: Number(m.address.split(':')[1]), lazyConnect: true })
      tracker.on('error', () => {})
      await tracker.connect()
      await tracker.call('CLIENT', 'TRACKING', 'on')
      const seen = await feedsOf(c, m.address)
      t.same(seen, { address: m.address, notify: 1, track: 1 }, 'a keyspace pattern and a tracking connection are counted')
      t.equal(feedName([seen]), 'notify+track')
      await sub.punsubscribe()
      await sub.subscribe('__keyspace@0__:bench:t:user:u1', '__keyspace@0__:bench:t:user:u2')
      await tracker.call('CLIENT', 'TRACKING', 'off')
      const later = await feedsOf(c, m.address)
      t.same(later, { address: m.address, notify: 2, track: 0 }, 'per-key keyspace channels count too (the standalone notify reader)')
      t.equal(feedName([later]), 'notify')
      sub.disconnect()
      tracker.disconnect()
    }
    c.disconnect()
  }
  t.equal(perMaster.reduce((a, b) => a + b, 0), keys.length, 'every key written once, on one master')
  t.ok(perMaster.every(n => n > 0), `spread over every master (${perMaster.join(', ')})`)
  t.equal(feedName([]), 'none')

  const pids = cluster.nodes().map(n => n.pid)
  t.equal(pids.length, 6)
  await cluster.stop()
  stopped = true
  t.ok(pids.every(pid => !alive(pid)), 'every node process is gone')
})

t.test('figures: Redis CPU is the masters summed, replicas apart; loss and duplicates from the final count', async t => {
  const result = {
    reader: 'cluster',
    feed: 'notify',
    deliveredPct: 99.5,
    latency: { p50Ms: 1, p99Ms: 4, maxMs: 9, meanMs: 1.2, samples: 10 },
    microsPerDelivery: 20,
    window: {
      serverCpuPct: 50,
      redisNodes: [
        { address: 'a', role: 'master', cpuSeconds: 0.1, cpuPct: 2 },
        { address: 'b', role: 'master', cpuSeconds: 0.1, cpuPct: 3 },
        { address: 'c', role: 'replica', cpuSeconds: 0.1, cpuPct: 1 },
      ],
    },
    accounting: { expected: 100, received: 99, duplicates: 1, lost: 2, settledMs: 5, complete: true },
  } as unknown as StreamingResult
  const f = figuresOf('cluster', result)
  t.equal(f.redisCpuPct, 5)
  t.same(f.masters, [{ address: 'a', cpuPct: 2 }, { address: 'b', cpuPct: 3 }])
  t.same(f.replicas, [{ address: 'c', cpuPct: 1 }])
  t.equal(f.lost, 2)
  t.equal(f.duplicates, 1)
  t.equal(f.exact, true)
})
