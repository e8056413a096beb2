/**
 * A load generator worker process (forked by LoadGen): holds many raw TCP
 * connections speaking just enough HTTP/1.1 and SSE to count events.
 *
 * Per chunk it searches for `\nid: ` with Buffer#indexOf (native) and parses
 * only the id line: the `<ms>-<seq>` gives the XADD-to-receive latency and
 * lets each stream check that ids only go up (no duplicate, no reordering).
 * Nothing else of the stream is parsed. Chunked transfer framing does not get
 * in the way: a chunk-size line ends with LF, so an `id:` line that starts a
 * chunk is still preceded by `\n`.
 */
import { connect as h2connect, type ClientHttp2Session } from 'node:http2'
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { Histogram } from './histogram.js'
import type { ConnSpec, ConnectLoopResult, OpenResult, TotalsResult, UntilResult, WorkerReport, WorkerRequest, WorkerResponse } from './protocol.js'
import { mintToken } from './token.js'

const PATTERN = Buffer.from('\nid: ')
const ID_PREFIX = Buffer.from('id: ')
const HEADER_END = '\r\n\r\n'
const MAX_CARRY = 96
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)

const now = (): number => performance.timeOrigin + performance.now()

class Stream {
  stage: 0 | 1 | 2 = 0
  head = ''
  status = 0
  carry: Buffer | null = null
  events = 0
  /** Ids not after the previous one on this stream, since it opened. */
  outOfOrder = 0
  firstMs = -1
  firstSeq = -1
  lastMs = -1
  lastSeq = -1
  reached = false
  reachedAt = 0
  /** A TCP connection (HTTP/1.1) or an HTTP/2 stream: what closeAll ends. */
  constructor (readonly sock: Pick<Socket, 'destroy'>) {}
}

/** HTTP/2 connections of the h2 streams, ended by closeAll. */
let h2Sessions: ClientHttp2Session[] = []

/** Every event's XADD time and latency, kept between a traced reset and the next report. */
class Trace {
  static readonly CAP = 1 << 20
  private readonly xaddMs = new Float64Array(Trace.CAP)
  private readonly latencyMs = new Float32Array(Trace.CAP)
  private n = 0
  private dropped = 0

  clear (): void {
    this.n = 0
    this.dropped = 0
  }

  record (xaddMs: number, latencyMs: number): void {
    if (this.n === Trace.CAP) {
      this.dropped++
      return
    }
    this.xaddMs[this.n] = xaddMs
    this.latencyMs[this.n] = latencyMs
    this.n++
  }

  /** A copy of what was kept. */
  copy (): { xaddMs: Float64Array, latencyMs: Float32Array, dropped: number } {
    return { xaddMs: this.xaddMs.slice(0, this.n), latencyMs: this.latencyMs.slice(0, this.n), dropped: this.dropped }
  }
}
/** Allocated on the first traced reset and reused. */
let traceStore: Trace | undefined
/** The trace being kept, from a traced reset to the next report. */
let trace: Trace | undefined

let streams: Stream[] = []
/** Streams past their status line and not closed (stage 1). */
let live = 0
const hist = new Histogram()
let events = 0
let bytes = 0
let orderViolations = 0
let closedByServer = 0
let cpuAt = process.cpuUsage()
let wallAt = now()

// `until` state: the id every stream must reach.
let untilMs = -1
let untilSeq = -1
let reachedCount = 0
let armed = ''
let onAllReached: (() => void) | undefined

function request (spec: ConnSpec, i: number): string {
  const path = spec.path.replaceAll('{i}', String(i))
  let text = `GET ${path} HTTP/1.1\r\nHost: ${spec.host}:${spec.port}\r\nAccept: text/event-stream\r\n`
  if (spec.token !== undefined) text += `Authorization: Bearer ${tokenFor(spec, i)}\r\n`
  if (spec.lastEventId !== undefined) text += `Last-Event-ID: ${spec.lastEventId}\r\n`
  return text + '\r\n'
}

