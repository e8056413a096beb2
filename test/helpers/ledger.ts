/**
 * Exactly-once bookkeeping for delivery tests: what a producer wrote to each
 * channel (data payloads `<channel>:<n>`, n counting from 1 per channel), and
 * checks that what clients received is that, in per-channel order, once.
 */
import type { Redis } from 'ioredis'
import type { Test } from 'tap'
import type { ReceivedEvent, RawStream } from './sse.js'

export const GAP_EVENT = 'gateway.gap'

/** `<channel>:<n>` or `<channel>:<n>#<padding>`. */
const PAYLOAD = /^(.+):(\d+)(?:#[\s\S]*)?$/

export function parsePayload (data: string): { channel: string, n: number } | undefined {
  const m = PAYLOAD.exec(data)
  return m === null ? undefined : { channel: m[1] as string, n: Number(m[2]) }
}

export interface WriteOptions {
  /** Bytes of padding appended to each payload after `#` (for large events). */
  readonly pad?: number
  /** Entries per pipeline round-trip. */
  readonly pipeline?: number
}

/** Every payload written, per channel, in the order Redis stored them. */
export class Ledger {
  readonly written = new Map<string, string[]>()
  /** Entry ids per channel, same order as `written`. */
  readonly ids = new Map<string, string[]>()
  private seed = 12345

  constructor (private readonly client: Redis, private readonly prefix: string, readonly channels: readonly string[]) {
    for (const ch of channels) { this.written.set(ch, []); this.ids.set(ch, []) }
  }

  key (channel: string): string {
    return this.prefix + channel
  }

  get total (): number {
    let n = 0
    for (const list of this.written.values()) n += list.length
    return n
  }

  /** A deterministic pseudo-random channel, so writes interleave across channels. */
  private pick (): string {
    this.seed = (Math.imul(this.seed, 1103515245) + 12345) >>> 0
    return this.channels[(this.seed >>> 8) % this.channels.length] as string
  }

  /**
   * Writes `count` entries spread over the channels (or all to `only`), with
   * pipelined XADD; resolves once Redis has stored them all.
   */
  async write (count: number, opts: WriteOptions & { only?: string } = {}): Promise<void> {
    const size = opts.pipeline ?? 1000
    const padding = opts.pad === undefined ? '' : '#' + 'x'.repeat(opts.pad)
    for (let start = 0; start < count; start += size) {
      const p = this.client.pipeline()
      const batch: Array<[string, string]> = []
      for (let i = start; i < Math.min(count, start + size); i++) {
        const channel = opts.only ?? this.pick()
        const list = this.written.get(channel)
        if (list === undefined) throw new Error(`unknown channel ${channel}`)
        const data = `${channel}:${list.length + 1}`
        list.push(data)
        batch.push([channel, data])
        p.xadd(this.key(channel), '*', 'data', data + padding)
      }
      const results = await p.exec()
      if (results === null) throw new Error('pipeline aborted')
      results.forEach(([err, id], i) => {
        if (err !== null) throw err
        const channel = (batch[i] as [string, string])[0]
        this.ids.get(channel)?.push(id as string)
      })
    }
  }

  /**
   * Keeps writing `perRound` entries per round-trip until `stop()`; each round
   * waits `pauseMs` (0: just a macrotask turn), so readers interleave with it.
   */
  startWriter (perRound = 20, pauseMs = 2, opts: WriteOptions = {}): { stop: () => Promise<number>, rounds: () => number } {
    let stopping = false
    let rounds = 0
    const done = (async () => {
      // eslint-disable-next-line no-unmodified-loop-condition -- stop() sets it while the loop awaits
      while (!stopping) {
        await this.write(perRound, { ...opts, pipeline: perRound })
        rounds++
        await new Promise(resolve => setTimeout(resolve, pauseMs))
      }
    })()
    return {
      rounds: () => rounds,
      stop: async () => {
        stopping = true
        await done
        return rounds
      },
    }
  }

  /** Last payload written to each channel (what a reader waits for). */
  lastPayloads (): Map<string, string> {
    const last = new Map<string, string>()
    for (const [ch, list] of this.written) if (list.length > 0) last.set(ch, list[list.length - 1] as string)
    return last
  }
}

/** Data events (control events left out) of several connections, in order. */
export function dataEvents (...streams: RawStream[]): ReceivedEvent[] {
  return streams.flatMap(s => s.events.filter(e => !e.event.startsWith('gateway.')))
}

export function controlEvents (s: RawStream, name = GAP_EVENT): ReceivedEvent[] {
  return s.events.filter(e => e.event === name)
}

/** Received payloads per channel, in arrival order. */
export function byChannel (events: readonly ReceivedEvent[]): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const e of events) {
    const p = parsePayload(e.data)
    const ch = p?.channel ?? '?'
    let list = out.get(ch)
    if (list === undefined) out.set(ch, list = [])
    list.push(e.data.split('#')[0] as string)
  }
  return out
}

