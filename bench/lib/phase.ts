/**
 * One streaming measurement against one server (gateway or ceiling): open the
 * streams, produce at a steady rate, warm up, then measure a window: events
 * received, latency, CPU of every process. Used by the fan-out, per-user and
 * channel-scaling benches so both servers see exactly the same traffic. On
 * one Redis or a Redis Cluster (the gateway only: the ceiling reads one
 * Redis). With `settleMs`, every event is accounted for after production
 * stops: received, lost, duplicated.
 */
import { performance } from 'node:perf_hooks'
import { ReclaimSampler, summarizeAgainstBursts, type HostReclaimSummary } from '../host-diagnostics/memory-reclaim.js'
import { Window, latencySummary, progress, round, sleep, type WindowResult } from './common.js'
import type { BenchCluster } from './cluster.js'
import type { LoadGen, StreamsSpec } from './loadgen.js'
import { feedName, gatewayReport, startServer, type BenchRedis, type GatewayReport, type NodeFeeds, type ServerKind } from './procs.js'
import { Pacer, RawProducer, type Producer } from './producer.js'
import type { OpenResult } from './protocol.js'

export interface StreamingPhase {
  readonly kind: ServerKind
  /** The server's KEY_PREFIX (each phase its own keys). */
  readonly keyPrefix: string
  /** One Redis, or a cluster (the gateway then gets REDIS_CLUSTER_NODES). */
  readonly redis: BenchRedis | BenchCluster
  /** More gateway settings (BENCH_GATEWAY_ENV still adds to them). */
  readonly gatewayEnv?: Record<string, string>
  readonly loadgen: LoadGen
  readonly streams: Omit<StreamsSpec, 'host' | 'port'>
  readonly clients: number
  /** Events per second, all streams together. */
  readonly rate: number
  readonly keyFor: (n: number) => string
  /** Clients that receive each event (N for one topic, 1 for per-user streams). */
  readonly receiversPerEvent: number
  readonly payload: string
  readonly warmupMs: number
  readonly durationMs: number
  /**
   * Set the window's events against the host's memory-reclaim bursts
   * (../host-diagnostics/memory-reclaim.ts), counting events slower than
   * this many ms. Unset: no sampling and no per-event trace.
   */
  readonly hostReclaimOverMs?: number
  /**
   * After the window, stop producing and wait up to this many ms for every
   * entry produced since the streams opened to arrive, then count what was
   * lost and duplicated ({@link Accounting}). Unset: no such count.
   */
  readonly settleMs?: number
}

/**
 * Every entry produced since the streams opened, against what the streams
 * received by the end of the settle time. Exact when every stream opened
 * and none was ended by the server (`complete`).
 */
export interface Accounting {
  /** Entries produced times the streams each one is for. */
  readonly expected: number
  readonly received: number
  /** Ids that did not sort after the previous one on their stream: duplicates (or entries out of order). */
  readonly duplicates: number
  /** Expected entries that never arrived (received less duplicates, against expected). */
  readonly lost: number
  /** How long after production stopped the last entry arrived (or the settle time ran out). */
  readonly settledMs: number
  /** Every stream open to the end: the count is exact. */
  readonly complete: boolean
}

export interface StreamingResult {
  /** The gateway's live reader (block, notify, track; cluster); undefined for the ceiling. */
  readonly reader?: string
  /** What fed the live reader, seen on Redis (CLIENT LIST on each master at the window's end): notify, track, none. */
  readonly feed: string
  /** Per master: the feed connections counted there. */
  readonly feeds: NodeFeeds[]
  /** The gateway's /readyz body once it was ready. */
  readonly readyz?: Readonly<Record<string, unknown>>
  /** What the gateway said of its reader at the window's end (/readyz, reader_mode, feed metrics). */
  readonly gatewaySays?: GatewayReport
  readonly open: OpenResult
  readonly eventsProduced: number
  readonly deliveries: number
  readonly offeredDeliveries: number
  readonly deliveredPct: number
  /** Server CPU seconds per 1,000 deliveries. */
  readonly cpuSecondsPer1000Deliveries: number
  readonly deliveriesPerCpuSecond: number
  readonly microsPerDelivery: number
  /** Server plus Redis CPU per delivery. */
  readonly microsPerDeliveryWithRedis: number
  readonly latency: ReturnType<typeof latencySummary>
  readonly window: WindowResult
  readonly serverRssBytes: number
  readonly orderViolations: number
  readonly closedByServer: number
  /** With `hostReclaimOverMs`: which events were in flight while the host's reclaim threads ran. */
  readonly hostReclaim?: HostReclaimSummary
  /** With `settleMs`: every entry produced, against what arrived. */
  readonly accounting?: Accounting
}