let sharedToken: { key: string, token: string } | undefined
function tokenFor (spec: ConnSpec, i: number): string {
  const claims = spec.token ?? {}
  const perConnection = claims.sub?.includes('{i}') === true
  if (!perConnection) {
    const key = JSON.stringify(claims)
    if (sharedToken?.key !== key) sharedToken = { key, token: mintToken(claims, spec.secret) }
    return sharedToken.token
  }
  return mintToken({ ...claims, sub: claims.sub?.replaceAll('{i}', String(i)) }, spec.secret)
}

/**
 * Source address of connection `i`. The first block binds nothing: an
 * explicit bind(addr, 0) before connect makes the kernel search the whole
 * port range per socket (quadratic system time with thousands of sockets),
 * while connect() picks a free port cheaply.
 */
function localAddress (spec: ConnSpec, i: number): string | undefined {
  const block = Math.floor(i / spec.perAddress) % spec.localAddresses.length
  return block === 0 ? undefined : spec.localAddresses[block]
}

/** Parses the `id:` lines of a body chunk. */
function scan (s: Stream, chunk: Buffer): void {
  let buf = chunk
  if (s.carry !== null) {
    buf = Buffer.concat([s.carry, chunk])
    s.carry = null
  }
  const t = now()
  const len = buf.length
  let pos = 0
  for (;;) {
    const at = buf.indexOf(PATTERN, pos)
    if (at < 0) break
    const start = at + 5
    let k = start
    let ms = 0
    let seq = 0
    let bare = false
    while (k < len) {
      const c = buf[k] as number
      if (c < 48 || c > 57) break
      ms = ms * 10 + c - 48
      k++
    }
    if (k < len && buf[k] === 45 && k > start) {
      k++
      const s0 = k
      while (k < len) {
        const c = buf[k] as number
        if (c < 48 || c > 57) break
        seq = seq * 10 + c - 48
        k++
      }
      bare = k < len && k > s0 && (buf[k] === 10 || buf[k] === 13)
    }
    if (!bare) {
      // Not a plain entry id (a multi-channel cursor): count it, find the line end.
      const end = buf.indexOf(10, start)
      if (end < 0) k = len
      else k = end
    }
    if (k >= len) {
      // The id line is cut by the chunk boundary: keep it for the next chunk.
      if (len - at <= MAX_CARRY) s.carry = Buffer.from(buf.subarray(at))
      return
    }
    events++
    s.events++
    if (bare) {
      const latency = t - ms
      hist.record(latency)
      trace?.record(ms, latency)
      if (s.firstMs < 0) {
        s.firstMs = ms
        s.firstSeq = seq
      } else if (ms < s.lastMs || (ms === s.lastMs && seq <= s.lastSeq)) {
        orderViolations++
        s.outOfOrder++
      }
      s.lastMs = ms
      s.lastSeq = seq
      if (!s.reached && untilMs >= 0 && (ms > untilMs || (ms === untilMs && seq >= untilSeq))) markReached(s, t)
    }
    pos = k
  }
  // A pattern cut at the very end ("\n", "\ni", "\nid", "\nid:"): keep it.
  const nl = buf.lastIndexOf(10)
  if (nl >= pos && len - nl < PATTERN.length && buf.compare(ID_PREFIX, 0, len - nl - 1, nl + 1, len) === 0) {
    s.carry = Buffer.from(buf.subarray(nl))
  }
}

function markReached (s: Stream, t: number): void {
  s.reached = true
  s.reachedAt = t
  reachedCount++
  if (onAllReached !== undefined && reachedCount >= live) onAllReached()
}

/** Reads the status line once the header block is complete; returns the body offset in `chunk`, or -1. */
function readHead (s: Stream, chunk: Buffer): number {
  const before = s.head.length
  s.head += chunk.toString('latin1')
  const end = s.head.indexOf(HEADER_END)
  if (end < 0) {
    if (s.head.length > 65536) s.sock.destroy()
    return -1
  }
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(s.head)
  s.status = m === null ? 0 : Number(m[1])
  const bodyAt = end + 4 - before
  s.head = s.head.slice(0, end)
  return bodyAt
}

/**
 * Opens `count` streams over h2c, `spec.h2StreamsPerSession` per connection.
 * Each DATA chunk goes through the same `scan` as an HTTP/1.1 body (node
 * has taken the framing off), so the two protocols are counted alike.
 */
