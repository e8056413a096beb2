/**
 * Q4, idle memory: N idle authenticated connections held by the gateway,
 * bytes of RSS per connection, against a raw node:http server that holds the
 * same idle SSE responses (headers and a `retry:`, nothing else) in the same
 * run. Both are warmed up with a few connections first, so the figure is the
 * growth per connection, not start-up allocation; the growth over the second
 * half alone (marginal bytes) is reported too.
 * Target: at most 1.5x raw Node's bytes per connection and no more than 16 KB.
 *
 * Both processes preload the same memory probe (MEMORY_PROBE_ARGS) and are
 * measured after two full garbage collections, so the figure does not move
 * with when V8 last collected (plain RSS, without the probe, moved between
 * 1.4x and 1.75x over twelve runs of one build). IDLE_GC=0 measures plain RSS.
 *
 * Env: IDLE_CONNECTIONS (1000), IDLE_SHAPE (`user`: each connection its own
 * user channel; `topic`: all on one topic), IDLE_SETTLE_MS (2000),
 * BENCH_WORKERS (2), BENCH_CEILING (1); IDLE_SIGNAL_AFTER_OPEN (a signal sent to
 * the gateway once every connection is open, e.g. SIGUSR2 with
 * BENCH_GATEWAY_NODE_ARGS="--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=d"),
 * IDLE_SIGNAL_KINDS (`gateway`; `gateway,ceiling` with BENCH_CEILING_NODE_ARGS
 * set the same way), IDLE_SIGNAL_WAIT_MS (15000); IDLE_PROTOCOL (h1; `h2`:
 * the gateway over h2c, IDLE_H2_STREAMS_PER_CONNECTION (100) streams on each
 * connection, bytes per stream against the raw ceiling's per HTTP/1.1
 * connection).
 */
import { Window, commonParams, context, envInt, maxConnections, round, runBench, sleep, type WindowResult } from './lib/common.js'
import { LoadGen, type StreamsSpec } from './lib/loadgen.js'
import { MEMORY_PROBE_ARGS, probeMemory, startCeiling, startGateway, startRedis, type ProbedMemory, type ServerProcess } from './lib/procs.js'

const TARGET_RATIO = 1.5
const TARGET_BYTES = 16 * 1024
const TARGET_CONNECTIONS = 10000

interface Reading {
  /** VmRSS, median of five samples after the settle time. */
  readonly rss: number
  /** After two full collections (MEMORY_PROBE_ARGS); null with IDLE_GC=0. */
  readonly probed: ProbedMemory | null
}

async function reading (server: ServerProcess, settleMs: number, gc: boolean): Promise<Reading> {
  const rss = await rssSettled(server, settleMs)
  return { rss, probed: gc ? await probeMemory(server) : null }
}

function perConnection (from: Reading, to: Reading, n: number): { rss: number, rssAfterGc: number | null, heap: number | null } {
  const a = from.probed
  const b = to.probed
  return {
    rss: Math.round((to.rss - from.rss) / n),
    rssAfterGc: a === null || b === null ? null : Math.round((b.vmRss - a.vmRss) / n),
    // JS heap plus memory outside it that V8 knows of (Buffers): what the process holds per connection.
    heap: a === null || b === null ? null : Math.round((b.heapUsed + b.external - a.heapUsed - a.external) / n),
  }
}

async function rssSettled (server: ServerProcess, settleMs: number): Promise<number> {
  await sleep(settleMs)
  const samples: number[] = []
  for (let i = 0; i < 5; i++) {
    samples.push(server.rssBytes())
    await sleep(100)
  }
  return samples.sort((a, b) => a - b)[2] as number
}