/** Waits until the streams received `expected` events, or nothing arrived for a second, or `settleMs` passed. */
async function settle (p: StreamingPhase, expected: number, complete: boolean): Promise<Accounting> {
  const t0 = performance.now()
  let last = await p.loadgen.totals()
  let lastChange = t0
  const settleMs = p.settleMs ?? 0
  while (last.received < expected && performance.now() - t0 < settleMs && performance.now() - lastChange < 1000) {
    await sleep(50)
    const now = await p.loadgen.totals()
    if (now.received !== last.received) lastChange = performance.now()
    last = now
  }
  const settledMs = Math.round((last.received >= expected ? performance.now() : lastChange) - t0)
  return {
    expected,
    received: last.received,
    duplicates: last.outOfOrder,
    lost: Math.max(0, expected - (last.received - last.outOfOrder)),
    settledMs,
    complete: complete && last.closedByServer === 0,
  }
}

export async function runStreamingPhase (p: StreamingPhase): Promise<StreamingResult> {
  const cluster = 'seeds' in p.redis ? p.redis : undefined
  const server = await startServer(p.kind, cluster === undefined ? { redisUrl: (p.redis as BenchRedis).url } : { clusterNodes: cluster.seeds }, p.keyPrefix, p.gatewayEnv)
  progress(`${server.name} started (pid ${server.pid}${server.reader === undefined ? '' : `, reader ${server.reader}`}); opening ${p.clients} streams`)
  const producer: Producer = cluster === undefined ? new RawProducer((p.redis as BenchRedis).endpoint) : cluster.producer()
  try {
    const open = await p.loadgen.open({ ...p.streams, host: server.host, port: server.port }, p.clients, 0)
    if (open.ok === 0) throw new Error(`${server.name}: no stream opened (${JSON.stringify(open.statuses)} ${open.firstError ?? ''})`)
    progress(`${open.ok} open in ${Math.round(open.ms)} ms; producing ${p.rate}/s`)
    const pacer = new Pacer(producer, { rate: p.rate, keyFor: p.keyFor, payload: p.payload })
    pacer.start()
    await sleep(p.warmupMs)
    const sent0 = pacer.sent
    const overMs = p.hostReclaimOverMs
    const window = await Window.open(server, p.redis, p.loadgen, overMs !== undefined)
    const sampler = overMs !== undefined ? ReclaimSampler.start() : undefined
    await sleep(p.durationMs)
    const report = await p.loadgen.report()
    const reclaim = sampler?.stop() ?? { bursts: [], ran: [] }
    const sent1 = pacer.sent
    const w = await window.close(report.cpuSeconds)
    const feeds = await p.redis.feeds()
    const says = await gatewayReport(server)
    const hostReclaim = overMs === undefined || report.trace === undefined
      ? undefined
      : summarizeAgainstBursts({ bursts: reclaim.bursts, threads: reclaim.ran, trace: report.trace, windowMs: w.wallSeconds * 1000, overMs })
    const serverRssBytes = server.rssBytes()
    progress(`${server.name}: ${report.events} events in the window, server CPU ${w.serverCpuPct}%, other ${w.otherCpuPct}%`)
    await pacer.stop()
    if (producer.errors > 0) throw new Error(`producer: ${producer.firstError ?? 'errors'}`)
    const accounting = p.settleMs === undefined ? undefined : await settle(p, pacer.sent * p.receiversPerEvent, open.ok === p.clients)
    const produced = sent1 - sent0
    const offered = produced * p.receiversPerEvent
    const deliveries = report.events
    return {
      ...(server.reader === undefined ? {} : { reader: server.reader }),
      feed: feedName(feeds),
      feeds,
      ...(server.readyz === undefined ? {} : { readyz: server.readyz }),
      ...(says === undefined ? {} : { gatewaySays: says }),
      open,
      eventsProduced: produced,
      deliveries,
      offeredDeliveries: offered,
      deliveredPct: round(offered === 0 ? 0 : (100 * deliveries) / offered, 1),
      cpuSecondsPer1000Deliveries: round((1000 * w.serverCpuSeconds) / Math.max(1, deliveries), 6),
      deliveriesPerCpuSecond: Math.round(deliveries / Math.max(w.serverCpuSeconds, 0.01)),
      microsPerDelivery: round((1e6 * w.serverCpuSeconds) / Math.max(1, deliveries), 2),
      microsPerDeliveryWithRedis: round((1e6 * (w.serverCpuSeconds + w.redisCpuSeconds)) / Math.max(1, deliveries), 2),
      latency: latencySummary(report.latency),
      window: w,
      serverRssBytes,
      orderViolations: report.orderViolations,
      closedByServer: report.closedByServer,
      ...(hostReclaim === undefined ? {} : { hostReclaim }),
      ...(accounting === undefined ? {} : { accounting }),
    }
  } finally {
    producer.close()
    await p.loadgen.closeAll()
    await server.stop()
  }
}
