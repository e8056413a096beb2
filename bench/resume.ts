/**
 * Q6, resume: K clients reconnect at once with `Last-Event-ID`, each M
 * events behind, while a producer keeps writing to the stream (topic shape).
 * Two runs, each against the gateway and the ceiling (raw node:http: paged
 * XRANGE, then live) in the same bench:
 *  - replay: few clients far behind: replayed events per CPU-second;
 *  - storm: many clients a little behind: time until every client has caught
 *    up with the backlog.
 * Every stream is checked: first id right after its Last-Event-ID, ids only
 * going up, and the exact number of entries up to the final one (no gap, no
 * duplicate). Targets: at least 100,000 replayed events per second per core;
 * a storm of 10,000 clients each 50 behind caught up within 15 s.
 *
 * The backlog has explicit ids `<base>-<n>` (same ids in every stream, so one
 * Last-Event-ID fits all in the `user` shape); live entries use `*`.
 *
 * Env: RESUME_CLIENTS (20), RESUME_BEHIND (1000), RESUME_STORM_CLIENTS (200),
 * RESUME_STORM_BEHIND (50), RESUME_LIVE_RATE (2 events/s during the storm, to every client:
 * topic shape only), RESUME_SHAPE (`topic`: all clients on one topic; `user`:
 * each its own stream), BENCH_WORKERS (2), BENCH_CEILING (1).
 */
import { performance } from 'node:perf_hooks'
import { Window, commonParams, context, envInt, maxConnections, progress, round, runBench, sleep, type WindowResult } from './lib/common.js'
import { LoadGen, type StreamsSpec } from './lib/loadgen.js'
import { startCeiling, startGateway, startRedis, type BenchRedis } from './lib/procs.js'
import { Pacer, RawProducer, payloadOf } from './lib/producer.js'
import type { OpenResult, UntilResult } from './lib/protocol.js'

const TARGET_PER_CORE = 100_000
const TARGET_STORM_SECONDS = 15
const TARGET_STORM_CLIENTS = 10000
const TARGET_STORM_BEHIND = 50
/** Entries before the clients' Last-Event-ID. */
const BEFORE = 10

interface ResumeRun {
  clients: number
  behind: number
  open: OpenResult
  /** From the first connect to the last client holding its whole backlog. */
  catchUpSeconds: number
  replayed: number
  replayedPerSecond: number
  replayedPerCpuSecond: number
  liveEvents: number
  check: UntilResult & { expectedEvents: number, ok: boolean }
  window: WindowResult
}

const nowEpoch = (): number => performance.timeOrigin + performance.now()

async function writeBacklog (redis: BenchRedis, keys: readonly string[], total: number, payload: string): Promise<string> {
  const base = Date.now() - 60_000
  const producer = new RawProducer(redis.socket)
  try {
    for (const key of keys) {
      for (let n = 1; n <= total; n++) producer.command(['XADD', key, `${base}-${n}`, 'data', payload])
    }
    await producer.drain(60_000)
    if (producer.errors > 0) throw new Error(`backlog: ${producer.firstError ?? 'errors'}`)
  } finally {
    producer.close()
  }
  return String(base)
}

