/** Messages between the load generator (parent) and its worker processes. */
import type { SparseHistogram } from './histogram.js'

/** What every connection of one `open` (or connect loop) looks like. */
export interface ConnSpec {
  readonly host: string
  readonly port: number
  /** `{i}` is replaced by the connection's global index. */
  readonly path: string
  /** Claims of the HS256 token sent as `Authorization: Bearer`; `{i}` in `sub` is replaced. None: no header. */
  readonly token?: { readonly sub?: string, readonly topics?: readonly string[] }
  readonly secret?: string
  readonly lastEventId?: string
  /** Source addresses; connection `i` uses `localAddresses[floor(i / perAddress) % length]`. */
  readonly localAddresses: readonly string[]
  readonly perAddress: number
  /** Connects in flight at once, per worker. */
  readonly concurrency: number
  readonly openTimeoutMs: number
  /**
   * Set: speak cleartext HTTP/2 with prior knowledge (h2c, node:http2), this
   * many streams per connection (a browser multiplexes a host's streams on
   * one). Unset: raw HTTP/1.1, one stream per connection.
   */
  readonly h2StreamsPerSession?: number
}

export interface OpenRequest { t: 'open', id: number, spec: ConnSpec, first: number, count: number }
/** `trace`: also keep every event's XADD time and latency until the next report. */
export interface ResetRequest { t: 'reset', id: number, trace?: boolean }
export interface ReportRequest { t: 'report', id: number }
/** From now on, each stream notes the time it first sees an id >= `lastId` (also streams opened later). */
export interface ArmRequest { t: 'arm', id: number, lastId: string }
/** Resolves when every open stream has seen an id >= `lastId` (or at the timeout). */
export interface UntilRequest { t: 'until', id: number, lastId: string, firstId?: string, timeoutMs: number }
export interface CloseAllRequest { t: 'closeAll', id: number }
export interface ConnectLoopRequest { t: 'connectLoop', id: number, spec: ConnSpec, first: number, durationMs: number }
/** Every event the open streams received since they opened (no reset), for an exact count of loss and duplicates. */
export interface TotalsRequest { t: 'totals', id: number }
export interface ExitRequest { t: 'exit', id: number }

export type WorkerRequest = OpenRequest | ResetRequest | ReportRequest | ArmRequest | UntilRequest | CloseAllRequest | ConnectLoopRequest | TotalsRequest | ExitRequest

export interface OpenResult {
  ok: number
  failed: number
  statuses: Record<string, number>
  firstError?: string
  ms: number
}

export interface WorkerReport {
  /** Events (`id:` lines) seen since the last reset. */
  events: number
  bytes: number
  hist: SparseHistogram
  histSum: number
  histMax: number
  /** CPU of this worker process since the last reset, in microseconds. */
  cpuMicros: number
  wallMs: number
  open: number
  closedByServer: number
  /** Ids that did not sort after the previous one on the same stream (duplicates, reordering). */
  orderViolations: number
  rssBytes: number
  /** With a traced reset: each event's XADD time (epoch ms, from its id) and latency, in arrival order. */
  trace?: { xaddMs: Float64Array, latencyMs: Float32Array, dropped: number }
}

export interface UntilResult {
  done: number
  notDone: number
  /** Epoch ms (fractional) when the last stream reached `lastId`; 0 if none did. */
  lastDoneAt: number
  minEvents: number
  maxEvents: number
  orderViolations: number
  /** Streams whose first event was not `firstId` (a gap at the start), when one was given. */
  wrongFirst: number
  /** Streams whose last id seen is not exactly `lastId`. */
  wrongLast: number
}

export interface TotalsResult {
  /** Events (`id:` lines) on every stream since it opened, until closeAll. */
  received: number
  /** Of those, ids that did not sort after the previous one on the same stream (a duplicate or an entry out of order). */
  outOfOrder: number
  /** Streams that the server ended. */
  closedByServer: number
}

export interface ConnectLoopResult {
  connects: number
  failed: number
  statuses: Record<string, number>
  firstError?: string
  hist: SparseHistogram
  histSum: number
  histMax: number
  cpuMicros: number
}

export interface WorkerResponse { t: 'done', id: number, result?: unknown, error?: string }