runBench('idle-memory', 300_000, async () => {
  const common = commonParams()
  const connections = maxConnections(envInt('IDLE_CONNECTIONS', 1000), 'idle-memory')
  const shape = process.env.IDLE_SHAPE === 'topic' ? 'topic' : 'user'
  const settleMs = envInt('IDLE_SETTLE_MS', 2000)
  const gc = process.env.IDLE_GC !== '0'
  const nodeArgs = gc ? MEMORY_PROBE_ARGS : []
  const warmup = Math.min(200, Math.max(1, Math.floor(connections / 10)))
  const h2 = process.env.IDLE_PROTOCOL === 'h2' ? envInt('IDLE_H2_STREAMS_PER_CONNECTION', 100) : undefined
  const redis = await startRedis()
  const loadgen = LoadGen.start(common.workers)
  try {
    const spec: Omit<StreamsSpec, 'host' | 'port'> = shape === 'user'
      ? { path: '/events', token: { sub: 'idle{i}', topics: [] } }
      : { path: '/events?topic=idle', token: { topics: ['idle'] } }
    const measure = async (kind: 'gateway' | 'ceiling'): Promise<Record<string, unknown> & { bytesPerConnection: number, heapBytesPerConnection: number | null, window: WindowResult }> => {
      const prefix = `bench:idle:${kind}:`
      const server = kind === 'gateway'
        ? await startGateway({ redisUrl: redis.url, keyPrefix: prefix, nodeArgs, ...(h2 === undefined ? {} : { env: { HTTP2_CLEARTEXT: 'true' } }) })
        : await startCeiling({ redisUrl: redis.url, keyPrefix: prefix, idle: true, nodeArgs })
      try {
        const target = { ...spec, host: server.host, port: server.port, ...(kind === 'gateway' && h2 !== undefined ? { h2StreamsPerSession: h2 } : {}) }
        const warm = await loadgen.open(target, warmup, 10_000_000)
        if (warm.ok === 0) throw new Error(`${kind}: warm-up connections failed: ${JSON.stringify(warm.statuses)} ${warm.firstError ?? ''}`)
        await loadgen.closeAll()
        const before = await reading(server, 500, gc)
        // Half, then the rest: the second half's growth is the marginal cost,
        // free of one-time allocations that the first connections trigger.
        const half = Math.floor(connections / 2)
        const window = await Window.open(server, redis, loadgen)
        const first = await loadgen.open(target, half, 0)
        const w1 = await window.close((await loadgen.report()).cpuSeconds)
        const middle = await reading(server, settleMs, gc)
        const window2 = await Window.open(server, redis, loadgen)
        const second = await loadgen.open(target, connections - half, half)
        const w = await window2.close((await loadgen.report()).cpuSeconds)
        const after = await reading(server, settleMs, gc)
        const held = (await loadgen.report()).open
        const signal = process.env.IDLE_SIGNAL_AFTER_OPEN
        const signalled = (process.env.IDLE_SIGNAL_KINDS ?? 'gateway').split(',')
        if (signal !== undefined && signal !== '' && signalled.includes(kind)) {
          // e.g. SIGUSR2 with BENCH_GATEWAY_NODE_ARGS="--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=..."
          process.kill(server.pid, signal as NodeJS.Signals)
          await sleep(envInt('IDLE_SIGNAL_WAIT_MS', 15000))
        }
        const open = { ok: first.ok + second.ok, failed: first.failed + second.failed, ms: first.ms + second.ms, statuses: first.statuses, firstError: first.firstError ?? second.firstError }
        if (open.ok === 0) throw new Error(`${kind}: no connection opened: ${JSON.stringify(open.statuses)} ${open.firstError ?? ''}`)
        const all = perConnection(before, after, open.ok)
        const marginal = second.ok === 0 ? null : perConnection(middle, after, second.ok)
        return {
          open,
          held,
          before,
          middle,
          after,
          // After full collections when probed, else plain RSS.
          bytesPerConnection: all.rssAfterGc ?? all.rss,
          rssBytesPerConnection: all.rss,
          rssAfterGcBytesPerConnection: all.rssAfterGc,
          heapBytesPerConnection: all.heap,
          marginal,
          cpuSecondsToOpenFirstHalf: w1.serverCpuSeconds,
          openSeconds: round(open.ms / 1000, 2),
          cpuSecondsToOpenSecondHalf: w.serverCpuSeconds,
          window: w,
        }
      } finally {
        await loadgen.closeAll()
        await server.stop()
      }
    }
    const ceiling = common.ceiling ? await measure('ceiling') : null
    const gateway = await measure('gateway')
    const gw = gateway.bytesPerConnection
    const raw = ceiling === null ? null : ceiling.bytesPerConnection
    const times = raw === null || raw <= 0 ? null : round(gw / raw, 3)
    return {
      summary: {
        question: h2 === undefined ? 'Q4 idle memory' : `Q4 idle memory, h2c streams (${h2} per connection)`,
        figure: gw,
        unit: gc ? 'bytes RSS per idle connection, after full GC' : 'bytes RSS per idle connection',
        ceiling: raw,
        ratio: raw === null || gw <= 0 ? null : round(raw / gw, 3),
        target: `<= ${TARGET_RATIO}x raw node:http and <= ${TARGET_BYTES} bytes`,
        pass: gw <= TARGET_BYTES && (times === null || times <= TARGET_RATIO),
        atTargetSize: connections >= TARGET_CONNECTIONS,
      },
      params: { connections, shape, settleMs, warmup, workers: common.workers, gc, h2StreamsPerConnection: h2 ?? null },
      heapRatio: gateway.heapBytesPerConnection === null || ceiling?.heapBytesPerConnection == null || ceiling.heapBytesPerConnection <= 0
        ? null
        : round(gateway.heapBytesPerConnection / ceiling.heapBytesPerConnection, 3),
      context: context(gateway.window),
      timesRaw: times,
      gateway,
      ceiling,
    }
  } finally {
    await loadgen.stop()
    await redis.stop()
  }
})
