/**
 * A throwaway Redis Cluster for a bench: masters and replicas (3 + 3 by
 * default) from Debian's `redis-server` on free loopback ports in a temp
 * folder, `cluster-enabled yes`, `--save "" --appendonly no`, made with
 * `redis-cli --cluster create ... --cluster-replicas 1`, as
 * test/helpers/cluster.ts does for the tests. Each node is stopped by its
 * PID (SIGTERM, then SIGKILL), also when the bench crashes.
 *
 * CPU per node comes from /proc/<pid>/stat, as for any child here; the
 * window sums the masters for "Redis CPU" and keeps every node's own.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { ClusterProducer } from './producer.js'
import { commandStatsOf, feedsOf, freePort, nodeArgsFromEnv, onCleanup, procCpuSeconds, type MeasuredRedis, type NodeFeeds, type RedisNode } from './procs.js'

const run = promisify(execFile)

/**
 * The feed of the cluster rows, in one place (BENCH_REDIS_ARGS overrides it
 * for a run): no server setting, as a user starts, so each master is fed by
 * client tracking and the standalone reference reads with the default
 * reader (track) too; the two differ by the cluster only. For the
 * notification feeds: `{ redisArgs: ['--notify-keyspace-events', 'Kt'],
 * standaloneGatewayEnv: { READER_MODE: 'notify' } }` (and READER_MODE=notify
 * for the cluster gateway through BENCH_GATEWAY_ENV).
 */
export const CLUSTER_FEED: { readonly redisArgs: readonly string[], readonly standaloneGatewayEnv: Readonly<Record<string, string>> } = { redisArgs: [], standaloneGatewayEnv: {} }

/** The redis-server arguments of this run's nodes (and of the standalone reference). */
export function clusterRedisArgs (): readonly string[] {
  const fromEnv = nodeArgsFromEnv('BENCH_REDIS_ARGS')
  return fromEnv.length > 0 ? fromEnv : CLUSTER_FEED.redisArgs
}

export interface BenchCluster extends MeasuredRedis {
  /** `127.0.0.1:p1,...` (the masters), as REDIS_CLUSTER_NODES takes it. */
  readonly seeds: string
  readonly masters: readonly RedisNode[]
  readonly replicas: readonly RedisNode[]
  /** XADD to the master of each key's slot (the slot map as it was at start). */
  producer (): ClusterProducer
  stop (): Promise<void>
}

interface Node {
  readonly port: number
  readonly address: string
  readonly proc: ChildProcess
  readonly client: Redis
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function until (check: () => Promise<boolean>, what: string, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`cluster: timed out waiting for ${what}`)
    await sleep(100)
  }
}

/** CLUSTER NODES as seen by one node: address, role and slot ranges of each. */
async function clusterView (client: Redis): Promise<Array<{ address: string, master: boolean, slots: Array<[number, number]> }>> {
  const text = String(await client.call('CLUSTER', 'NODES'))
  return text.trim().split('\n').map(line => {
    const [, addr, flags, , , , , , ...ranges] = line.split(' ')
    const slots = ranges.filter(r => !r.startsWith('[')).map(r => {
      const [a, b] = r.split('-').map(Number)
      return [a as number, (b ?? a) as number] as [number, number]
    })
    return { address: (addr as string).split('@')[0] as string, master: (flags as string).split(',').includes('master'), slots }
  })
}

