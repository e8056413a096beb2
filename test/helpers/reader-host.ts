/**
 * A live reader under test, with no source and no HTTP: a recording
 * ReaderHost (what the reader emitted, per key, and how often it saw a
 * connection drop), a gate the test opens and closes, and the options a
 * reader is made with, against a test's own redis-server.
 */
import { randomBytes } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import pino from 'pino'
import type { StreamId } from '../../src/core/stream-id.js'
import { LiveHealth } from '../../src/source/live-health.js'
import type { LiveReaderOptions, ReaderHost } from '../../src/source/live-reader.js'
import { standaloneConnection } from '../../src/source/redis-connection.js'
import type { RawEntry } from '../../src/source/stream-source.js'
import { uniquePrefix, type TestRedis } from './redis.js'

export const silent = pino({ level: 'silent' })

export class RecordingHost implements ReaderHost {
  /** Every id emitted, per key, in the order emitted. */
  readonly ids = new Map<string, StreamId[]>()
  /** Every entry emitted, per key. */
  readonly entries = new Map<string, RawEntry[]>()
  /** Connections the reader reported lost. */
  lost = 0
  /** Appends the reader asked for (wakes and probes). */
  appends = 0
  private held: Promise<void> | undefined
  private release: (() => void) | undefined

  constructor (private readonly client: Redis | Cluster) {}

  emit (key: string, entries: RawEntry[]): void {
    let ids = this.ids.get(key)
    if (ids === undefined) this.ids.set(key, ids = [])
    let list = this.entries.get(key)
    if (list === undefined) this.entries.set(key, list = [])
    for (const e of entries) { ids.push(e.id); list.push(e) }
  }

  gate (): Promise<void> | undefined {
    return this.held
  }

  connectionLost (): void {
    this.lost++
  }

  async append (key: string): Promise<StreamId> {
    this.appends++
    // As the source does: one entry kept, expiring.
    const reply = await this.client.multi().xadd(key, 'MAXLEN', '1', '*', 'w', '1').pexpire(key, 60000).exec()
    return reply?.[0]?.[1] as StreamId
  }

  /** Closes the gate: no live read until {@link open}. */
  hold (): void {
    this.held ??= new Promise<void>(resolve => { this.release = resolve })
  }

  open (): void {
    const release = this.release
    this.held = undefined
    this.release = undefined
    release?.()
  }

  of (key: string): StreamId[] {
    return this.ids.get(key) ?? []
  }
}

/** Reader options against `redis`, with a key prefix of their own; `overrides` win. */
export function readerOptions (redis: TestRedis, overrides: Partial<LiveReaderOptions> = {}): LiveReaderOptions {
  return {
    connection: standaloneConnection(redis.url),
    keyPrefix: uniquePrefix('reader'),
    instance: randomBytes(4).toString('hex'),
    db: 0,
    shards: 2,
    blockMs: 2000,
    maxKeysPerSecond: 0,
    count: 64,
    logger: silent,
    health: new LiveHealth({ logger: silent }),
    ...overrides,
  }
}

/** Waits until `check` holds, polling; fails naming `what` after `timeoutMs`. */
export async function until (check: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** Appends `n` entries to `key` concurrently (many share a millisecond): their ids, in stream order. */
export async function appendMany (client: Redis | Cluster, key: string, n: number, tag = 'e'): Promise<StreamId[]> {
  const ids = await Promise.all(Array.from({ length: n }, (_, i) => client.xadd(key, '*', 'data', `${tag}${i}`) as Promise<StreamId>))
  return ids
}

/** Ends every connection of `redis` named `name` (CLIENT KILL): a dropped connection, as the reader sees it. */
export async function killConnections (client: Redis, name: string): Promise<number> {
  const list = await client.client('LIST') as string
  let killed = 0
  for (const line of list.split('\n')) {
    if (!line.includes(` name=${name} `)) continue
    const id = /\bid=(\d+)/.exec(line)?.[1]
    if (id !== undefined) killed += Number(await client.client('KILL', 'ID', id))
  }
  return killed
}
