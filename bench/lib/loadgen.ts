/**
 * The load generator: a few forked worker processes (loadgen-worker) that
 * share the connections. The parent only coordinates and merges reports, so
 * the workers' own CPU is the generator's cost, and it is reported.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { Histogram } from './histogram.js'
import { WORKER_ENTRY } from './paths.js'
import type { ConnSpec, ConnectLoopResult, OpenResult, TotalsResult, UntilResult, WorkerReport, WorkerRequest, WorkerResponse } from './protocol.js'
import { onCleanup } from './procs.js'

/** Beyond this many connections per source address, the next 127.0.0.x is used. */
export const CONNECTIONS_PER_ADDRESS = 20000
/** Connects in flight at once, all workers together. */
export const OPEN_IN_FLIGHT = 384
export const SOURCE_ADDRESSES = Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 1}`)

type Omitted = 'localAddresses' | 'perAddress' | 'concurrency' | 'openTimeoutMs'
export type StreamsSpec = Omit<ConnSpec, Omitted> & Partial<Pick<ConnSpec, Omitted>>

export interface MergedReport {
  events: number
  bytes: number
  latency: Histogram
  /** Worker CPU since the last reset, seconds. */
  cpuSeconds: number
  wallSeconds: number
  open: number
  closedByServer: number
  orderViolations: number
  rssBytes: number
  /** After a traced reset: every event's XADD time and latency, all workers together. */
  trace?: { xaddMs: Float64Array, latencyMs: Float32Array, dropped: number }
}

function concatTraces (traces: ReadonlyArray<NonNullable<WorkerReport['trace']>>): NonNullable<MergedReport['trace']> {
  const n = traces.reduce((sum, t) => sum + t.xaddMs.length, 0)
  const out = { xaddMs: new Float64Array(n), latencyMs: new Float32Array(n), dropped: 0 }
  let at = 0
  for (const t of traces) {
    out.xaddMs.set(t.xaddMs, at)
    out.latencyMs.set(t.latencyMs, at)
    out.dropped += t.dropped
    at += t.xaddMs.length
  }
  return out
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
type Call = DistributiveOmit<WorkerRequest, 'id'>

export class LoadGen {
  private readonly pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  private seq = 0
  private opened = 0

  private constructor (private readonly workers: ChildProcess[]) {
    for (const w of workers) {
      w.on('message', (msg: WorkerResponse) => {
        const p = this.pending.get(msg.id)
        if (p === undefined) return
        this.pending.delete(msg.id)
        if (msg.error !== undefined) p.reject(new Error(`load generator worker: ${msg.error}`))
        else p.resolve(msg.result)
      })
      w.on('exit', (code, signal) => {
        for (const [id, p] of this.pending) {
          this.pending.delete(id)
          p.reject(new Error(`load generator worker exited (${String(code ?? signal)})`))
        }
      })
    }
  }

  static start (count: number): LoadGen {
    const workers = Array.from({ length: Math.max(1, count) }, () => {
      // --expose-gc: a worker collects once after opening its streams (see the worker's open()).
      const child = fork(WORKER_ENTRY, [], { execArgv: [...process.execArgv, '--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' })
      onCleanup(() => { if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL') })
      return child
    })
    return new LoadGen(workers)
  }

  get size (): number {
    return this.workers.length
  }

  get pids (): number[] {
    return this.workers.map(w => w.pid ?? 0)
  }

  private call<T> (w: ChildProcess, msg: Call): Promise<T> {
    const id = ++this.seq
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      w.send({ ...msg, id })
    })
  }

  private all<T> (msg: (w: number) => Call): Promise<T[]> {
    return Promise.all(this.workers.map((w, i) => this.call<T>(w, msg(i))))
  }

  private fill (spec: StreamsSpec): ConnSpec {
    return {
      localAddresses: SOURCE_ADDRESSES,
      perAddress: CONNECTIONS_PER_ADDRESS,
      // Connects in flight stay under the server's listen backlog (Node's
      // default 511): beyond it SYNs are dropped and retried seconds later.
      concurrency: Math.max(1, Math.floor(OPEN_IN_FLIGHT / this.workers.length)),
      openTimeoutMs: 30000,
      ...spec,
    }
  }

  /**
   * Opens `count` streams spread over the workers; each gets the global index
   * `first + k` (for `{i}` in the spec). Resolves when every one has its
   * status line (or failed).
   */
  async open (spec: StreamsSpec, count: number, first = this.opened): Promise<OpenResult> {
    const full = this.fill(spec)
    const n = this.workers.length
    let start = first
    const parts = Array.from({ length: n }, (_, w) => {
      const c = Math.floor(count / n) + (w < count % n ? 1 : 0)
      const part = { first: start, count: c }
      start += c
      return part
    })
    this.opened = Math.max(this.opened, start)
    const results = await this.all<OpenResult>(w => ({ t: 'open', spec: full, first: parts[w]?.first ?? 0, count: parts[w]?.count ?? 0 }))
    const merged: OpenResult = { ok: 0, failed: 0, statuses: {}, ms: 0 }
    for (const r of results) {
      merged.ok += r.ok
      merged.failed += r.failed
      merged.ms = Math.max(merged.ms, r.ms)
      merged.firstError ??= r.firstError
      for (const [k, v] of Object.entries(r.statuses)) merged.statuses[k] = (merged.statuses[k] ?? 0) + v
    }
    return merged
  }

  /**
   * Zeroes event counts, histograms and the CPU baseline of every worker.
   * `trace`: the next report also carries every event's XADD time and latency.
   */
  async reset (trace = false): Promise<void> {
    await this.all(() => ({ t: 'reset', trace }))
  }

  async report (): Promise<MergedReport> {
    const reports = await this.all<WorkerReport>(() => ({ t: 'report' }))
    const latency = new Histogram()
    const merged: MergedReport = { events: 0, bytes: 0, latency, cpuSeconds: 0, wallSeconds: 0, open: 0, closedByServer: 0, orderViolations: 0, rssBytes: 0 }
    for (const r of reports) {
      merged.events += r.events
      merged.bytes += r.bytes
      latency.add(r.hist, r.histSum, r.histMax)
      merged.cpuSeconds += r.cpuMicros / 1e6
      merged.wallSeconds = Math.max(merged.wallSeconds, r.wallMs / 1000)
      merged.open += r.open
      merged.closedByServer += r.closedByServer
      merged.orderViolations += r.orderViolations
      merged.rssBytes += r.rssBytes
    }
    const traces = reports.flatMap(r => (r.trace === undefined ? [] : [r.trace]))
    if (traces.length > 0) merged.trace = concatTraces(traces)
    return merged
  }

  /** Streams note when they first see `lastId` from now on (arm before opening to time a catch-up). */
  async arm (lastId: string): Promise<void> {
    await this.all(() => ({ t: 'arm', lastId }))
  }

  /** Waits until every open stream has seen `lastId` (or `timeoutMs` passes) and checks first and last ids. */
  async until (lastId: string, timeoutMs: number, firstId?: string): Promise<UntilResult> {
    const results = await this.all<UntilResult>(() => ({ t: 'until', lastId, timeoutMs, ...(firstId === undefined ? {} : { firstId }) }))
    const merged: UntilResult = { done: 0, notDone: 0, lastDoneAt: 0, minEvents: Infinity, maxEvents: 0, orderViolations: 0, wrongFirst: 0, wrongLast: 0 }
    for (const r of results) {
      merged.done += r.done
      merged.notDone += r.notDone
      merged.lastDoneAt = Math.max(merged.lastDoneAt, r.lastDoneAt)
      if (r.done + r.notDone > 0) merged.minEvents = Math.min(merged.minEvents, r.minEvents)
      merged.maxEvents = Math.max(merged.maxEvents, r.maxEvents)
      merged.orderViolations += r.orderViolations
      merged.wrongFirst += r.wrongFirst
      merged.wrongLast += r.wrongLast
    }
    if (merged.minEvents === Infinity) merged.minEvents = 0
    return merged
  }

  /** Every event of the open streams since they opened, all workers together. */
  async totals (): Promise<TotalsResult> {
    const results = await this.all<TotalsResult>(() => ({ t: 'totals' }))
    return results.reduce((a, r) => ({ received: a.received + r.received, outOfOrder: a.outOfOrder + r.outOfOrder, closedByServer: a.closedByServer + r.closedByServer }), { received: 0, outOfOrder: 0, closedByServer: 0 })
  }

  async closeAll (): Promise<void> {
    await this.all(() => ({ t: 'closeAll' }))
    this.opened = 0
  }

  /**
   * Every worker connects, waits for the first frame and closes the
   * connection, `concurrency` at a time, for `durationMs`. Indexes for `{i}`
   * start at `first` and never repeat across workers.
   */
  async connectLoop (spec: StreamsSpec, durationMs: number, first: number): Promise<ConnectLoopResult & { latency: Histogram, cpuSeconds: number }> {
    const full = this.fill(spec)
    const stride = 10_000_000
    const results = await this.all<ConnectLoopResult>(w => ({ t: 'connectLoop', spec: full, first: first + w * stride, durationMs }))
    const latency = new Histogram()
    const merged = { connects: 0, failed: 0, statuses: {} as Record<string, number>, hist: [], histSum: 0, histMax: 0, cpuMicros: 0, latency, cpuSeconds: 0, firstError: undefined as string | undefined }
    for (const r of results) {
      merged.connects += r.connects
      merged.failed += r.failed
      merged.cpuMicros += r.cpuMicros
      merged.firstError ??= r.firstError
      latency.add(r.hist, r.histSum, r.histMax)
      for (const [k, v] of Object.entries(r.statuses)) merged.statuses[k] = (merged.statuses[k] ?? 0) + v
    }
    merged.cpuSeconds = merged.cpuMicros / 1e6
    return merged
  }

  async stop (): Promise<void> {
    await Promise.all(this.workers.map(async w => {
      if (w.exitCode !== null || w.signalCode !== null) return
      const exited = new Promise<void>(resolve => w.once('exit', () => { resolve() }))
      try { w.send({ t: 'exit', id: 0 }) } catch {}
      const timer = setTimeout(() => { if (w.pid !== undefined && w.exitCode === null) process.kill(w.pid, 'SIGKILL') }, 3000)
      await exited
      clearTimeout(timer)
    }))
  }
}
