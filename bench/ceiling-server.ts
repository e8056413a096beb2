/**
 * The ceiling the gateway is measured against: the least a node:http SSE
 * server has to do for the same traffic, run in the same bench.
 *
 * - One XREAD loop per shard (one in all for a single stream) with an explicit
 *   last id per key; a batch of entries becomes ONE preformatted buffer
 *   (`data:` lines and `id: <entry id>`), framed once as an HTTP chunk and
 *   written straight to the socket of every connection of the key (as the
 *   gateway does). No auth, no cursor logic, no back-pressure handling.
 * - When the Redis it reads publishes keyspace notifications for streams
 *   (`K` and `t` or `A`, what the gateway's `auto` reader mode looks for),
 *   it follows them instead, as the gateway then does: a subscription per
 *   key, and one XREAD of the keys that changed in each turn of the event
 *   loop. So each reader design is measured against its own ceiling.
 * - A connection with `Last-Event-ID` first reads its backlog with paged
 *   XRANGE, then joins live delivery at the key's live position.
 * - VERIFY_SECRET set: tokens are checked (HS256 with node:crypto, `exp`,
 *   topic claim), so a connect costs what a minimal authenticated SSE
 *   connect costs. IDLE=1: connections get headers and a `retry:` and are
 *   held, nothing is read from Redis (the idle-memory ceiling).
 *
 * The channel of a connection: `user:<sub>` when the bearer token has a
 * `sub`, else `topic:<topic parameter>` (one channel per connection).
 *
 * Env: PORT, HOST (127.0.0.1), REDIS_URL, KEY_PREFIX, SHARDS (4), BLOCK_MS
 * (5000), COUNT (512), PAGE (500), VERIFY_SECRET, IDLE. Stops on SIGTERM.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { Redis } from 'ioredis'
import { chunkPayload, httpChunkOfText } from '../src/http/http1-chunk.js'
import { notificationsCoverStreams } from '../src/source/redis-source.js'

const PORT = Number(process.env.PORT ?? 8081)
const HOST = process.env.HOST ?? '127.0.0.1'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const PREFIX = process.env.KEY_PREFIX ?? 'sse:'
const SHARDS = Math.max(1, Number(process.env.SHARDS ?? 4))
const BLOCK_MS = Number(process.env.BLOCK_MS ?? 5000)
const COUNT = Number(process.env.COUNT ?? 512)
const PAGE = Number(process.env.PAGE ?? 500)
const SECRET = process.env.VERIFY_SECRET
const IDLE = process.env.IDLE === '1'

const HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' }
const RETRY = 'retry: 2000\n\n'
const LINE_BREAK = /\r\n|\r|\n/

function redis (name: string): Redis {
  const opts = { protocol: 2 as const, connectionName: name, maxRetriesPerRequest: null, enableAutoPipelining: false }
  return REDIS_URL.startsWith('unix://') ? new Redis({ ...opts, path: REDIS_URL.slice(7) }) : new Redis(REDIS_URL, opts)
}

function compareIds (a: string, b: string): number {
  if (a === b) return 0
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const ma = a.slice(0, da)
  const mb = b.slice(0, db)
  if (ma !== mb) return ma.length !== mb.length ? ma.length - mb.length : ma < mb ? -1 : 1
  const sa = a.slice(da + 1)
  const sb = b.slice(db + 1)
  return sa.length !== sb.length ? sa.length - sb.length : sa < sb ? -1 : sa > sb ? 1 : 0
}

type Entry = [string, string[]]

/** The SSE frames of the entries that carry `data` ('' when none does). */
function frames (entries: readonly Entry[]): string {
  let text = ''
  for (const [id, f] of entries) {
    let data: string | undefined
    let event: string | undefined
    for (let i = 0; i + 1 < f.length; i += 2) {
      if (f[i] === 'data' && data === undefined) data = f[i + 1]
      else if (f[i] === 'event' && event === undefined) event = f[i + 1]
    }
    if (data === undefined) continue
    if (event !== undefined) text += `event: ${event}\n`
    for (const line of data.split(LINE_BREAK)) text += `data: ${line}\n`
    text += `id: ${id}\n\n`
  }
  return text
}

/**
 * Writes one HTTP chunk (the gateway's framing, `httpChunkOfText`) to a
 * stream whose headers are out (its `retry:` went first). Like the gateway,
 * writes the chunk to the socket in one call: `res.write` would queue the
 * size line, bytes and CRLF as pieces and send them with `writev` on the
 * next tick, which costs more per write.
 */
function send (res: ServerResponse, chunk: Buffer): void {
  const socket = res.socket
  if (socket !== null && res.chunkedEncoding) socket.write(chunk)
  else res.write(chunkPayload(chunk))
}

interface KeyState {
  readonly key: string
  readonly shard: Reader
  readonly live: Set<ServerResponse>
  /** Connections of this key, live or still reading their backlog. */
  refs: number
  lastId: string
  ready: Promise<void>
}

const cmd = redis('ceiling:commands')
cmd.on('error', () => {})
const keys = new Map<string, KeyState>()

