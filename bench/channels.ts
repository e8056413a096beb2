/**
 * Q3, channel scaling: the same total event rate over 10, 1,000 and 10,000
 * distinct streams (one client per stream, so one delivery per event). CPU
 * per event of the gateway and Redis CPU %, each size against the ceiling
 * (raw node:http, sharded XREAD loops) in the same run. Target: CPU per event
 * grows at most 2x from the smallest to the largest size, and Redis CPU stays
 * under 30% at 10,000 events/s. A size where the gateway fell behind the rate
 * (delivered outside 95-105% of what was produced in the window, or p99 over
 * 1 s) fails the run, since its CPU per event is then not comparable.
 *
 * Env: CHANNELS_SIZES (10,100,1000), CHANNELS_RATE (1000), BENCH_DURATION_MS
 * (5000), BENCH_WARMUP_MS (1000), BENCH_WORKERS (2), BENCH_PAYLOAD_BYTES (64),
 * BENCH_CEILING (1).
 */
import { commonParams, context, envInt, envList, maxConnections, round, runBench } from './lib/common.js'
import { LoadGen } from './lib/loadgen.js'
import { runStreamingPhase, type StreamingResult } from './lib/phase.js'
import { startRedis, type ServerKind } from './lib/procs.js'
import { payloadOf } from './lib/producer.js'

const TARGET_GROWTH = 2
const TARGET_REDIS_PCT = 30
const TARGET_RATE = 10000
/** Beyond this p99 the gateway is queueing, not keeping up with the rate. */
const MAX_P99_MS = 1000

runBench('channels', 420_000, async () => {
  const common = commonParams()
  const sizes = envList('CHANNELS_SIZES', [10, 100, 1000]).map(n => maxConnections(n, 'channels'))
  const rate = envInt('CHANNELS_RATE', 1000)
  const redis = await startRedis()
  const loadgen = LoadGen.start(common.workers)
  try {
    const phase = async (kind: ServerKind, streams: number): Promise<StreamingResult> => {
      const prefix = `bench:channels:${kind}:${streams}:`
      return await runStreamingPhase({
        kind,
        keyPrefix: prefix,
        redis,
        loadgen,
        streams: { path: '/events?topic=c{i}', token: { topics: ['*'] } },
        clients: streams,
        rate,
        keyFor: n => `${prefix}topic:c${n % streams}`,
        receiversPerEvent: 1,
        payload: payloadOf(common.payloadBytes),
        warmupMs: common.warmupMs,
        durationMs: common.durationMs,
      })
    }
    const rows: Array<{ streams: number, gateway: StreamingResult, ceiling: StreamingResult | null }> = []
    for (const streams of sizes) {
      const ceiling = common.ceiling ? await phase('ceiling', streams) : null
      const gateway = await phase('gateway', streams)
      rows.push({ streams, gateway, ceiling })
    }
    const first = rows[0]
    const last = rows[rows.length - 1]
    if (first === undefined || last === undefined) throw new Error('CHANNELS_SIZES is empty')
    const growth = round(last.gateway.microsPerDelivery / first.gateway.microsPerDelivery, 3)
    const ceilingGrowth = first.ceiling === null || last.ceiling === null ? null : round(last.ceiling.microsPerDelivery / first.ceiling.microsPerDelivery, 3)
    const redisPct = last.gateway.window.redisCpuPct
    // CPU per event only compares sizes if the gateway kept up with the rate at each.
    const behind = rows.filter(r => r.gateway.deliveredPct < 95 || r.gateway.deliveredPct > 105 || (r.gateway.latency.p99Ms ?? Infinity) > MAX_P99_MS)
    const note = behind.length === 0
      ? undefined
      : `the gateway did not keep up at ${behind.map(r => `${r.streams} streams (delivered ${r.gateway.deliveredPct}%, p99 ${String(r.gateway.latency.p99Ms)} ms)`).join(', ')}`
    return {
      summary: {
        question: 'Q3 channel scaling',
        figure: growth,
        unit: `x CPU per event, ${first.streams} -> ${last.streams} streams`,
        ceiling: ceilingGrowth,
        ratio: last.ceiling === null ? null : round(last.ceiling.microsPerDelivery / last.gateway.microsPerDelivery, 3),
        target: `growth <= ${TARGET_GROWTH}x and Redis < ${TARGET_REDIS_PCT}% at ${TARGET_RATE} events/s`,
        pass: growth <= TARGET_GROWTH && redisPct < TARGET_REDIS_PCT && note === undefined,
        atTargetSize: first.streams <= 10 && last.streams >= 10000 && rate >= TARGET_RATE,
        ...(note === undefined ? {} : { note }),
      },
      context: context(last.gateway.window),
      params: { sizes, rate, ...common },
      redisCpuPctAtLargest: redisPct,
      table: rows.map(r => ({
        streams: r.streams,
        gatewayMicrosPerEvent: r.gateway.microsPerDelivery,
        gatewayCpuPct: r.gateway.window.serverCpuPct,
        gatewayRedisCpuPct: r.gateway.window.redisCpuPct,
        gatewayP99Ms: r.gateway.latency.p99Ms,
        gatewayDeliveredPct: r.gateway.deliveredPct,
        ceilingMicrosPerEvent: r.ceiling?.microsPerDelivery ?? null,
        ceilingRedisCpuPct: r.ceiling?.window.redisCpuPct ?? null,
        ceilingP99Ms: r.ceiling?.latency.p99Ms ?? null,
        loadgenCpuPct: r.gateway.window.loadgenCpuPct,
        otherCpuPct: r.gateway.window.otherCpuPct,
      })),
      runs: rows,
    }
  } finally {
    await loadgen.stop()
    await redis.stop()
  }
})
