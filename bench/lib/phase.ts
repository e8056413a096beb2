/**
 * One streaming measurement against one server (gateway or ceiling): open the
 * streams, produce at a steady rate, warm up, then measure a window: events
 * received, latency, CPU of every process. Used by the fan-out, per-user and
 * channel-scaling benches so both servers see exactly the same traffic.
 */
import { ReclaimSampler, summarizeAgainstBursts, type HostReclaimSummary } from '../host-diagnostics/memory-reclaim.js'
import { Window, latencySummary, progress, round, sleep, type WindowResult } from './common.js'
import type { LoadGen, StreamsSpec } from './loadgen.js'
import { startServer, type BenchRedis, type ServerKind } from './procs.js'
import { Pacer, RawProducer } from './producer.js'
import type { OpenResult } from './protocol.js'

export interface StreamingPhase {
  readonly kind: ServerKind
  /** The server's KEY_PREFIX (each phase its own keys). */
  readonly keyPrefix: string
  readonly redis: BenchRedis
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
  /** More gateway settings for this phase (HTTP2_CLEARTEXT for the h2 phase). */
  readonly gatewayEnv?: Record<string, string>
}

export interface StreamingResult {
  /** The gateway's live reader (block, notify, track); undefined for the ceiling. */
  readonly reader?: string
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
}

export async function runStreamingPhase (p: StreamingPhase): Promise<StreamingResult> {
  const server = await startServer(p.kind, p.redis.url, p.keyPrefix, p.gatewayEnv)
  progress(`${server.name} started (pid ${server.pid}); opening ${p.clients} streams`)
  const producer = new RawProducer(p.redis.socket)
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
    const hostReclaim = overMs === undefined || report.trace === undefined
      ? undefined
      : summarizeAgainstBursts({ bursts: reclaim.bursts, threads: reclaim.ran, trace: report.trace, windowMs: w.wallSeconds * 1000, overMs })
    const serverRssBytes = server.rssBytes()
    progress(`${server.name}: ${report.events} events in the window, server CPU ${w.serverCpuPct}%, other ${w.otherCpuPct}%`)
    await pacer.stop()
    if (producer.errors > 0) throw new Error(`producer: ${producer.firstError ?? 'errors'}`)
    const produced = sent1 - sent0
    const offered = produced * p.receiversPerEvent
    const deliveries = report.events
    return {
      ...(server.reader === undefined ? {} : { reader: server.reader }),
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
    }
  } finally {
    producer.close()
    await p.loadgen.closeAll()
    await server.stop()
  }
}
