/**
 * A scenario on a Redis Cluster beside the same scenario on one Redis, in
 * the same run (`BENCH_ENGINE=cluster` in fanout.ts and per-user.ts): the
 * gateway against the gateway, since the raw ceiling reads one Redis only.
 * The standalone reference listens on loopback TCP like the cluster's nodes
 * (not on the unix socket of the other rows), gets the same redis-server
 * arguments and a reader with the same kind of feed (CLUSTER_FEED), so what
 * differs is the cluster. One Redis first, then the cluster: never both at
 * once on the machine.
 *
 * Figures per engine: every entry accounted for after production stops
 * (delivered, lost, duplicated), p50/p99, gateway CPU, Redis CPU of each
 * master (and each replica) from /proc; then cluster / standalone ratios.
 *
 * Env: BENCH_CLUSTER_MASTERS (3), BENCH_CLUSTER_REPLICAS (1),
 * BENCH_SETTLE_MS (10000: how long to wait for the last entries).
 */
import { envInt, progress, round } from './common.js'
import { CLUSTER_FEED, clusterRedisArgs, startCluster, type BenchCluster } from './cluster.js'
import type { StreamingResult } from './phase.js'
import { startRedis, type BenchRedis } from './procs.js'

export type Engine = 'standalone' | 'cluster'

/** BENCH_ENGINE: `cluster` runs the scenario on a cluster beside one Redis; unset, the program as before. */
export function clusterRequested (): boolean {
  const raw = (process.env.BENCH_ENGINE ?? '').trim()
  if (raw === '' || raw === 'standalone') return false
  if (raw === 'cluster') return true
  throw new Error(`BENCH_ENGINE must be standalone or cluster, got "${raw}"`)
}

export interface ClusterParams {
  readonly masters: number
  readonly replicas: number
  readonly settleMs: number
  readonly redisArgs: readonly string[]
}

export function clusterParams (): ClusterParams {
  const masters = envInt('BENCH_CLUSTER_MASTERS', 3)
  if (masters < 3) throw new Error(`BENCH_CLUSTER_MASTERS must be at least 3 (redis-cli --cluster create needs 3 masters), got ${masters}`)
  return { masters, replicas: envInt('BENCH_CLUSTER_REPLICAS', 1), settleMs: envInt('BENCH_SETTLE_MS', 10000), redisArgs: clusterRedisArgs() }
}

/** One engine's figures, as the comparison table shows them. */
export interface EngineFigures {
  readonly engine: Engine
  /** The gateway's reader, from /readyz (`cluster` on a cluster). */
  readonly reader: string | null
  /** What fed it, seen on Redis at the window's end (notify, track). */
  readonly feed: string
  /** The feed as the gateway names it in /readyz (`feed`), where it does. */
  readonly gatewayFeed: string | null
  /** Delivered within the measured window, % of the offered deliveries. */
  readonly windowDeliveredPct: number
  readonly expected: number | null
  readonly received: number | null
  readonly lost: number | null
  readonly duplicates: number | null
  /** Every stream stayed open: lost and duplicates are exact. */
  readonly exact: boolean
  readonly p50Ms: number | null
  readonly p99Ms: number | null
  readonly gatewayCpuPct: number
  readonly microsPerDelivery: number
  /** Every master together (one Redis: that Redis), from /proc. */
  readonly redisCpuPct: number
  readonly masters: ReadonlyArray<{ address: string, cpuPct: number }>
  readonly replicas: ReadonlyArray<{ address: string, cpuPct: number }>
}

export interface ClusterComparison {
  readonly masters: number
  readonly replicas: number
  /** The redis-server arguments of both engines. */
  readonly redisArgs: readonly string[]
  readonly standalone: EngineFigures
  readonly cluster: EngineFigures
  /** Cluster / standalone: above 1 means the cluster costs more (or is slower). */
  readonly ratios: {
    readonly p50: number | null
    readonly p99: number | null
    readonly gatewayCpu: number | null
    readonly microsPerDelivery: number | null
    /** Every master together against the one Redis. */
    readonly redisCpu: number | null
    /** Each master against the one Redis (same order as `cluster.masters`). */
    readonly redisCpuPerMaster: Array<number | null>
  }
}

function ratio (a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : round(a / b, 3)
}

