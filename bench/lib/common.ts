/**
 * What every bench program shares: parameters from env, the machine
 * description, a measurement window over every process involved, and the
 * one-line JSON summary (stdout and bench/results/<name>.json).
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { damonSettings } from '../host-diagnostics/memory-reclaim.js'
import type { Histogram } from './histogram.js'
import type { LoadGen } from './loadgen.js'
import { GATEWAY_ENTRY, RESULTS_DIR, ROOT } from './paths.js'
import { machineCpuSeconds, procCpuSeconds, runCleanups, type MeasuredRedis, type RedisNode, type ServerProcess } from './procs.js'

export function envInt (name: string, def: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === '') return def
  const n = Number(raw.replaceAll('_', ''))
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${raw}"`)
  return Math.floor(n)
}

export function envList (name: string, def: number[]): number[] {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === '') return def
  return raw.split(',').map(s => {
    const n = Number(s.trim().replaceAll('_', ''))
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a comma-separated list of positive numbers, got "${raw}"`)
    return Math.floor(n)
  })
}

/** Parameters every program takes; a program may warm up longer by default (`BENCH_WARMUP_MS` still wins). */
export function commonParams (defaults: { warmupMs?: number } = {}): { durationMs: number, warmupMs: number, workers: number, payloadBytes: number, ceiling: boolean } {
  return {
    durationMs: envInt('BENCH_DURATION_MS', 5000),
    warmupMs: envInt('BENCH_WARMUP_MS', defaults.warmupMs ?? 1000),
    workers: envInt('BENCH_WORKERS', 2),
    payloadBytes: envInt('BENCH_PAYLOAD_BYTES', 64),
    ceiling: process.env.BENCH_CEILING !== '0',
  }
}

/** The soft limit on open files of this process (the caller raises it with `ulimit -n`). */
export function openFilesLimit (): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    return m === null || m[1] === 'unlimited' ? Infinity : Number(m[1])
  } catch {
    return Infinity
  }
}

/**
 * Connections one process may hold with this limit (a little kept for Redis,
 * logs and the runtime). Every process here inherits the same limit.
 */
export function maxConnections (wanted: number, name: string): number {
  const limit = openFilesLimit()
  const room = limit - 200
  if (wanted <= room) return wanted
  process.stderr.write(`${name}: ${wanted} connections do not fit under \`ulimit -n\` ${limit}; using ${room}. Raise it (ulimit -n 65536) for the full size.\n`)
  return Math.max(1, room)
}

export function machine (): Record<string, unknown> {
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memBytes: totalmem(),
    node: process.version,
    platform: process.platform,
    loadavg: loadavg().map(n => Math.round(n * 100) / 100),
    openFilesLimit: openFilesLimit(),
    damon: damonSettings(),
  }
}

/**
 * Which gateway was measured: the commit, whether src/ had uncommitted
 * changes, and when dist/src/main.js was built (others may be editing src/).
 */
export function gatewayBuild (): Record<string, unknown> {
  const git = (...args: string[]): string | null => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    } catch {
      return null
    }
  }
  let builtAt: string | null = null
  try { builtAt = statSync(GATEWAY_ENTRY).mtime.toISOString() } catch {}
  const dirty = git('status', '--porcelain', '--', 'src')
  return { commit: git('rev-parse', '--short', 'HEAD'), srcUncommittedChanges: dirty === null ? null : dirty.length > 0, distBuiltAt: builtAt }
}

export const round = (n: number, digits = 3): number => {
  if (!Number.isFinite(n)) return n
  const f = 10 ** digits
  return Math.round(n * f) / f
}

export function latencySummary (h: Histogram): { p50Ms: number | null, p99Ms: number | null, maxMs: number | null, meanMs: number | null, samples: number } {
  return {
    p50Ms: h.percentile(50),
    p99Ms: h.percentile(99),
    maxMs: h.total === 0 ? null : round(h.max, 1),
    meanMs: h.mean === null ? null : round(h.mean, 2),
    samples: h.total,
  }
}