runBench('resume', 300_000, async () => {
  const common = commonParams()
  const shape = process.env.RESUME_SHAPE === 'user' ? 'user' : 'topic'
  const liveRate = shape === 'topic' ? envInt('RESUME_LIVE_RATE', 2) : 0
  const replay = { clients: maxConnections(envInt('RESUME_CLIENTS', 20), 'resume'), behind: envInt('RESUME_BEHIND', 1000) }
  const storm = { clients: maxConnections(envInt('RESUME_STORM_CLIENTS', 200), 'resume'), behind: envInt('RESUME_STORM_BEHIND', 50) }
  const payload = payloadOf(common.payloadBytes)
  const redis = await startRedis()
  const loadgen = LoadGen.start(common.workers)
  try {
    const run = async (kind: 'gateway' | 'ceiling', name: string, clients: number, behind: number, withLive: boolean): Promise<ResumeRun> => {
      const prefix = `bench:resume:${kind}:${name}:`
      const keys = shape === 'topic' ? [`${prefix}topic:resume`] : Array.from({ length: clients }, (_, i) => `${prefix}user:r${i}`)
      const base = await writeBacklog(redis, keys, BEFORE + behind, payload)
      const lastEventId = `${base}-${BEFORE}`
      const firstId = `${base}-${BEFORE + 1}`
      const backlogLast = `${base}-${BEFORE + behind}`
      const server = kind === 'gateway'
        ? await startGateway({ redisUrl: redis.url, keyPrefix: prefix })
        : await startCeiling({ redisUrl: redis.url, keyPrefix: prefix })
      const producer = new RawProducer(redis.socket)
      try {
        const spec: StreamsSpec = shape === 'topic'
          ? { host: server.host, port: server.port, path: '/events?topic=resume', token: { topics: ['resume'] }, lastEventId }
          : { host: server.host, port: server.port, path: '/events', token: { sub: 'r{i}', topics: [] }, lastEventId }
        const pacer = withLive && liveRate > 0 ? new Pacer(producer, { rate: liveRate, keyFor: () => keys[0] as string, payload }) : undefined
        pacer?.start()
        await loadgen.arm(backlogLast)
        const window = await Window.open(server, redis, loadgen)
        const t0 = nowEpoch()
        progress(`${kind} ${name}: ${clients} clients resuming ${behind} behind`)
        const open = await loadgen.open(spec, clients, 0)
        progress(`${kind} ${name}: ${open.ok} open (${JSON.stringify(open.statuses)}) in ${Math.round(open.ms)} ms`)
        const caught = await loadgen.until(backlogLast, 120_000)
        progress(`${kind} ${name}: ${caught.done} caught up, ${caught.notDone} not`)
        const report = await loadgen.report()
        const w = await window.close(report.cpuSeconds)
        const catchUpSeconds = caught.notDone === 0 ? (caught.lastDoneAt - t0) / 1000 : NaN
        // Stop writing, then every stream must end exactly at the stream's last entry.
        await pacer?.stop()
        const tail = (await redis.client.xrevrange(keys[0] as string, '+', '-', 'COUNT', 1))[0]?.[0] ?? backlogLast
        const live = pacer?.sent ?? 0
        const check = await loadgen.until(tail, 30_000, firstId)
        progress(`${kind} ${name}: check ${JSON.stringify(check)}`)
        const expectedEvents = behind + live
        const ok = check.notDone === 0 && check.wrongFirst === 0 && check.wrongLast === 0 && check.orderViolations === 0 &&
          check.minEvents === expectedEvents && check.maxEvents === expectedEvents && open.ok === clients
        const replayed = clients * behind
        return {
          clients,
          behind,
          open,
          catchUpSeconds: round(catchUpSeconds, 3),
          replayed,
          replayedPerSecond: Math.round(replayed / catchUpSeconds),
          replayedPerCpuSecond: Math.round(replayed / Math.max(w.serverCpuSeconds, 0.01)),
          liveEvents: live,
          check: { ...check, expectedEvents, ok },
          window: w,
        }
      } finally {
        producer.close()
        await loadgen.closeAll()
        await server.stop()
        await redis.client.del(...keys)
      }
    }
    const both = async (name: string, clients: number, behind: number, withLive: boolean): Promise<{ gateway: ResumeRun, ceiling: ResumeRun | null }> => {
      const ceiling = common.ceiling ? await run('ceiling', name, clients, behind, withLive) : null
      await sleep(200)
      const gateway = await run('gateway', name, clients, behind, withLive)
      return { gateway, ceiling }
    }
    const replayRuns = await both('replay', replay.clients, replay.behind, false)
    const stormRuns = await both('storm', storm.clients, storm.behind, true)
    const gw = replayRuns.gateway
    const noGap = gw.check.ok && stormRuns.gateway.check.ok
    const stormSeconds = stormRuns.gateway.catchUpSeconds
    return {
      summary: {
        question: 'Q6 resume',
        figure: gw.replayedPerCpuSecond,
        unit: 'replayed events per gateway CPU-second',
        ceiling: replayRuns.ceiling?.replayedPerCpuSecond ?? null,
        ratio: replayRuns.ceiling === null ? null : round(gw.replayedPerCpuSecond / replayRuns.ceiling.replayedPerCpuSecond, 3),
        target: `>= ${TARGET_PER_CORE} per core; storm ${TARGET_STORM_CLIENTS} x ${TARGET_STORM_BEHIND} within ${TARGET_STORM_SECONDS} s, no gap or duplicate`,
        pass: gw.replayedPerCpuSecond >= TARGET_PER_CORE && stormSeconds <= TARGET_STORM_SECONDS && noGap,
        atTargetSize: storm.clients >= TARGET_STORM_CLIENTS && storm.behind >= TARGET_STORM_BEHIND,
      },
      context: context(stormRuns.gateway.window),
      params: { shape, replay, storm, liveRate, workers: common.workers, payloadBytes: common.payloadBytes },
      stormSeconds,
      stormCeilingSeconds: stormRuns.ceiling?.catchUpSeconds ?? null,
      noGapNoDuplicate: noGap,
      replay: replayRuns,
      storm: stormRuns,
    }
  } finally {
    await loadgen.stop()
    await redis.stop()
  }
})
