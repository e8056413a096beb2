/**
 * Q5, connect rate: JWT-authenticated connects per second while K streams are
 * open. Raw sockets: each connect sends a fresh token (a new user, so no
 * verify cache helps), waits for the status line and the first frame
 * (`retry:`), then closes the connection; C of them in flight per worker.
 * Figure: connects per gateway CPU-second (what one core sustains), against
 * a raw node:http ceiling that verifies the same HS256 tokens with node:crypto
 * and subscribes the same channel, in the same run.
 * Target: at least 1,000 per second per core.
 *
 * Env: CONNECT_OPEN (500 open streams), CONNECT_SHAPE (`user`: every stream
 * and connect its own user channel; `topic`: all on one topic),
 * CONNECT_CONCURRENCY (32 per worker), BENCH_DURATION_MS (5000),
 * BENCH_WORKERS (2), BENCH_CEILING (1).
 */
import { Window, commonParams, context, envInt, latencySummary, maxConnections, round, runBench, sleep, type WindowResult } from './lib/common.js'
import { LoadGen, type StreamsSpec } from './lib/loadgen.js'
import { startCeiling, startGateway, startRedis } from './lib/procs.js'

const TARGET_PER_CORE = 1000
const TARGET_OPEN = 10000

runBench('connect-rate', 300_000, async () => {
  const common = commonParams()
  const openCount = maxConnections(envInt('CONNECT_OPEN', 500), 'connect-rate')
  const shape = process.env.CONNECT_SHAPE === 'topic' ? 'topic' : 'user'
  const concurrency = Math.max(1, envInt('CONNECT_CONCURRENCY', 32))
  const redis = await startRedis()
  const loadgen = LoadGen.start(common.workers)
  try {
    const held: Omit<StreamsSpec, 'host' | 'port'> = shape === 'user'
      ? { path: '/events', token: { sub: 'held{i}', topics: [] } }
      : { path: '/events?topic=news', token: { topics: ['news'] } }
    const connecting: Omit<StreamsSpec, 'host' | 'port'> = shape === 'user'
      ? { path: '/events', token: { sub: 'new{i}', topics: [] }, concurrency }
      : { path: '/events?topic=news', token: { sub: undefined, topics: ['news'] }, concurrency }
    const measure = async (kind: 'gateway' | 'ceiling'): Promise<Record<string, unknown> & { perCpuSecond: number, failed: number, window: WindowResult }> => {
      const prefix = `bench:connect:${kind}:`
      const server = kind === 'gateway'
        ? await startGateway({ redisUrl: redis.url, keyPrefix: prefix })
        : await startCeiling({ redisUrl: redis.url, keyPrefix: prefix, verify: true })
      try {
        const open = await loadgen.open({ ...held, host: server.host, port: server.port }, openCount, 0)
        if (open.ok === 0) throw new Error(`${kind}: no stream opened: ${JSON.stringify(open.statuses)} ${open.firstError ?? ''}`)
        await sleep(500)
        const window = await Window.open(server, redis, loadgen)
        const loop = await loadgen.connectLoop({ ...connecting, host: server.host, port: server.port }, common.durationMs, 0)
        const w = await window.close(loop.cpuSeconds)
        const stillOpen = (await loadgen.report()).open
        return {
          reader: server.reader ?? null,
          heldOpen: open.ok,
          heldStillOpen: stillOpen,
          openSeconds: round(open.ms / 1000, 2),
          connects: loop.connects,
          failed: loop.failed,
          statuses: loop.statuses,
          firstError: loop.firstError ?? null,
          perSecond: Math.round(loop.connects / w.wallSeconds),
          perCpuSecond: Math.round(loop.connects / Math.max(w.serverCpuSeconds, 0.01)),
          connectLatency: latencySummary(loop.latency),
          window: w,
        }
      } finally {
        await loadgen.closeAll()
        await server.stop()
      }
    }
    const ceiling = common.ceiling ? await measure('ceiling') : null
    const gateway = await measure('gateway')
    return {
      summary: {
        question: `Q5 connect rate [reader ${String(gateway.reader ?? '?')}]`,
        figure: gateway.perCpuSecond,
        unit: 'JWT connects per gateway CPU-second',
        ceiling: ceiling?.perCpuSecond ?? null,
        ratio: ceiling === null ? null : round(gateway.perCpuSecond / ceiling.perCpuSecond, 3),
        target: `>= ${TARGET_PER_CORE} per second per core with ${TARGET_OPEN} open`,
        pass: gateway.perCpuSecond >= TARGET_PER_CORE && gateway.failed === 0,
        atTargetSize: openCount >= TARGET_OPEN,
      },
      context: context(gateway.window),
      params: { open: openCount, shape, concurrencyPerWorker: concurrency, ...common },
      gateway,
      ceiling,
    }
  } finally {
    await loadgen.stop()
    await redis.stop()
  }
})
