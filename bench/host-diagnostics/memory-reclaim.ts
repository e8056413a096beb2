/**
 * Host diagnostic: the host's memory-management kernel threads, seen from a
 * bench window.
 *
 * On a small guest, a kernel thread that scans memory stalls everything on
 * it for a few milliseconds at a time: the server, Redis and the load
 * generator alike. DAMON's `kdamond` (proactive reclaim) is the one seen
 * here: with a 500 ms sampling interval it runs for 5-45 ms of CPU every
 * ~540 ms (README.md beside this file), and the events in flight meanwhile
 * arrive late, whatever server delivers them. A latency bench samples these
 * threads' CPU time during its window (every 2 ms, from
 * /proc/<pid>/schedstat) and reports how many of its slow events were in
 * flight during one of their bursts, so a tail made by the host can be told
 * from one made by the server.
 *
 * This is a diagnostic beside the figure, never a filter on it: the bench's
 * headline p99 counts every event.
 */
import { closeSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

/** Kernel threads that scan or reclaim memory. */
const THREAD_NAME = /^(kdamond|kswapd|kcompactd)/
/** Samples closer than this belong to one burst. */
const BURST_GAP_MS = 30
/** Bursts using less CPU than this are left out (a thread waking briefly). */
const MIN_BURST_CPU_MS = 1

export interface ReclaimThread { readonly pid: number, readonly name: string }

/** A stretch of time in which the threads ran, in epoch milliseconds. */
export interface Burst { readonly startMs: number, readonly endMs: number, readonly cpuMs: number, readonly threads: readonly string[] }

/** The memory-management kernel threads of this machine (children of kthreadd). */
export function reclaimThreads (procDir = '/proc'): ReclaimThread[] {
  const found: ReclaimThread[] = []
  let entries: string[]
  try { entries = readdirSync(procDir) } catch { return found }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`${procDir}/${entry}/stat`, 'latin1')
      // pid (comm) state ppid ...: comm may hold spaces and parentheses.
      const close = stat.lastIndexOf(')')
      const name = stat.slice(stat.indexOf('(') + 1, close)
      const ppid = Number(stat.slice(close + 2).split(' ')[1])
      if (ppid === 2 && THREAD_NAME.test(name)) found.push({ pid: Number(entry), name })
    } catch {}
  }
  return found
}

/** DAMON's settings when a kdamond is on (sysfs admin interface), else null. */
export function damonSettings (dir = '/sys/kernel/mm/damon/admin/kdamonds'): Record<string, unknown> | null {
  const read = (path: string): string | null => {
    try { return readFileSync(path, 'utf8').trim() } catch { return null }
  }
  const n = Number(read(`${dir}/nr_kdamonds`) ?? 0)
  const on: Array<Record<string, unknown>> = []
  for (let i = 0; i < n; i++) {
    if (read(`${dir}/${i}/state`) !== 'on') continue
    const ctx = `${dir}/${i}/contexts/0`
    const us = (name: string): number | null => {
      const v = read(`${ctx}/monitoring_attrs/intervals/${name}`)
      return v === null ? null : Number(v) / 1000
    }
    on.push({
      operations: read(`${ctx}/operations`),
      sampleMs: us('sample_us'),
      aggregateMs: us('aggr_us'),
      action: read(`${ctx}/schemes/0/action`),
    })
  }
  return on.length === 0 ? null : { kdamonds: on }
}

/**
 * Samples the CPU time of the reclaim threads every `intervalMs` until
 * stopped, and returns when they ran. Started only where such threads exist.
 */
export class ReclaimSampler {
  private readonly fds: number[]
  private readonly last: number[]
  private readonly runs: Array<[atMs: number, cpuMs: number, threads: string[]]> = []
  private readonly timer: NodeJS.Timeout
  private readonly buf = Buffer.alloc(128)