async function openH2 (spec: ConnSpec, first: number, count: number): Promise<OpenResult> {
  const started = now()
  const result: OpenResult = { ok: 0, failed: 0, statuses: {}, ms: 0 }
  const perSession = Math.max(1, spec.h2StreamsPerSession ?? 1)
  let session: ClientHttp2Session | undefined
  let inSession = 0
  const one = (i: number): Promise<void> => new Promise(resolve => {
    if (session === undefined || inSession >= perSession) {
      const from = localAddress(spec, i)
      session = h2connect(`http://${spec.host}:${spec.port}`, from === undefined ? {} : { localAddress: from } as object)
      session.on('error', () => {})
      h2Sessions.push(session)
      inSession = 0
    }
    inSession++
    const path = spec.path.replaceAll('{i}', String(i))
    const headers: Record<string, string> = { ':path': path, accept: 'text/event-stream' }
    if (spec.token !== undefined) headers.authorization = `Bearer ${tokenFor(spec, i)}`
    if (spec.lastEventId !== undefined) headers['last-event-id'] = spec.lastEventId
    const req = session.request(headers)
    req.end()
    const s = new Stream({ destroy: () => { req.close(); return req as never } })
    let settled = false
    const settle = (ok: boolean, why?: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (ok) {
        result.ok++
        streams.push(s)
      } else {
        result.failed++
        if (result.firstError === undefined && why !== undefined) result.firstError = why
        req.close()
      }
      resolve()
    }
    const timer = setTimeout(() => { settle(false, `no response within ${spec.openTimeoutMs} ms`) }, spec.openTimeoutMs)
    req.on('response', h => {
      s.status = Number(h[':status'])
      result.statuses[s.status] = (result.statuses[s.status] ?? 0) + 1
      if (s.status !== 200) {
        s.stage = 2
        settle(false, `HTTP ${s.status}`)
        return
      }
      s.stage = 1
      live++
      settle(true)
    })
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (s.stage === 1) scan(s, chunk)
    })
    req.on('error', (err: Error) => { settle(false, err.message) })
    req.on('close', () => {
      if (s.stage === 1) {
        s.stage = 2
        live--
        closedByServer++
        if (s.reached) reachedCount--
        if (onAllReached !== undefined && reachedCount >= live) onAllReached()
      }
      settle(false, 'closed before the response')
    })
  })
  // One connection at a time fills its streams; a few connections in flight.
  for (let n = 0; n < count; n += perSession) {
    const batch = Array.from({ length: Math.min(perSession, count - n) }, (_, k) => one(first + n + k))
    await Promise.all(batch)
  }
  result.ms = now() - started
  settleHeap()
  return result
}

async function open (spec: ConnSpec, first: number, count: number): Promise<OpenResult> {
  if (spec.h2StreamsPerSession !== undefined) return await openH2(spec, first, count)
  const started = now()
  const result: OpenResult = { ok: 0, failed: 0, statuses: {}, ms: 0 }
  let next = 0
  const one = (i: number): Promise<void> => new Promise(resolve => {
    const from = localAddress(spec, i)
    // Reads land in one shared buffer (no Buffer and no stream event per read);
    // nothing keeps a reference to it past the callback.
    const sock = connect({
      host: spec.host,
      port: spec.port,
      ...(from === undefined ? {} : { localAddress: from }),
      onread: { buffer: READ_BUFFER, callback: (n: number) => { onData(READ_BUFFER.subarray(0, n)); return true } },
    })
    const s = new Stream(sock)
    let settled = false
    const settle = (ok: boolean, why?: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (ok) {
        result.ok++
        streams.push(s)
      } else {
        result.failed++
        if (result.firstError === undefined && why !== undefined) result.firstError = why
        sock.destroy()
      }
      resolve()
    }
    const timer = setTimeout(() => { settle(false, `no response within ${spec.openTimeoutMs} ms`) }, spec.openTimeoutMs)
    sock.setNoDelay(true)
    sock.on('connect', () => { sock.write(request(spec, i)) })
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length
      if (s.stage === 1) {
        scan(s, chunk)
        return
      }
      if (s.stage !== 0) return
      const bodyAt = readHead(s, chunk)
      if (bodyAt < 0) return
      result.statuses[s.status] = (result.statuses[s.status] ?? 0) + 1
      if (s.status !== 200) {
        s.stage = 2
        settle(false, `HTTP ${s.status}`)
        return
      }
      s.stage = 1
      live++
      settle(true)
      if (bodyAt < chunk.length) scan(s, chunk.subarray(bodyAt))
    }
    sock.on('error', (err: Error) => { settle(false, err.message) })
    sock.on('close', () => {
      if (s.stage === 1) {
        s.stage = 2
        live--
        closedByServer++
        if (s.reached) reachedCount--
        if (onAllReached !== undefined && reachedCount >= live) onAllReached()
      }
      settle(false, 'closed before the response')
    })
  })
  const lanes = Array.from({ length: Math.max(1, Math.min(spec.concurrency, count)) }, async () => {
    while (next < count) {
      const i = first + next++
      await one(i)
    }
  })
  await Promise.all(lanes)
  result.ms = now() - started
  settleHeap()
  return result
}