export async function startCluster (opts: { masters?: number, replicas?: number } = {}): Promise<BenchCluster> {
  const masterCount = opts.masters ?? 3
  const replicasEach = opts.replicas ?? 1
  const dir = mkdtempSync(join(tmpdir(), 'sse-gw-bench-cluster-'))
  const args = clusterRedisArgs()
  const nodes: Node[] = []
  const alive = (n: Node): boolean => n.proc.exitCode === null && n.proc.signalCode === null
  const unhook = onCleanup(() => {
    for (const n of nodes) if (alive(n) && n.proc.pid !== undefined) process.kill(n.proc.pid, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  const launch = async (): Promise<void> => {
    const port = await freePort()
    const proc = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      // A node starved of CPU by the gateway and the load generator for a
      // second must not be failed over mid-window (the tests' 1 s could);
      // Redis's 15 s default made the replicas known to every node only
      // after about 6 s (gossip paced by the timeout), 5 s after about 2.
      '--cluster-node-timeout', '5000',
      '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', join(dir, `redis-${port}.log`),
      ...args,
    ], { stdio: 'ignore' })
    const client = new Redis({ host: '127.0.0.1', port, protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
    client.on('error', () => {})
    const node = { port, address: `127.0.0.1:${port}`, proc, client }
    nodes.push(node)
    await until(async () => {
      if (!alive(node)) throw new Error(`redis-server on ${port} exited`)
      if (client.status !== 'ready') {
        client.disconnect()
        await client.connect()
      }
      return await client.ping() === 'PONG'
    }, `redis-server on ${port}`, 10000)
  }
  const stop = async (): Promise<void> => {
    for (const n of nodes) n.client.disconnect()
    await Promise.all(nodes.map(async n => {
      if (!alive(n) || n.proc.pid === undefined) return
      const exited = new Promise<void>(resolve => n.proc.once('exit', () => { resolve() }))
      process.kill(n.proc.pid, 'SIGTERM')
      const timer = setTimeout(() => { if (alive(n) && n.proc.pid !== undefined) process.kill(n.proc.pid, 'SIGKILL') }, 3000)
      await exited
      clearTimeout(timer)
    }))
    unhook()
    rmSync(dir, { recursive: true, force: true })
  }
  let slotOwner: Int16Array
  let masters: Node[]
  try {
    await Promise.all(Array.from({ length: masterCount * (1 + replicasEach) }, launch))
    await run('redis-cli', ['--cluster', 'create', ...nodes.map(n => n.address), '--cluster-replicas', String(replicasEach), '--cluster-yes'])
    await until(async () => {
      for (const n of nodes) {
        if (!/cluster_state:ok/.test(String(await n.client.call('CLUSTER', 'INFO')))) return false
        const view = await clusterView(n.client)
        if (view.filter(v => v.master && v.slots.length > 0).length !== masterCount) return false
        if (view.filter(v => !v.master).length !== masterCount * replicasEach) return false
      }
      return true
    }, 'cluster_state:ok and the whole topology on every node')
    const view = await clusterView(nodes[0]?.client as Redis)
    masters = nodes.filter(n => view.some(v => v.address === n.address && v.master))
    slotOwner = new Int16Array(16384).fill(-1)
    for (const v of view) {
      const at = masters.findIndex(m => m.address === v.address)
      for (const [a, b] of v.slots) slotOwner.fill(at, a, b + 1)
    }
  } catch (err) {
    await stop()
    throw err
  }
  const asNode = (n: Node, role: RedisNode['role']): RedisNode => ({ address: n.address, role, pid: n.proc.pid as number })
  const masterNodes = masters.map(n => asNode(n, 'master'))
  const replicaNodes = nodes.filter(n => !masters.includes(n)).map(n => asNode(n, 'replica'))
  return {
    seeds: masters.map(n => n.address).join(','),
    masters: masterNodes,
    replicas: replicaNodes,
    async cpuSeconds () {
      return masterNodes.reduce((sum, n) => sum + procCpuSeconds(n.pid), 0)
    },
    async commandStats () {
      const sum: Record<string, { calls: number, usec: number }> = {}
      for (const m of masters) {
        for (const [cmd, s] of Object.entries(await commandStatsOf(m.client))) {
          const acc = sum[cmd] ?? (sum[cmd] = { calls: 0, usec: 0 })
          acc.calls += s.calls
          acc.usec += s.usec
        }
      }
      return sum
    },
    nodes: () => [...masterNodes, ...replicaNodes],
    feeds: async (): Promise<NodeFeeds[]> => await Promise.all(masters.map(async m => await feedsOf(m.client, m.address))),
    producer: () => new ClusterProducer(masters.map(m => ({ host: '127.0.0.1', port: m.port })), slot => slotOwner[slot] ?? -1),
    stop,
  }
}