/** True once `stream` has received the last payload written to every channel. */
export function hasAll (ledger: Ledger, events: () => readonly ReceivedEvent[]): () => boolean {
  return () => {
    const want = ledger.lastPayloads()
    const seen = new Set<string>()
    for (const e of events()) seen.add(e.data.split('#')[0] as string)
    for (const data of want.values()) if (!seen.has(data)) return false
    return true
  }
}

export interface DeliveryReport {
  readonly channel: string
  readonly written: number
  readonly received: number
  readonly missing: number
  readonly duplicates: number
  /** Index of the first received payload out of per-channel order, or -1. */
  readonly firstDisorder: number
  readonly unknown: number
}

/**
 * Compares what was received (per channel, in order) with `expected`: the
 * written payloads, or a slice of them. An exact match means every event
 * once, in per-channel order.
 */
export function compare (expected: Map<string, string[]>, events: readonly ReceivedEvent[]): DeliveryReport[] {
  const got = byChannel(events)
  const reports: DeliveryReport[] = []
  for (const [channel, want] of expected) {
    const list = got.get(channel) ?? []
    const wantSet = new Set(want)
    const seen = new Set<string>()
    let duplicates = 0
    let unknown = 0
    for (const d of list) {
      if (!wantSet.has(d)) unknown++
      else if (seen.has(d)) duplicates++
      seen.add(d)
    }
    let missing = 0
    for (const d of want) if (!seen.has(d)) missing++
    let firstDisorder = -1
    let last = 0
    for (let i = 0; i < list.length; i++) {
      const n = parsePayload(list[i] as string)?.n ?? 0
      if (n <= last) { firstDisorder = i; break }
      last = n
    }
    reports.push({ channel, written: want.length, received: list.length, missing, duplicates, firstDisorder, unknown })
  }
  for (const [channel, list] of got) {
    if (!expected.has(channel)) reports.push({ channel, written: 0, received: list.length, missing: 0, duplicates: 0, firstDisorder: -1, unknown: list.length })
  }
  return reports
}

/** `expected` minus the payloads in `already`: what a resumed client must get. */
export function remaining (expected: Map<string, string[]>, already: readonly ReceivedEvent[]): Map<string, string[]> {
  const seen = new Set(already.map(e => e.data.split('#')[0] as string))
  const out = new Map<string, string[]>()
  for (const [ch, list] of expected) out.set(ch, list.filter(d => !seen.has(d)))
  return out
}

/**
 * Asserts that `events` are exactly `expected`: per channel, every payload
 * once and in order, nothing else. Reports per channel, not a 5,000-line diff.
 */
export function assertExactlyOnce (t: Test, expected: Map<string, string[]>, events: readonly ReceivedEvent[], what: string): boolean {
  let ok = true
  for (const r of compare(expected, events)) {
    const summary = `${what}, ${r.channel}: ${r.received} received of ${r.written}`
    ok = t.equal(r.missing, 0, `${summary}: none missing`) && ok
    ok = t.equal(r.duplicates, 0, `${summary}: no duplicate`) && ok
    ok = t.equal(r.unknown, 0, `${summary}: nothing unexpected`) && ok
    ok = t.equal(r.firstDisorder, -1, `${summary}: in order`) && ok
  }
  return ok
}

export { getText as fetchText, scrapeMetric as metric } from './extra.js'

/** Redis `INFO commandstats` calls of one command (e.g. `xrange`). */
export async function commandCalls (client: Redis, command: string): Promise<number> {
  const info = await client.info('commandstats')
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)
  return m === null ? 0 : Number(m[1])
}