/**
 * The streams just opened live as long as the bench. Until a collection
 * moves their state out of the young generation, each scavenge copies it:
 * the worker reads little, so its first scavenges came seconds later, inside
 * the measured window, and stalled its reads for 13-31 ms (seen with a GC
 * observer in the per-user bench), which the latency figures then counted
 * against the server. One full collection here, before any window.
 */
function settleHeap (): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) gc()
}

function reset (withTrace: boolean): void {
  trace = undefined
  if (withTrace) {
    traceStore ??= new Trace()
    traceStore.clear()
    trace = traceStore
  }
  hist.reset()
  events = 0
  bytes = 0
  orderViolations = 0
  cpuAt = process.cpuUsage()
  wallAt = now()
}

function report (): WorkerReport {
  const cpu = process.cpuUsage(cpuAt)
  const traced = trace?.copy()
  trace = undefined
  return {
    events,
    bytes,
    hist: hist.toSparse(),
    histSum: hist.sum,
    histMax: hist.max,
    cpuMicros: cpu.user + cpu.system,
    wallMs: now() - wallAt,
    open: live,
    closedByServer,
    orderViolations,
    rssBytes: process.memoryUsage.rss(),
    ...(traced === undefined ? {} : { trace: traced }),
  }
}

function parseId (id: string): [number, number] {
  const dash = id.indexOf('-')
  return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))]
}

/** Starts watching for `lastId`: from now on each stream notes when it gets there. */
function arm (lastId: string): void {
  const [ms, seq] = parseId(lastId)
  armed = lastId
  untilMs = ms
  untilSeq = seq
  reachedCount = 0
  const t = now()
  for (const s of streams) {
    s.reached = s.lastMs > ms || (s.lastMs === ms && s.lastSeq >= seq)
    s.reachedAt = s.reached ? t : 0
    if (s.reached && s.stage === 1) reachedCount++
  }
}

async function until (lastId: string, firstId: string | undefined, timeoutMs: number): Promise<UntilResult> {
  if (armed !== lastId) arm(lastId)
  const [ms, seq] = parseId(lastId)
  if (reachedCount < live) {
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => { onAllReached = undefined; resolve() }, timeoutMs)
      onAllReached = () => { clearTimeout(timer); onAllReached = undefined; resolve() }
    })
  }
  untilMs = -1
  armed = ''
  const [fMs, fSeq] = firstId === undefined ? [-1, -1] : parseId(firstId)
  const result: UntilResult = { done: 0, notDone: 0, lastDoneAt: 0, minEvents: Infinity, maxEvents: 0, orderViolations, wrongFirst: 0, wrongLast: 0 }
  for (const s of streams) {
    if (s.reached) result.done++
    else result.notDone++
    result.lastDoneAt = Math.max(result.lastDoneAt, s.reachedAt)
    result.minEvents = Math.min(result.minEvents, s.events)
    result.maxEvents = Math.max(result.maxEvents, s.events)
    if (firstId !== undefined && (s.firstMs !== fMs || s.firstSeq !== fSeq)) result.wrongFirst++
    if (s.lastMs !== ms || s.lastSeq !== seq) result.wrongLast++
  }
  if (streams.length === 0) result.minEvents = 0
  return result
}

