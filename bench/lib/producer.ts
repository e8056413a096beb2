/**
 * The producer side: XADD at a steady rate over a raw RESP connection, a
 * tick's commands in one write. Cheaper than a full client so the bench's own
 * CPU stays small; replies are only counted (and errors kept).
 */
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'

export class RawProducer {
  private readonly sock: Socket
  private out: string[] = []
  private carry = ''
  private expectBulk = false
  sent = 0
  replied = 0
  errors = 0
  firstError: string | undefined
  private waiters: Array<() => void> = []

  constructor (socketPath: string) {
    this.sock = connect({ path: socketPath })
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

  constructor (private readonly producer: RawProducer, private readonly opts: PaceOptions) {}

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