interface Reader {
  add: (ks: KeyState) => void
  remove: (ks: KeyState) => void
}

const XADD = Buffer.from('xadd')

type XreadReply = Array<[string, Entry[]]> | null
type Xread = (...a: string[]) => Promise<XreadReply>

/** Writes what a read brought to every live connection of each key. */
function deliver (reply: Array<[string, Entry[]]>): void {
  for (const [key, entries] of reply) {
    const ks = keys.get(key)
    if (ks === undefined || entries.length === 0) continue
    const fresh = entries.filter(e => compareIds(e[0], ks.lastId) > 0)
    if (fresh.length === 0) continue
    ks.lastId = (fresh[fresh.length - 1] as Entry)[0]
    const text = frames(fresh)
    // An empty chunk would end the responses.
    if (text === '') continue
    const chunk = httpChunkOfText(text)
    for (const res of ks.live) send(res, chunk)
  }
}

/**
 * With keyspace notifications on (as the gateway's `auto` mode decides):
 * one subscription per key, and on `xadd` one XREAD (no BLOCK) of every key
 * that changed in this turn of the event loop. The least the gateway's
 * notify reader has to do.
 */
class NotifyReader implements Reader {
  private readonly sub = redis('ceiling:notify')
  private readonly conn = redis('ceiling:notify-reader')
  private readonly dirty = new Set<KeyState>()
  private readonly reading = new Set<KeyState>()
  private scheduled = false
  private readonly prefix = '__keyspace@0__:'

  constructor () {
    this.sub.on('error', () => {})
    this.conn.on('error', () => {})
    this.sub.on('messageBuffer', (channel: Buffer, event: Buffer) => {
      if (!event.equals(XADD)) return
      const ks = keys.get(channel.toString('utf8', this.prefix.length))
      if (ks !== undefined) this.mark(ks)
    })
  }

  add (ks: KeyState): void {
    void this.sub.subscribe(this.prefix + ks.key).then(() => { this.mark(ks) }, () => {})
  }

  remove (ks: KeyState): void {
    this.dirty.delete(ks)
    void this.sub.unsubscribe(this.prefix + ks.key).catch(() => {})
  }

  private mark (ks: KeyState): void {
    this.dirty.add(ks)
    this.schedule()
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => { this.scheduled = false; void this.read() })
  }

  private async read (): Promise<void> {
    const batch = [...this.dirty].filter(ks => !this.reading.has(ks))
    if (batch.length === 0) return
    for (const ks of batch) { this.dirty.delete(ks); this.reading.add(ks) }
    let reply: XreadReply = null
    try {
      reply = await (this.conn as unknown as { xread: Xread })
        .xread('COUNT', String(COUNT), 'STREAMS', ...batch.map(ks => ks.key), ...batch.map(ks => ks.lastId))
    } catch {
      for (const ks of batch) this.dirty.add(ks)
    }
    for (const ks of batch) this.reading.delete(ks)
    if (reply !== null) {
      deliver(reply)
      for (const [key, entries] of reply) {
        const ks = keys.get(key)
        if (ks !== undefined && entries.length >= COUNT) this.dirty.add(ks)
      }
    }
    if (this.dirty.size > 0) this.schedule()
  }
}

class Shard implements Reader {
  readonly keys = new Set<KeyState>()
  private readonly conn = redis('ceiling:reader')
  private clientId: number | undefined
  private blocked = false
  private unblockQueued = false
  private idle: (() => void) | undefined

  constructor () {
    this.conn.on('error', () => {})
    void this.loop()
  }

  add (ks: KeyState): void {
    this.keys.add(ks)
    if (this.idle !== undefined) {
      const resume = this.idle
      this.idle = undefined
      resume()
    } else if (this.blocked && !this.unblockQueued && this.clientId !== undefined) {
      // The key must be read now, not after BLOCK_MS: our own Redis, so CLIENT UNBLOCK is allowed.
      this.unblockQueued = true
      const id = this.clientId
      process.nextTick(() => { void cmd.client('UNBLOCK', id).catch(() => {}) })
    }
  }

  remove (ks: KeyState): void {
    this.keys.delete(ks)
  }

  private async loop (): Promise<void> {
    this.clientId = Number(await this.conn.client('ID'))
    for (;;) {
      if (this.keys.size === 0) {
        await new Promise<void>(resolve => { this.idle = resolve })
        continue
      }
      const names: string[] = []
      const ids: string[] = []
      for (const ks of this.keys) { names.push(ks.key); ids.push(ks.lastId) }
      this.blocked = true
      this.unblockQueued = false
      let reply: Array<[string, Entry[]]> | null
      try {
        reply = await (this.conn as unknown as { xread: (...a: string[]) => Promise<Array<[string, Entry[]]> | null> })
          .xread('COUNT', String(COUNT), 'BLOCK', String(BLOCK_MS), 'STREAMS', ...names, ...ids)
      } catch {
        this.blocked = false
        await new Promise(resolve => setTimeout(resolve, 100))
        continue
      }
      this.blocked = false
      if (reply !== null) deliver(reply)
    }
  }
}

