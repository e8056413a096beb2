/**
 * The producer side: XADD at a steady rate over a raw RESP connection, a
 * tick's commands in one write. Cheaper than a full client so the bench's own
 * CPU stays small; replies are only counted (and errors kept). On a Redis
 * Cluster, one such connection per master, each XADD sent to the master of
 * its key's slot (ClusterProducer).
 */
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { keySlot } from '../../src/source/cluster-connection.js'
import type { RedisEndpoint } from './procs.js'

/** What the pacer writes to: one Redis or a cluster. */
export interface Producer {
  readonly errors: number
  readonly firstError: string | undefined
  xadd (key: string, payload: string, maxLen: number): void
  flush (): void
  drain (timeoutMs?: number): Promise<void>
  close (): void
}

export class RawProducer implements Producer {
  private readonly sock: Socket
  private out: string[] = []
  private carry = ''
  private expectBulk = false
  sent = 0
  replied = 0
  errors = 0
  firstError: string | undefined
  private waiters: Array<() => void> = []

  /** `endpoint`: a unix socket path, or host and port. */
  constructor (endpoint: RedisEndpoint) {
    this.sock = connect(typeof endpoint === 'string' ? { path: endpoint } : { host: endpoint.host, port: endpoint.port })
    this.sock.setEncoding('latin1')
    this.sock.on('data', (text: string) => { this.read(text) })
    this.sock.on('error', (err: Error) => {
      this.errors++
      this.firstError ??= err.message
    })
  }

  /** Queues `XADD key MAXLEN ~ maxLen * data <payload>` until the next flush. */
  xadd (key: string, payload: string, maxLen: number): void {
    this.command(['XADD', key, 'MAXLEN', '~', String(maxLen), '*', 'data', payload])
  }

  /** Queues any command whose reply is one simple value (bulk string, integer, status, error). */
  command (args: readonly string[]): void {
    let cmd = `*${args.length}\r\n`
    for (const a of args) cmd += `$${Buffer.byteLength(a)}\r\n${a}\r\n`
    this.out.push(cmd)
    this.sent++
    if (this.out.length >= 1000) this.flush()
  }

  flush (): void {
    if (this.out.length === 0) return
    this.sock.write(this.out.join(''))
    this.out = []
  }

  private read (text: string): void {
    const buf = this.carry + text
    let pos = 0
    for (;;) {
      const end = buf.indexOf('\r\n', pos)
      if (end < 0) break
      const c = buf[pos]
      if (this.expectBulk) {
        this.expectBulk = false
        this.replied++
      } else if (c === '$') {
        if (buf[pos + 1] === '-') this.replied++
        else this.expectBulk = true
      } else {
        if (c === '-') {
          this.errors++
          this.firstError ??= buf.slice(pos, end)
        }
        this.replied++
      }
      pos = end + 2
    }
    this.carry = buf.slice(pos)
    if (this.replied >= this.sent) {
      const w = this.waiters
      this.waiters = []
      for (const f of w) f()
    }
  }

  /** Resolves when every command sent so far has its reply. */
  async drain (timeoutMs = 10000): Promise<void> {
    this.flush()
    if (this.replied >= this.sent) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`producer: ${this.sent - this.replied} replies missing after ${timeoutMs} ms`)) }, timeoutMs)
      this.waiters.push(() => { clearTimeout(timer); resolve() })
    })
  }

  close (): void {
    this.sock.destroy()
  }
}

/**
 * XADD to a Redis Cluster with no client library in the way: one
 * RawProducer per master, each key sent to the master that serves its slot
 * (the slot map taken once: the bench moves no slot). A MOVED reply would be
 * an error, and fails the phase as any producer error does.
 */
export class ClusterProducer implements Producer {
  private readonly producers: RawProducer[]
  private readonly byKey = new Map<string, RawProducer>()

  /** `masters`: each master's endpoint; `ownerOf(slot)`: the index of the master serving it. */
  constructor (masters: readonly RedisEndpoint[], private readonly ownerOf: (slot: number) => number) {
    this.producers = masters.map(m => new RawProducer(m))
  }

  get errors (): number {
    return this.producers.reduce((n, p) => n + p.errors, 0)
  }

  get firstError (): string | undefined {
    return this.producers.find(p => p.firstError !== undefined)?.firstError
  }

  xadd (key: string, payload: string, maxLen: number): void {
    let p = this.byKey.get(key)
    if (p === undefined) {
      p = this.producers[this.ownerOf(keySlot(key))]
      if (p === undefined) throw new Error(`no master serves the slot of ${key}`)
      this.byKey.set(key, p)
    }
    p.xadd(key, payload, maxLen)
  }

  flush (): void {
    for (const p of this.producers) p.flush()
  }

  async drain (timeoutMs = 10000): Promise<void> {
    await Promise.all(this.producers.map(async p => { await p.drain(timeoutMs) }))
  }

  close (): void {
    for (const p of this.producers) p.close()
  }
}

/** A JSON payload of about `bytes` bytes. */
export function payloadOf (bytes: number): string {
  const base = '{"n":0,"pad":""}'
  return `{"n":0,"pad":"${'x'.repeat(Math.max(0, bytes - base.length))}"}`
}

export interface PaceOptions {
  /** Events per second. */
  readonly rate: number
  readonly tickMs?: number
  /** Stream key of the n-th event. */
  readonly keyFor: (n: number) => string
  readonly payload: string
  readonly maxLen?: number
}

/**
 * Sends `rate` events per second, in one write per tick, until stopped.
 * Due events are computed from elapsed time, so a late tick catches up.
 */
export class Pacer {
  private timer: NodeJS.Timeout | undefined
  private started = 0
  private n = 0
  private stopped = false

  constructor (private readonly producer: Producer, private readonly opts: PaceOptions) {}

  get sent (): number {
    return this.n
  }

  start (): void {
    this.started = performance.now()
    const tick = this.opts.tickMs ?? 10
    const step = (): void => {
      if (this.stopped) return
      const due = Math.floor(((performance.now() - this.started) / 1000) * this.opts.rate)
      while (this.n < due) {
        this.producer.xadd(this.opts.keyFor(this.n), this.opts.payload, this.opts.maxLen ?? 100000)
        this.n++
      }
      this.producer.flush()
      const next = this.started + ((Math.floor((performance.now() - this.started) / tick) + 1) * tick)
      this.timer = setTimeout(step, Math.max(0, next - performance.now()))
    }
    step()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.producer.drain()
  }
}