function totals (): TotalsResult {
  const result: TotalsResult = { received: 0, outOfOrder: 0, closedByServer }
  for (const s of streams) {
    result.received += s.events
    result.outOfOrder += s.outOfOrder
  }
  return result
}

function closeAll (): void {
  for (const s of streams) {
    s.stage = 2
    s.sock.destroy()
  }
  for (const session of h2Sessions) session.destroy()
  h2Sessions = []
  streams = []
  live = 0
  closedByServer = 0
  reachedCount = 0
  untilMs = -1
  armed = ''
}

/**
 * Connects, waits for the status line and the first frame (`retry:`), then
 * closes the connection, over and over.
 */
async function connectLoop (spec: ConnSpec, first: number, durationMs: number): Promise<ConnectLoopResult> {
  const lat = new Histogram()
  const result: ConnectLoopResult = { connects: 0, failed: 0, statuses: {}, hist: [], histSum: 0, histMax: 0, cpuMicros: 0 }
  const cpu0 = process.cpuUsage()
  const deadline = now() + durationMs
  let n = 0
  const one = (i: number): Promise<void> => new Promise(resolve => {
    const t0 = now()
    const from = localAddress(spec, n)
    const sock = connect(from === undefined ? { host: spec.host, port: spec.port } : { host: spec.host, port: spec.port, localAddress: from })
    const s = new Stream(sock)
    let settled = false
    const settle = (ok: boolean, why?: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (ok) {
        result.connects++
        lat.record(now() - t0)
      } else {
        result.failed++
        if (result.firstError === undefined && why !== undefined) result.firstError = why
      }
      // A plain close (FIN), as a browser does; TIME_WAIT ports are reused on
      // loopback (net.ipv4.tcp_tw_reuse = 2, the default).
      sock.destroy()
      resolve()
    }
    const timer = setTimeout(() => { settle(false, `no response within ${spec.openTimeoutMs} ms`) }, spec.openTimeoutMs)
    sock.setNoDelay(true)
    sock.on('connect', () => { sock.write(request(spec, i)) })
    sock.on('data', (chunk: Buffer) => {
      if (s.stage === 0) {
        const bodyAt = readHead(s, chunk)
        if (bodyAt < 0) return
        result.statuses[s.status] = (result.statuses[s.status] ?? 0) + 1
        if (s.status !== 200) { settle(false, `HTTP ${s.status}`); return }
        s.stage = 1
        s.head = chunk.subarray(bodyAt).toString('latin1')
      } else {
        s.head += chunk.toString('latin1')
      }
      if (s.head.includes('retry:')) settle(true)
    })
    sock.on('error', (err: Error) => { settle(false, err.message) })
    sock.on('close', () => { settle(false, 'closed before the first frame') })
  })
  const lanes = Array.from({ length: Math.max(1, spec.concurrency) }, async () => {
    while (now() < deadline) await one(first + n++)
  })
  await Promise.all(lanes)
  const cpu = process.cpuUsage(cpu0)
  result.cpuMicros = cpu.user + cpu.system
  result.hist = lat.toSparse()
  result.histSum = lat.sum
  result.histMax = lat.max
  return result
}

async function handle (msg: WorkerRequest): Promise<unknown> {
  switch (msg.t) {
    case 'open': return await open(msg.spec, msg.first, msg.count)
    case 'reset': reset(msg.trace === true); return undefined
    case 'report': return report()
    case 'arm': arm(msg.lastId); return undefined
    case 'until': return await until(msg.lastId, msg.firstId, msg.timeoutMs)
    case 'closeAll': closeAll(); return undefined
    case 'totals': return totals()
    case 'connectLoop': return await connectLoop(msg.spec, msg.first, msg.durationMs)
    case 'exit':
      closeAll()
      setImmediate(() => process.exit(0))
      return undefined
  }
}

process.on('message', (msg: WorkerRequest) => {
  handle(msg).then(
    result => { process.send?.({ t: 'done', id: msg.id, result } satisfies WorkerResponse) },
    (err: unknown) => { process.send?.({ t: 'done', id: msg.id, error: (err as Error).message } satisfies WorkerResponse) }
  )
})
// The parent is gone: nothing left to do.
process.on('disconnect', () => { process.exit(0) })