// The same test as the gateway's `auto` reader mode.
const notifyFlags = await cmd.config('GET', 'notify-keyspace-events').then(r => String((r as unknown[])[1] ?? ''), () => '')
const notifying = notificationsCoverStreams(notifyFlags)
const notifyReader = notifying ? new NotifyReader() : undefined
const shards = notifying ? [] : Array.from({ length: SHARDS }, () => new Shard())

function shardOf (key: string): Reader {
  if (notifyReader !== undefined) return notifyReader
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0
  return shards[h % shards.length] as Shard
}

function acquire (key: string): KeyState {
  let ks = keys.get(key)
  if (ks === undefined) {
    const fresh: KeyState = { key, shard: shardOf(key), live: new Set(), refs: 0, lastId: '0-0', ready: Promise.resolve() }
    fresh.ready = cmd.xrevrange(key, '+', '-', 'COUNT', 1).then(r => {
      fresh.lastId = r[0]?.[0] ?? '0-0'
      if (fresh.refs > 0) fresh.shard.add(fresh)
    })
    keys.set(key, fresh)
    ks = fresh
  }
  ks.refs++
  return ks
}

function release (ks: KeyState, res: ServerResponse): void {
  ks.live.delete(res)
  if (--ks.refs === 0 && keys.get(ks.key) === ks) {
    keys.delete(ks.key)
    ks.shard.remove(ks)
  }
}

async function stream (ks: KeyState, res: ServerResponse, lastEventId: string | undefined): Promise<void> {
  await ks.ready
  if (lastEventId !== undefined) {
    let cursor = lastEventId
    // Backlog first; join live delivery only once the cursor reaches the live position.
    while (!res.destroyed && compareIds(cursor, ks.lastId) < 0) {
      // Never past the live position: what follows it comes from the live loop.
      const page = await cmd.xrange(ks.key, `(${cursor}`, ks.lastId, 'COUNT', PAGE) as Entry[]
      if (page.length === 0) break
      const text = frames(page)
      if (text !== '') send(res, httpChunkOfText(text))
      cursor = (page[page.length - 1] as Entry)[0]
    }
  }
  if (!res.destroyed) ks.live.add(res)
}

interface Claims { sub?: unknown, topics?: unknown, exp?: unknown }

function claimsOf (token: string): Claims | undefined {
  const dot1 = token.indexOf('.')
  const dot2 = token.indexOf('.', dot1 + 1)
  if (dot1 < 0 || dot2 < 0) return undefined
  if (SECRET !== undefined) {
    const expected = createHmac('sha256', SECRET).update(token.slice(0, dot2)).digest()
    const given = Buffer.from(token.slice(dot2 + 1), 'base64url')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
  }
  try {
    const claims = JSON.parse(Buffer.from(token.slice(dot1 + 1, dot2), 'base64url').toString('utf8')) as Claims
    if (SECRET !== undefined && (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now())) return undefined
    return claims
  } catch {
    return undefined
  }
}

function refuse (res: ServerResponse, status: number, error: string): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ error }))
}

function onRequest (req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const path = q < 0 ? url : url.slice(0, q)
  if (path === '/livez') {
    res.end('ok')
    return
  }
  if (path !== '/events') {
    refuse(res, 404, 'not-found')
    return
  }
  const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1))
  const auth = req.headers.authorization
  const token = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : params.get('token') ?? undefined
  const claims = token === undefined ? undefined : claimsOf(token)
  if (SECRET !== undefined && claims === undefined) {
    refuse(res, 401, 'unauthorized')
    return
  }
  const topic = params.get('topic')
  let key: string
  if (typeof claims?.sub === 'string') key = `${PREFIX}user:${claims.sub}`
  else if (topic !== null && topic !== '') key = `${PREFIX}topic:${topic}`
  else {
    refuse(res, 400, 'no-channel')
    return
  }
  if (SECRET !== undefined && typeof claims?.sub !== 'string') {
    const allowed = Array.isArray(claims?.topics) && (claims.topics.includes('*') || claims.topics.includes(topic))
    if (!allowed) {
      refuse(res, 403, 'forbidden')
      return
    }
  }
  const header = req.headers['last-event-id']
  const lastEventId = typeof header === 'string' && /^\d+-\d+$/.test(header) ? header : undefined
  res.writeHead(200, HEADERS)
  res.socket?.setNoDelay(true)
  res.write(RETRY)
  if (IDLE) {
    held.add(res)
    res.on('close', () => { held.delete(res) })
    return
  }
  const ks = acquire(key)
  res.on('close', () => { release(ks, res) })
  stream(ks, res, lastEventId).catch(() => { res.destroy() })
}

const held = new Set<ServerResponse>()
const server = createServer({ keepAliveTimeout: 0, requestTimeout: 0 }, onRequest)
server.listen(PORT, HOST)

const stop = (): void => {
  server.close()
  for (const res of held) res.destroy()
  for (const ks of keys.values()) for (const res of ks.live) res.destroy()
  cmd.disconnect()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