  private constructor (readonly threads: readonly ReclaimThread[], fds: number[], private readonly intervalMs: number) {
    this.fds = fds
    this.last = fds.map(fd => this.runNs(fd))
    this.timer = setInterval(() => { this.sample() }, intervalMs)
  }

  static start (intervalMs = 2, threads = reclaimThreads()): ReclaimSampler | undefined {
    const open: ReclaimThread[] = []
    const fds: number[] = []
    for (const t of threads) {
      try {
        fds.push(openSync(`/proc/${t.pid}/schedstat`, 'r'))
        open.push(t)
      } catch {}
    }
    return fds.length === 0 ? undefined : new ReclaimSampler(open, fds, intervalMs)
  }

  /** Nanoseconds the thread has run (first field of schedstat); -1 once it is gone. */
  private runNs (fd: number): number {
    try {
      const n = readSync(fd, this.buf, 0, this.buf.length, 0)
      return Number(this.buf.toString('latin1', 0, n).split(' ')[0])
    } catch {
      return -1
    }
  }

  private sample (): void {
    const at = performance.timeOrigin + performance.now()
    let ran = 0
    const names: string[] = []
    for (let i = 0; i < this.fds.length; i++) {
      const ns = this.runNs(this.fds[i] as number)
      const before = this.last[i] as number
      if (ns >= 0 && before >= 0 && ns > before) {
        ran += (ns - before) / 1e6
        names.push((this.threads[i] as ReclaimThread).name)
      }
      this.last[i] = ns
    }
    if (ran > 0) this.runs.push([at, ran, names])
  }

  /** Stops sampling; the bursts since the start and the threads that ran. */
  stop (): { bursts: Burst[], ran: string[] } {
    clearInterval(this.timer)
    this.sample()
    for (const fd of this.fds) {
      try { closeSync(fd) } catch {}
    }
    const bursts = groupBursts(this.runs, this.intervalMs)
    return { bursts, ran: [...new Set(bursts.flatMap(b => b.threads))].sort() }
  }
}

/**
 * Groups samples `[time seen, CPU ms since the previous sample, threads that
 * ran]` into bursts: a burst starts one interval before its first sample (it
 * ran some time since the previous one) and ends at its last.
 */
export function groupBursts (runs: ReadonlyArray<readonly [number, number, readonly string[]]>, intervalMs: number): Burst[] {
  const bursts: Array<{ startMs: number, endMs: number, cpuMs: number, threads: Set<string> }> = []
  for (const [at, cpuMs, threads] of runs) {
    const last = bursts[bursts.length - 1]
    if (last !== undefined && at - last.endMs < BURST_GAP_MS) {
      last.endMs = at
      last.cpuMs += cpuMs
      for (const t of threads) last.threads.add(t)
    } else {
      bursts.push({ startMs: at - intervalMs, endMs: at, cpuMs, threads: new Set(threads) })
    }
  }
  return bursts
    .filter(b => b.cpuMs >= MIN_BURST_CPU_MS)
    .map(b => ({ startMs: b.startMs, endMs: b.endMs, cpuMs: Math.round(b.cpuMs * 10) / 10, threads: [...b.threads].sort() }))
}

/** Events a load generator saw: when each was written (XADD ms) and its latency. */
export interface LatencyTrace {
  readonly xaddMs: ArrayLike<number>
  readonly latencyMs: ArrayLike<number>
  /** Events past the trace's capacity, counted but not kept. */
  readonly dropped?: number
}