export interface WindowResult {
  wallSeconds: number
  serverCpuSeconds: number
  serverCpuPct: number
  redisCpuSeconds: number
  redisCpuPct: number
  loadgenCpuSeconds: number
  loadgenCpuPct: number
  /** The bench parent itself (producer, coordination). */
  benchCpuSeconds: number
  /** CPU the rest of the machine used meanwhile (other work running at the same time). */
  otherCpuPct: number
  /** Stream reads Redis served in the window: calls per second and Redis time per call. */
  redisCommands: Record<string, { perSecond: number, usecPerCall: number }>
  /** Each Redis process's own CPU in the window, from /proc (a cluster: every master and replica). */
  redisNodes: Array<{ address: string, role: RedisNode['role'], cpuSeconds: number, cpuPct: number }>
}

const WATCHED_COMMANDS = ['xread', 'xrange', 'xrevrange', 'xadd']

/**
 * A measurement window: CPU of the measured server (/proc), Redis (INFO cpu;
 * a cluster's masters from /proc, and every Redis process's own from /proc),
 * the load generator workers (their own process.cpuUsage, zeroed by reset),
 * this process, and the whole machine (/proc/stat).
 */
export class Window {
  private t0 = 0
  private server0 = 0
  private redis0 = 0
  private stats0: Record<string, { calls: number, usec: number }> = {}
  private nodes0: number[] = []
  private bench0 = process.cpuUsage()
  private machine0 = machineCpuSeconds()

  private constructor (private readonly server: ServerProcess | undefined, private readonly redis: MeasuredRedis | undefined, private readonly loadgen: LoadGen | undefined) {}

  /** `trace`: the load generator keeps every event's XADD time and latency for its next report. */
  static async open (server: ServerProcess | undefined, redis: MeasuredRedis | undefined, loadgen: LoadGen | undefined, trace = false): Promise<Window> {
    const w = new Window(server, redis, loadgen)
    await loadgen?.reset(trace)
    w.redis0 = redis === undefined ? 0 : await redis.cpuSeconds()
    w.stats0 = redis === undefined ? {} : await redis.commandStats()
    w.nodes0 = (redis?.nodes() ?? []).map(n => procCpuSeconds(n.pid))
    w.server0 = server?.cpuSeconds() ?? 0
    w.bench0 = process.cpuUsage()
    w.machine0 = machineCpuSeconds()
    w.t0 = performance.now()
    return w
  }

  /** Closes the window; `loadgenCpuSeconds` comes from the workers' report taken right after. */
  async close (loadgenCpuSeconds = 0): Promise<WindowResult> {
    const wall = (performance.now() - this.t0) / 1000
    const server = (this.server?.cpuSeconds() ?? 0) - this.server0
    const machine1 = machineCpuSeconds()
    const benchCpu = process.cpuUsage(this.bench0)
    const nodes = (this.redis?.nodes() ?? []).map((n, i) => {
      const cpu = procCpuSeconds(n.pid) - (this.nodes0[i] ?? NaN)
      return { address: n.address, role: n.role, cpuSeconds: round(cpu), cpuPct: round((100 * cpu) / wall, 1) }
    })
    const redis = this.redis === undefined ? 0 : (await this.redis.cpuSeconds()) - this.redis0
    const stats1 = this.redis === undefined ? {} : await this.redis.commandStats()
    const redisCommands: WindowResult['redisCommands'] = {}
    for (const cmd of WATCHED_COMMANDS) {
      const calls = (stats1[cmd]?.calls ?? 0) - (this.stats0[cmd]?.calls ?? 0)
      const usec = (stats1[cmd]?.usec ?? 0) - (this.stats0[cmd]?.usec ?? 0)
      if (calls > 0) redisCommands[cmd] = { perSecond: Math.round(calls / wall), usecPerCall: round(usec / calls, 1) }
    }
    const bench = (benchCpu.user + benchCpu.system) / 1e6
    const busy = machine1.busy - this.machine0.busy
    const ours = server + redis + loadgenCpuSeconds + bench
    return {
      wallSeconds: round(wall),
      serverCpuSeconds: round(server),
      serverCpuPct: round((100 * server) / wall, 1),
      redisCpuSeconds: round(redis),
      redisCpuPct: round((100 * redis) / wall, 1),
      loadgenCpuSeconds: round(loadgenCpuSeconds),
      loadgenCpuPct: round((100 * loadgenCpuSeconds) / wall, 1),
      benchCpuSeconds: round(bench),
      otherCpuPct: round(Math.max(0, (100 * (busy - ours)) / wall), 1),
      redisCommands,
      redisNodes: nodes,
    }
  }
}