export function figuresOf (engine: Engine, r: StreamingResult): EngineFigures {
  const masters = r.window.redisNodes.filter(n => n.role === 'master')
  const a = r.accounting
  return {
    engine,
    reader: r.reader ?? null,
    feed: r.feed,
    gatewayFeed: typeof r.gatewaySays?.readyz?.feed === 'string' ? r.gatewaySays.readyz.feed : null,
    windowDeliveredPct: r.deliveredPct,
    expected: a?.expected ?? null,
    received: a?.received ?? null,
    lost: a?.lost ?? null,
    duplicates: a?.duplicates ?? null,
    exact: a?.complete ?? false,
    p50Ms: r.latency.p50Ms,
    p99Ms: r.latency.p99Ms,
    gatewayCpuPct: r.window.serverCpuPct,
    microsPerDelivery: r.microsPerDelivery,
    redisCpuPct: round(masters.reduce((s, n) => s + n.cpuPct, 0), 1),
    masters: masters.map(n => ({ address: n.address, cpuPct: n.cpuPct })),
    replicas: r.window.redisNodes.filter(n => n.role === 'replica').map(n => ({ address: n.address, cpuPct: n.cpuPct })),
  }
}

/**
 * Runs `phase` on one Redis, then on a fresh cluster, each started and
 * stopped here, and sets the two side by side.
 */
export async function onClusterBesideStandalone (params: ClusterParams, phase: (redis: BenchRedis | BenchCluster, engine: Engine, gatewayEnv: Record<string, string>) => Promise<StreamingResult>): Promise<{ standalone: StreamingResult, cluster: StreamingResult, comparison: ClusterComparison }> {
  const one = await startRedis({ tcp: true, args: params.redisArgs })
  let standalone: StreamingResult
  try {
    progress(`standalone Redis (pid ${one.pid}, ${params.redisArgs.join(' ') || 'no arguments'})`)
    standalone = await phase(one, 'standalone', { ...CLUSTER_FEED.standaloneGatewayEnv })
  } finally {
    await one.stop()
  }
  const cluster = await startCluster({ masters: params.masters, replicas: params.replicas })
  let onCluster: StreamingResult
  try {
    progress(`cluster of ${params.masters} masters (${cluster.seeds}) and ${cluster.replicas.length} replicas`)
    onCluster = await phase(cluster, 'cluster', {})
  } finally {
    await cluster.stop()
  }
  const s = figuresOf('standalone', standalone)
  const c = figuresOf('cluster', onCluster)
  return {
    standalone,
    cluster: onCluster,
    comparison: {
      masters: params.masters,
      replicas: params.replicas,
      redisArgs: params.redisArgs,
      standalone: s,
      cluster: c,
      ratios: {
        p50: ratio(c.p50Ms, s.p50Ms),
        p99: ratio(c.p99Ms, s.p99Ms),
        gatewayCpu: ratio(c.gatewayCpuPct, s.gatewayCpuPct),
        microsPerDelivery: ratio(c.microsPerDelivery, s.microsPerDelivery),
        redisCpu: ratio(c.redisCpuPct, s.redisCpuPct),
        redisCpuPerMaster: c.masters.map(m => ratio(m.cpuPct, s.redisCpuPct)),
      },
    },
  }
}

/** `cluster (feed notify)`; with what the gateway calls its feed when it names one that differs. */
export function readerAndFeed (f: EngineFigures): string {
  const says = f.gatewayFeed !== null && f.gatewayFeed !== f.feed ? `, gateway: ${f.gatewayFeed}` : ''
  return `${f.reader ?? '?'} (feed ${f.feed}${says})`
}

/** What ran, for the question's name: `Redis Cluster of 3 masters, reader cluster (feed notify), beside one Redis, reader notify (feed notify)`. */
export function readersOf (c: ClusterComparison): string {
  return `Redis Cluster of ${c.masters} masters, reader ${readerAndFeed(c.cluster)}, beside one Redis, reader ${readerAndFeed(c.standalone)}`
}

/** Lost or duplicated entries on either engine, for the summary's note; undefined when none. */
export function lossNote (c: ClusterComparison): string | undefined {
  const parts: string[] = []
  for (const f of [c.cluster, c.standalone]) {
    if (f.lost === null) parts.push(`${f.engine}: not counted`)
    else if (f.lost > 0 || (f.duplicates ?? 0) > 0) parts.push(`${f.engine}: ${f.lost} of ${f.expected ?? '?'} lost, ${f.duplicates ?? '?'} duplicate or out of order`)
    if (!f.exact) parts.push(`${f.engine}: streams failed to open or were ended, the count is not exact`)
  }
  return parts.length === 0 ? undefined : parts.join('; ')
}

/** Every entry once on the cluster (and the count exact). */
export function everyEntryOnce (f: EngineFigures): boolean {
  return f.exact && f.lost === 0 && f.duplicates === 0
}