export interface HostReclaimSummary {
  /** The threads that ran in the window. */
  readonly threads: string[]
  readonly bursts: number
  /** CPU of each burst: smallest, median, largest. */
  readonly burstCpuMs: { min: number, median: number, max: number } | null
  /** Median time from one burst's start to the next one's. */
  readonly medianIntervalMs: number | null
  /** Share of the window's wall time inside a burst. */
  readonly burstTimePct: number
  /** Events set against the bursts, and events the trace had no room for (not in any figure here). */
  readonly events: number
  readonly eventsNotTraced: number
  /** Events whose time in flight (XADD to receive) overlapped a burst. */
  readonly inFlightDuringBurstPct: number
  readonly overMs: number
  /** Events slower than `overMs`, and how many of them were in flight during a burst. */
  readonly eventsOver: number
  readonly eventsOverDuringBurstPct: number | null
  /** p99 of the events that were not in flight during any burst (a diagnostic, not the figure). */
  readonly p99NotDuringBurstMs: number | null
  /** Each burst: start (epoch ms), length and CPU (ms), the threads that ran, and the events over `overMs` in flight during it. */
  readonly list: Array<{ atMs: number, ms: number, cpuMs: number, threads: readonly string[], eventsOver: number }>
}

const pct = (part: number, whole: number): number => (whole === 0 ? 0 : Math.round((1000 * part) / whole) / 10)

function median (sorted: readonly number[]): number {
  return sorted[Math.floor((sorted.length - 1) / 2)] as number
}

/**
 * Sets a window's latency trace against the bursts: which events were in
 * flight during one, and the p99 of the rest.
 */
export function summarizeAgainstBursts (opts: {
  readonly bursts: readonly Burst[]
  readonly threads: readonly string[]
  readonly trace: LatencyTrace
  readonly windowMs: number
  readonly overMs: number
}): HostReclaimSummary {
  const bursts = [...opts.bursts].sort((a, b) => a.startMs - b.startMs)
  const { xaddMs, latencyMs } = opts.trace
  const n = xaddMs.length
  // Bursts do not overlap one another, so their ends are sorted too.
  // The first burst that overlaps [from, to], or -1.
  const overlapping = (from: number, to: number): number => {
    let lo = 0
    let hi = bursts.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((bursts[mid] as Burst).endMs < from) lo = mid + 1
      else hi = mid
    }
    return lo < bursts.length && (bursts[lo] as Burst).startMs <= to ? lo : -1
  }
  const rest: number[] = []
  const overPerBurst = new Array<number>(bursts.length).fill(0)
  let during = 0
  let over = 0
  let overDuring = 0
  for (let i = 0; i < n; i++) {
    const sent = xaddMs[i] as number
    const lat = latencyMs[i] as number
    const hit = overlapping(sent, sent + lat)
    if (hit >= 0) during++
    else rest.push(lat)
    if (lat > opts.overMs) {
      over++
      if (hit >= 0) {
        overDuring++
        overPerBurst[hit] = (overPerBurst[hit] ?? 0) + 1
      }
    }
  }
  rest.sort((a, b) => a - b)
  const cpu = bursts.map(b => b.cpuMs).sort((a, b) => a - b)
  const gaps = bursts.slice(1).map((b, i) => b.startMs - (bursts[i] as Burst).startMs).sort((a, b) => a - b)
  const burstTime = bursts.reduce((sum, b) => sum + (b.endMs - b.startMs), 0)
  return {
    threads: [...opts.threads],
    bursts: bursts.length,
    burstCpuMs: cpu.length === 0 ? null : { min: cpu[0] as number, median: median(cpu), max: cpu[cpu.length - 1] as number },
    medianIntervalMs: gaps.length === 0 ? null : Math.round(median(gaps)),
    burstTimePct: pct(burstTime, opts.windowMs),
    events: n,
    eventsNotTraced: opts.trace.dropped ?? 0,
    inFlightDuringBurstPct: pct(during, n),
    overMs: opts.overMs,
    eventsOver: over,
    eventsOverDuringBurstPct: over === 0 ? null : pct(overDuring, over),
    p99NotDuringBurstMs: rest.length === 0 ? null : Math.round(10 * (rest[Math.ceil(0.99 * rest.length) - 1] as number)) / 10,
    list: bursts.map((b, i) => ({ atMs: Math.round(b.startMs), ms: Math.round(b.endMs - b.startMs), cpuMs: b.cpuMs, threads: b.threads, eventsOver: overPerBurst[i] as number })),
  }
}