const benchStarted = Date.now()
/** Progress on stderr with BENCH_VERBOSE=1 (stdout carries only the summary). */
export function progress (message: string): void {
  if (process.env.BENCH_VERBOSE === '1') process.stderr.write(`[${((Date.now() - benchStarted) / 1000).toFixed(1)}s] ${message}\n`)
}

/** What else ran during the main gateway window: the load generator and the rest of the machine. */
export function context (w: WindowResult): { loadgenCpuPct: number, otherCpuPct: number, serverCpuPct: number, redisCpuPct: number } {
  return { loadgenCpuPct: w.loadgenCpuPct, otherCpuPct: w.otherCpuPct, serverCpuPct: w.serverCpuPct, redisCpuPct: w.redisCpuPct }
}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** The line every program prints; run-all reads `summary`. */
export interface BenchSummary {
  readonly question: string
  /** The headline figure of the gateway. */
  readonly figure: number | null
  readonly unit: string
  /** The same figure for the ceiling in this run (null when none applies or it was skipped). */
  readonly ceiling: number | null
  /** Gateway relative to the ceiling, oriented so that 1 means "as good as the ceiling". */
  readonly ratio: number | null
  readonly target: string
  readonly pass: boolean | null
  /** False when the run was smaller than the size the target is stated for. */
  readonly atTargetSize: boolean
  /** Why a figure should not be read at face value (the server fell behind, ...). */
  readonly note?: string
}

/**
 * Runs a bench: a deadline (BENCH_TIMEOUT_MS) after which it gives up and
 * kills what it started, one JSON line on stdout, the same in
 * bench/results/<name>.json. Exit code 0 when the run completed (a missed
 * target is a figure, not a failure), 1 when it could not measure.
 */
export function runBench (name: string, defaultTimeoutMs: number, body: () => Promise<{ summary: BenchSummary, [k: string]: unknown }>): void {
  const started = Date.now()
  const atStart = machine()
  const build = gatewayBuild()
  const timeoutMs = envInt('BENCH_TIMEOUT_MS', defaultTimeoutMs)
  const timer = setTimeout(() => {
    process.stderr.write(`${name}: gave up after ${timeoutMs} ms (BENCH_TIMEOUT_MS)\n`)
    runCleanups()
    process.exit(1)
  }, timeoutMs)
  timer.unref()
  const stop = (): void => { runCleanups(); process.exit(130) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  // BENCH_LABEL names a variant (e.g. `notify` with BENCH_REDIS_ARGS="--notify-keyspace-events Kt").
  const label = process.env.BENCH_LABEL?.trim() ?? ''
  body().then(result => {
    if (label !== '') result = { ...result, summary: { ...result.summary, question: `${result.summary.question} (${label})` } }
    const line = {
      bench: name,
      ...(label === '' ? {} : { label }),
      redisArgs: process.env.BENCH_REDIS_ARGS ?? '',
      date: new Date().toISOString(),
      machine: { ...atStart, loadavgAtEnd: loadavg().map(n => Math.round(n * 100) / 100) },
      gatewayBuild: build,
      ...result,
      elapsedSeconds: round((Date.now() - started) / 1000, 1),
    }
    const text = JSON.stringify(line)
    const dir = process.env.BENCH_RESULTS_DIR ?? RESULTS_DIR
    try {
      mkdirSync(dir, { recursive: true })
      // The label names a file: keep it to safe characters.
      writeFileSync(join(dir, `${name}${label === '' ? '' : `.${label.replace(/[^A-Za-z0-9_-]+/g, '-')}`}.json`), text + '\n')
    } catch (err) {
      process.stderr.write(`${name}: cannot write results: ${(err as Error).message}\n`)
    }
    process.stdout.write(text + '\n')
    runCleanups()
    process.exit(0)
  }, (err: unknown) => {
    process.stderr.write(`${name}: ${(err as Error).stack ?? String(err)}\n`)
    runCleanups()
    process.exit(1)
  })
}
