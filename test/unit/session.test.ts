/**
 * The session without HTTP: the in-memory engine, the real hub, and a fake
 * writer that records the bytes and can act as a client that stops reading,
 * drains, or leaves. What is pinned here is what a client relies on: every
 * entry once, in order, with ids it can resume from; a gap event for each
 * kind of lost history; a slow client paused (Redis holds its backlog) and
 * caught up when it drains, or closed if it never does; the token-expired
 * event; the drain's jittered `retry:`.
 */
import t, { type Test } from 'tap'
import pino from 'pino'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import type { OutgoingHttpHeaders } from 'node:http'
import { topicChannel, userChannel, type Channel } from '../../src/core/channels.js'
import { decodeCursor, type DecodedCursor } from '../../src/core/cursor.js'
import { formatEventText } from '../../src/core/frame.js'
import { CONTROL_EVENTS, type GapReason } from '../../src/core/protocol.js'
import { Batch, DeliveryEvent, Hub } from '../../src/delivery/hub.js'
import { Session, type HistoryRequest, type SessionContext } from '../../src/http/session.js'
import { SessionRegistry, type RegisteredSession } from '../../src/http/session-registry.js'
import type { StreamWriter, StreamWriterOwner } from '../../src/http/stream-writer.js'
import { Metrics } from '../../src/metrics.js'
import { MemorySource } from '../../src/source/memory-source.js'
import { EventChannels } from '../../src/client/sse-client.js'
import type { ResetListener } from '../../src/source/stream-source.js'

/** A writer that keeps what it is given, and plays the client on request. */
class FakeWriter implements StreamWriter {
  readonly protocol = 'h1'
  owner: StreamWriterOwner | undefined
  lastWriteAt = 0
  bufferedBytes = 0
  opened = false
  ended = false
  destroyed = false
  waitingForDrain = false
  /** Already closed when bound (the client left before the session was counted). */
  connectionGone = false
  lastFrame: string | undefined
  /** Everything written, in order. */
  text = ''
  /** The batches handed over whole (the shared fan-out path). */
  readonly batches: Batch[] = []
  writes = 0

  bind (owner: StreamWriterOwner): void {
    this.owner = owner
    if (this.connectionGone) owner.onClosed()
  }

  open (_headers: OutgoingHttpHeaders): void {
    this.opened = true
  }

  write (bytes: string | Buffer): void {
    if (!this.opened || this.ended) return
    this.text += bytes.toString()
    this.writes++
    this.lastWriteAt = Date.now()
  }

  writeBatch (batch: Batch): void {
    if (!this.opened || this.ended) return
    this.batches.push(batch)
    this.write(batch.framed())
  }

  awaitDrain (): void {
    this.waitingForDrain = true
  }

  end (lastFrame?: string | Buffer): void {
    if (this.ended) return
    if (this.opened && lastFrame !== undefined) this.text += lastFrame.toString()
    this.lastFrame = lastFrame?.toString()
    this.ended = true
  }

  destroy (): void {
    this.destroyed = true
  }

  // ---- the client ----

  /** The client stops reading: bytes pile up past the limit. */
  backUp (): void {
    this.bufferedBytes = 1 << 20
    this.owner?.onBackedUp()
  }

  /** The client reads again. */
  drain (): void {
    this.bufferedBytes = 0
    if (!this.waitingForDrain) return
    this.waitingForDrain = false
    this.owner?.onDrain()
  }

  /** The client leaves. */
  disconnect (): void {
    this.owner?.onClosed()
  }

  /** What an EventSource made of the bytes so far. */
  parsed (): { events: EventSourceMessage[], retries: number[], comments: number } {
    const out = { events: [] as EventSourceMessage[], retries: [] as number[], comments: 0 }
    const parser = createParser({
      onEvent: e => { out.events.push(e) },
      onRetry: ms => { out.retries.push(ms) },
      onComment: () => { out.comments++ },
    })
    parser.feed(this.text)
    return out
  }

  /** Ids of the data events (not control events) written so far. */
  dataIds (): Array<string | undefined> {
    return this.parsed().events.filter(e => e.event === undefined).map(e => e.id)
  }

  gaps (): Array<{ channels: Array<{ channel: string, reason: GapReason }>, id: string | undefined }> {
    return this.parsed().events.filter(e => e.event === CONTROL_EVENTS.gap).map(e => ({ ...JSON.parse(e.data), id: e.id }))
  }
}

/** The engine with the two things Redis can tell and the memory engine does not: a reset, and when its dataset began. */
class TestSource extends MemorySource {
  resetListener: ResetListener | undefined
  epochMs: number | undefined

  setResetListener (listener: ResetListener): void {
    this.resetListener = listener
  }
}

interface Fixture {
  source: TestSource
  hub: Hub
  metrics: Metrics
  ctx: SessionContext
  ended: Session[]
  registry: SessionRegistry
  open: (opts?: OpenOptions) => Promise<{ session: Session, writer: FakeWriter }>
}

interface OpenOptions {
  channels?: Channel[]
  resume?: DecodedCursor | null
  history?: HistoryRequest
  expiresAtMs?: number
  user?: string
  writer?: FakeWriter
  channelOnWire?: boolean
}

const PREFIX = 'sse:'
const ORDERS = topicChannel(PREFIX, 'orders')
const PRICES = topicChannel(PREFIX, 'prices')

function setup (t: Test, opts: { pageSize?: number, slowClientTimeoutMs?: number } = {}): Fixture {
  const source = new TestSource()
  const metrics = new Metrics({ defaultMetrics: false })
  const logger = pino({ level: 'silent' })
  const hub = new Hub(source, source, { maxEventBytes: 65536, maxConcurrentReads: 4, logger })
  const registry = new SessionRegistry(60000)
  const ended: Session[] = []
  const ctx: SessionContext = {
    hub,
    metrics,
    logger,
    retryMs: 1000,
    pageSize: opts.pageSize ?? 100,
    slowClientTimeoutMs: opts.slowClientTimeoutMs ?? 60000,
    onEnd: session => {
      ended.push(session)
      registry.delete(session)
    },
  }
  let n = 0
  const sessions: Session[] = []
  t.teardown(async () => {
    for (const s of sessions) s.close('shutdown')
    registry.stop()
    await source.close()
  })
  return {
    source,
    hub,
    metrics,
    ctx,
    ended,
    registry,
    // What the route does, in its order, without HTTP.
    open: async (o = {}) => {
      const writer = o.writer ?? new FakeWriter()
      const session = new Session(ctx, {
        id: `s${++n}`,
        user: o.user,
        channels: o.channels ?? [ORDERS],
        resume: o.resume,
        history: o.history,
        expiresAtMs: o.expiresAtMs,
        channelOnWire: o.channelOnWire,
      }, writer)
      sessions.push(session)
      t.equal(registry.reserve(session, 100, 100), undefined, 'admitted')
      session.bindConnection()
      if (session.closed) return { session, writer }
      await session.subscribe()
      writer.open({})
      session.start(1000)
      if (session.expiresAtMs !== undefined) registry.expireAt(session, session.expiresAtMs)
      await settle()
      return { session, writer }
    },
  }
}

/** Lets the engine's reports, the hub's reads and the catch-up loops run out. */
async function settle (): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise(resolve => setImmediate(resolve))
}

async function until (what: string, test: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

function append (source: MemorySource, channel: Channel, n: number, tag = 'e'): string[] {
  return Array.from({ length: n }, (_, i) => source.append(channel.key, { data: `${tag}${i}` }))
}

async function counted (counter: { get: () => Promise<{ values: Array<{ value: number, labels: Record<string, unknown> }> }> }, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await counter.get()
  return values.filter(v => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0)
}

const bare = (id: string): DecodedCursor => ({ kind: 'bare', id })

t.test('a new stream starts with the retry: and then gets every entry appended after it opened, as the hub\'s shared batch', async t => {
  const f = setup(t)
  append(f.source, ORDERS, 2, 'before')
  const { writer } = await f.open()
  const { writer: other } = await f.open()
  t.same(writer.parsed().retries, [1000], 'retry: first')
  t.same(writer.dataIds(), [], 'nothing from before the stream opened')
  const ids = append(f.source, ORDERS, 3)
  await until('delivery', () => writer.dataIds().length === 3 && other.dataIds().length === 3)
  t.same(writer.dataIds(), ids, 'each entry once, in order, its id the entry id')
  t.same(writer.parsed().events.map(e => e.data), ['e0', 'e1', 'e2'])
  t.ok(writer.batches.length > 0 && writer.batches.every((b, i) => b === other.batches[i]), 'both streams were handed the same Batch objects (framed once)')
  t.equal(await counted(f.metrics.eventsDelivered, { source: 'live' }), 6)
})

t.test('delivery rule: a batch that follows the cursor exactly is written whole', async t => {
  const f = setup(t)
  const { session, writer } = await f.open()
  const [a] = append(f.source, ORDERS, 1) as [string]
  await until('first entry', () => writer.dataIds().length === 1)
  const before = writer.batches.length
  // The hub's position is `a`, and so is the session's cursor.
  const b = new Batch([new DeliveryEvent(`${a.split('-')[0] as string}-99`, formatEventText('next'))], `${a.split('-')[0] as string}-99`)
  session.onBatch(ORDERS.key, a, b)
  await settle()
  t.equal(writer.batches.length, before + 1, 'handed over whole')
  t.equal(writer.batches.at(-1), b, 'the very batch, not a copy')
  t.same(writer.dataIds().at(-1), b.lastId)
})

t.test('delivery rule: a batch (or the part of it) at or behind the cursor is not written again', async t => {
  const f = setup(t)
  const { session, writer } = await f.open()
  const ids = append(f.source, ORDERS, 3)
  await until('three entries', () => writer.dataIds().length === 3)
  const [a, b, c] = ids as [string, string, string]
  const ms = c.split('-')[0] as string
  const next = `${ms}-77`
  const events = [b, c, next].map(id => new DeliveryEvent(id, formatEventText(`again ${id}`)))
  // Overlaps what was sent: only the entry past the cursor goes out.
  session.onBatch(ORDERS.key, a, new Batch(events, next))
  await settle()
  t.same(writer.dataIds(), [...ids, next], 'b and c not repeated; the new one once')
  t.equal(writer.parsed().events.at(-1)?.data, `again ${next}`)
  // Entirely behind: nothing at all.
  const writes = writer.writes
  session.onBatch(ORDERS.key, a, new Batch(events.slice(0, 2), c))
  await settle()
  t.equal(writer.writes, writes, 'a batch wholly behind the cursor writes nothing')
})

t.test('delivery rule: a batch ahead of the cursor (entries missed) makes the session catch up from the engine instead', async t => {
  const f = setup(t)
  // Keeps the key read while the session is away.
  const keeper = { onBatch: () => {}, onReset: () => {} }
  await f.hub.subscribe(ORDERS.key, keeper)
  const { session, writer } = await f.open()
  f.hub.unsubscribe(ORDERS.key, session)
  const missed = append(f.source, ORDERS, 2, 'missed')
  await until('the hub read them', () => f.hub.position(ORDERS.key) === missed[1])
  t.same(writer.dataIds(), [], 'the session did not see them')
  await f.hub.subscribe(ORDERS.key, session)
  const [live] = append(f.source, ORDERS, 1, 'live') as [string]
  await until('catch-up', () => writer.dataIds().length === 3)
  await settle()
  t.same(writer.dataIds(), [...missed, live], 'the missed entries, then the new one, each once, in order')
  t.equal(await counted(f.metrics.eventsDelivered, { source: 'replay' }), 3, 'read from the engine, not written from the batch')
  t.equal(await counted(f.metrics.eventsDelivered, { source: 'live' }), 0)
  t.same(writer.gaps(), [], 'nothing was lost: no gap')
  f.hub.unsubscribe(ORDERS.key, keeper)
})

t.test('catch-up: a resume is read in pages of CATCHUP_PAGE_SIZE, then live delivery takes over with nothing lost or repeated', async t => {
  const f = setup(t, { pageSize: 3 })
  const ids = append(f.source, ORDERS, 11)
  let pages = 0
  const readPage = f.hub.readPage.bind(f.hub)
  f.hub.readPage = async (...args) => {
    pages++
    return await readPage(...args)
  }
  const { writer } = await f.open({ resume: bare(ids[0] as string) })
  await until('replay', () => writer.dataIds().length === 10)
  t.same(writer.dataIds(), ids.slice(1), 'everything after the cursor, in order')
  t.equal(pages, 4, '10 entries in pages of 3: four reads')
  const more = append(f.source, ORDERS, 2, 'live')
  await until('live', () => writer.dataIds().length === 12)
  t.same(writer.dataIds(), [...ids.slice(1), ...more])
  t.equal(await counted(f.metrics.eventsDelivered, { source: 'replay' }), 10)
  t.equal(await counted(f.metrics.eventsDelivered, { source: 'live' }), 2)
})

t.test('catch-up: a multi-channel stream resumes each channel from its own position, with ids that carry every position', async t => {
  const f = setup(t)
  const { writer: first } = await f.open({ channels: [ORDERS, PRICES] })
  append(f.source, ORDERS, 2, 'o')
  append(f.source, PRICES, 1, 'p')
  await until('three events', () => first.dataIds().length === 3)
  const cursor = first.dataIds().at(-1) as string
  const later = [...append(f.source, ORDERS, 1, 'o-late'), ...append(f.source, PRICES, 2, 'p-late')]
  await until('six events', () => first.dataIds().length === 6)
  const { writer: resumed } = await f.open({ channels: [ORDERS, PRICES], resume: decodeCursor(cursor) })
  await until('replay', () => resumed.dataIds().length === 3)
  t.same(resumed.parsed().events.map(e => e.data).sort(), ['o-late0', 'p-late0', 'p-late1'], 'what came after the cursor on each channel')
  t.equal(later.length, 3)
  t.equal(resumed.dataIds().at(-1), first.dataIds().at(-1), 'ends at the same position as the stream that never left')
})

t.test('channel of each event: on a 1-user + 5-topic stream every id names its event\'s channel first, which the client helper reads', async t => {
  const f = setup(t)
  const user = userChannel(PREFIX, 'alice')
  const topics = ['a', 'b', 'c', 'd', 'e'].map(n => topicChannel(PREFIX, n))
  const all = [user, ...topics]
  // History on every channel before the stream opens: no id to compare a first event with.
  for (const ch of all) append(f.source, ch, 2, 'old')
  const { writer } = await f.open({ channels: all, user: 'alice' })
  const sent: string[] = []
  for (let i = 0; i < 60; i++) {
    const ch = all[(i * 7 + (i >> 2)) % all.length] as Channel
    if (i % 13 === 5) f.source.append(topics[0]?.key as string, { note: 'no data: skipped by the gateway, moves its position' })
    f.source.append(ch.key, { data: `${ch.name}#${i}` })
    sent.push(ch.name)
    if (i % 9 === 0) await settle()
  }
  await until('60 events', () => writer.dataIds().length === 60)
  const helper = new EventChannels('alice', ['a', 'b', 'c', 'd', 'e'])
  const events = writer.parsed().events.filter(e => e.event === undefined)
  // Order holds within a channel, not across channels (each is its own stream).
  const written = events.map(e => e.data.split('#')[0])
  t.same([...written].sort(), [...sent].sort(), 'every entry once')
  t.same(events.map(e => helper.channelOf(e.id as string)), written, 'every event named by the channel it was written to, the first one too')
  const unknownUser = new EventChannels(undefined, ['a', 'b', 'c', 'd', 'e'])
  t.same(events.map(e => unknownUser.channelOf(e.id as string)), written.map(c => c?.startsWith('user:') === true ? 'user:' : c), 'with no user given, the user channel is `user:`')
  for (const e of events) t.equal(decodeCursor(e.id as string)?.kind, 'channels', 'each id still a cursor any replica reads')
})

t.test('channel=data: every event\'s first data line is its channel, live, in catch-up and in history; control events untouched', async t => {
  const f = setup(t)
  append(f.source, PRICES, 1, 'before')
  const { writer } = await f.open({ channels: [ORDERS, PRICES], channelOnWire: true, history: { kind: 'last', count: 1 } })
  f.source.append(ORDERS.key, { data: 'two\nlines', event: 'order' })
  append(f.source, PRICES, 1, 'live')
  await until('three events', () => writer.dataIds().length + writer.parsed().events.filter(e => e.event === 'order').length === 3)
  const events = writer.parsed().events.filter(e => !String(e.event ?? '').startsWith('gateway.'))
  t.same(events.map(e => [e.event, e.data]), [
    [undefined, 'topic:prices\nbefore0'],
    ['order', 'topic:orders\ntwo\nlines'],
    [undefined, 'topic:prices\nlive0'],
  ], 'the channel line first, then the data as produced, the event name kept')
  const { writer: one } = await f.open({ channels: [ORDERS], channelOnWire: true })
  append(f.source, ORDERS, 2, 'solo')
  await until('two events', () => one.dataIds().length === 2)
  t.same(one.parsed().events.map(e => e.data), ['topic:orders\nsolo0', 'topic:orders\nsolo1'], 'a one-channel stream too (not the shared batch)')
  t.same(one.dataIds(), one.parsed().events.map(e => e.id), 'with its bare entry ids')
})

t.test('history on first connect: the newest N entries, then live', async t => {
  const f = setup(t)
  const ids = append(f.source, ORDERS, 5)
  const { writer } = await f.open({ history: { kind: 'last', count: 2 } })
  await until('history', () => writer.dataIds().length === 2)
  t.same(writer.dataIds(), ids.slice(3))
})

t.test('slow client: a backed-up writer pauses live delivery; on drain the session catches up from the engine', async t => {
  const f = setup(t)
  const { session, writer } = await f.open()
  const first = append(f.source, ORDERS, 1)
  await until('first', () => writer.dataIds().length === 1)
  writer.backUp()
  t.ok(writer.waitingForDrain, 'asked to be told of the drain')
  t.equal(await counted(f.metrics.slowClientPauses), 1)
  writer.backUp()
  t.equal(await counted(f.metrics.slowClientPauses), 1, 'a second report while paused is the same pause')
  const held = append(f.source, ORDERS, 4, 'held')
  await settle()
  t.same(writer.dataIds(), first, 'nothing written while paused: the engine holds the backlog')
  writer.drain()
  await until('catch-up', () => writer.dataIds().length === 5)
  t.same(writer.dataIds(), [...first, ...held], 'the backlog, in order, once')
  t.equal(await counted(f.metrics.eventsDelivered, { source: 'replay' }), 4)
  const after = append(f.source, ORDERS, 1, 'after')
  await until('live again', () => writer.dataIds().length === 6)
  t.same(writer.dataIds().at(-1), after[0])
  t.notOk(session.closed)
})

t.test('slow client: one that does not drain within SLOW_CLIENT_TIMEOUT_MS is closed and its connection dropped', async t => {
  const f = setup(t, { slowClientTimeoutMs: 40 })
  const { session, writer } = await f.open()
  writer.backUp()
  await until('closed', () => session.closed)
  t.ok(writer.destroyed, 'connection dropped')
  t.ok(writer.ended)
  t.equal(await counted(f.metrics.slowClientCloses), 1)
  t.equal(await counted(f.metrics.connectionsClosed, { reason: 'slow-client' }), 1)
  t.same(f.ended, [session], 'reported its end')
  t.equal(f.registry.size, 0, 'slot given back')
})

t.test('slow client: draining in time cancels the close', async t => {
  const f = setup(t, { slowClientTimeoutMs: 60 })
  const { session, writer } = await f.open()
  writer.backUp()
  writer.drain()
  await new Promise(resolve => setTimeout(resolve, 120))
  t.notOk(session.closed)
  t.notOk(writer.destroyed)
})

t.test('gap: trimmed — the cursor is older than the oldest retained entry', async t => {
  const f = setup(t)
  const ids = append(f.source, ORDERS, 5)
  f.source.trim(ORDERS.key, { maxLen: 2 })
  const { writer } = await f.open({ resume: bare(ids[0] as string) })
  await until('replay', () => writer.dataIds().length === 2)
  const gaps = writer.gaps()
  t.same(gaps.map(g => g.channels), [[{ channel: ORDERS.name, reason: 'trimmed' }]])
  t.same(writer.dataIds(), ids.slice(3), 'continues from the oldest retained entry')
  t.ok(writer.text.indexOf(CONTROL_EVENTS.gap) < writer.text.indexOf(`id: ${ids[3] as string}`), 'the gap comes before the entries after it')
  t.equal(await counted(f.metrics.gaps, { reason: 'trimmed' }), 1)
})

t.test('gap: missing — the cursor\'s entry was deleted inside the retained range', async t => {
  const f = setup(t)
  const ids = append(f.source, ORDERS, 5)
  f.source.delete(ORDERS.key, ids[2] as string)
  const { writer } = await f.open({ resume: bare(ids[2] as string) })
  await until('replay', () => writer.dataIds().length === 2)
  t.same(writer.gaps().map(g => g.channels), [[{ channel: ORDERS.name, reason: 'missing' }]])
  t.same(writer.dataIds(), ids.slice(3), 'continues right after the cursor')
  t.equal(await counted(f.metrics.gaps, { reason: 'missing' }), 1)
})

t.test('gap: ahead — the cursor is newer than the newest entry (a failover to a replica that was behind)', async t => {
  const f = setup(t)
  const ids = append(f.source, ORDERS, 2)
  const tail = ids[1] as string
  const future = `${Number(tail.split('-')[0]) + 60000}-0`
  const { writer } = await f.open({ resume: bare(future) })
  await until('gap', () => writer.gaps().length === 1)
  t.same(writer.gaps().map(g => g.channels), [[{ channel: ORDERS.name, reason: 'ahead' }]])
  t.equal(writer.gaps()[0]?.id, tail, 'the gap event carries the new cursor: the newest entry')
  t.same(writer.dataIds(), [], 'nothing replayed')
  const next = append(f.source, ORDERS, 1, 'next')
  await until('live', () => writer.dataIds().length === 1)
  t.same(writer.dataIds(), next, 'new entries flow from there')
  t.equal(await counted(f.metrics.gaps, { reason: 'ahead' }), 1)
})

t.test('gap: invalid-cursor — a Last-Event-ID that cannot be decoded, or a bare id for a multi-channel stream', async t => {
  const f = setup(t)
  append(f.source, ORDERS, 2)
  const { writer } = await f.open({ resume: null })
  await until('gap', () => writer.gaps().length === 1)
  t.same(writer.gaps().map(g => g.channels), [[{ channel: ORDERS.name, reason: 'invalid-cursor' }]])
  t.same(writer.dataIds(), [], 'starts from now')
  const { writer: multi } = await f.open({ channels: [ORDERS, PRICES], resume: bare('1-0') })
  await until('gap', () => multi.gaps().length === 1)
  t.same(multi.gaps()[0]?.channels, [{ channel: ORDERS.name, reason: 'invalid-cursor' }, { channel: PRICES.name, reason: 'invalid-cursor' }], 'one event naming every channel')
  t.equal(await counted(f.metrics.gaps, { reason: 'invalid-cursor' }), 3)
})

t.test('gap: reset — the engine lost its data while the stream was open', async t => {
  const f = setup(t)
  const { session, writer } = await f.open({ channels: [ORDERS, PRICES] })
  append(f.source, ORDERS, 1)
  await until('first', () => writer.dataIds().length === 1)
  f.source.trim(ORDERS.key, { maxLen: 0 })
  f.source.resetListener?.([ORDERS.key])
  await until('gap', () => writer.gaps().length === 1)
  t.same(writer.gaps()[0]?.channels, [{ channel: ORDERS.name, reason: 'reset' }], 'only the channel that was reset')
  const fresh = append(f.source, ORDERS, 1, 'fresh')
  await until('new data', () => writer.dataIds().length === 2)
  t.equal(writer.parsed().events.at(-1)?.data, 'fresh0', 'what the engine holds now flows')
  t.notOk(session.closed)
  t.equal(fresh.length, 1)
  t.equal(await counted(f.metrics.gaps, { reason: 'reset' }), 1)
})

t.test('gap: reset after a failover — back to the newest entry the engine kept; nothing kept is sent twice, a channel at or before it is told nothing', async t => {
  const f = setup(t)
  const { session, writer } = await f.open({ channels: [ORDERS, PRICES] })
  const ids = append(f.source, ORDERS, 3)
  await until('three', () => writer.dataIds().length === 3)
  // The promoted replica had only the first entry.
  for (const id of ids.slice(1)) f.source.delete(ORDERS.key, id)
  f.source.resetListener?.([ORDERS.key, PRICES.key], new Map([[ORDERS.key, ids[0] as string], [PRICES.key, '0-0']]))
  await until('gap', () => writer.gaps().length === 1)
  t.same(writer.gaps()[0]?.channels, [{ channel: ORDERS.name, reason: 'reset' }], 'only the channel whose cursor was past what the engine kept')
  append(f.source, ORDERS, 1, 'after')
  await until('new data', () => writer.dataIds().length === 4)
  t.same(writer.parsed().events.filter(e => e.event === undefined).map(e => e.data), ['e0', 'e1', 'e2', 'after0'], 'then what the engine writes next; the kept entry not again')
  t.notOk(session.closed)
})

t.test('gap: reset — a resume cursor made before the engine\'s current dataset began', async t => {
  const f = setup(t)
  const old = `${Date.now() - 60000}-0`
  f.source.epochMs = Date.now() - 1000
  const ids = append(f.source, ORDERS, 2)
  const { writer } = await f.open({ resume: bare(old) })
  await until('replay', () => writer.dataIds().length === 2)
  t.same(writer.gaps().map(g => g.channels), [[{ channel: ORDERS.name, reason: 'reset' }]])
  t.same(writer.dataIds(), ids, 'everything the engine holds now')
  t.equal(await counted(f.metrics.gaps, { reason: 'reset' }), 1)
})

t.test('no gap when nothing was lost: a resume from the newest entry, or from an empty stream that stayed empty', async t => {
  const f = setup(t)
  const ids = append(f.source, ORDERS, 2)
  const { writer } = await f.open({ resume: bare(ids[1] as string) })
  const { writer: empty } = await f.open({ channels: [PRICES], resume: bare('0-0') })
  await settle()
  t.same(writer.gaps(), [])
  t.same(empty.gaps(), [])
  t.equal(await counted(f.metrics.gaps), 0)
})

t.test('token expiry: the registry ends the stream at exp with gateway.token-expired as its last event', async t => {
  const f = setup(t)
  const { session, writer } = await f.open({ expiresAtMs: Date.now() + 60, user: 'u1' })
  t.equal(f.registry.countFor('u1'), 1)
  await until('expired', () => session.closed)
  const last = writer.parsed().events.at(-1)
  t.equal(last?.event, CONTROL_EVENTS.tokenExpired)
  t.equal(JSON.parse(last?.data ?? '{}').reason, 'token-expired')
  t.equal(last?.id, undefined, 'no id: the cursor does not move')
  t.ok(writer.ended)
  t.notOk(writer.destroyed, 'ended cleanly, not dropped')
  t.equal(await counted(f.metrics.connectionsClosed, { reason: 'token-expired' }), 1)
  t.equal(f.registry.countFor('u1'), 0, 'slot given back')
})

t.test('a stream that ends before its token expires leaves no deadline behind', async t => {
  const f = setup(t)
  const { session, writer } = await f.open({ expiresAtMs: Date.now() + 80 })
  session.close('client-closed')
  await new Promise(resolve => setTimeout(resolve, 150))
  t.equal(writer.parsed().events.filter(e => e.event === CONTROL_EVENTS.tokenExpired).length, 0)
  t.equal(await counted(f.metrics.connectionsClosed, { reason: 'token-expired' }), 0)
})

t.test('drain: closeAll ends every stream with a retry: within [retry, retry + jitter], spread over the window', async t => {
  const f = setup(t)
  const opened = await Promise.all(Array.from({ length: 20 }, async () => await f.open()))
  t.equal(f.registry.size, 20)
  const started = Date.now()
  await f.registry.closeAll('shutdown', 1000, 500, 100)
  t.ok(Date.now() - started <= 1000, 'within the window')
  t.equal(f.registry.size, 0)
  for (const { session, writer } of opened) {
    t.ok(session.closed && writer.ended)
    const retries = writer.parsed().retries
    t.equal(retries.length, 2, 'the first frame and the last')
    const last = retries.at(-1) as number
    t.ok(last >= 1000 && last <= 1500, `retry ${last} within the jitter`)
  }
  t.equal(await counted(f.metrics.connectionsClosed, { reason: 'shutdown' }), 20)
  t.ok(new Set(opened.map(o => o.writer.parsed().retries.at(-1))).size > 1, 'the retries differ')
})

t.test('the connection closing ends the session, at once if it is gone before the session is counted', async t => {
  const f = setup(t)
  const { session, writer } = await f.open({ user: 'u' })
  writer.disconnect()
  t.ok(session.closed)
  t.equal(await counted(f.metrics.connectionsClosed, { reason: 'client-closed' }), 1)
  t.equal(f.registry.countFor('u'), 0)
  const gone = new FakeWriter()
  gone.connectionGone = true
  const { session: never } = await f.open({ writer: gone })
  t.ok(never.closed, 'closed by bindConnection')
  t.notOk(gone.opened, 'never opened')
  t.equal(f.registry.size, 0)
  t.equal(f.hub.size, 0, 'no key left subscribed')
})

t.test('heartbeat: a comment only when nothing was written for the interval', async t => {
  const f = setup(t)
  const { session, writer } = await f.open()
  session.heartbeat(Date.now(), 60000)
  t.equal(writer.parsed().comments, 0, 'written just now: no heartbeat')
  session.heartbeat(Date.now() + 60000, 60000)
  t.equal(writer.parsed().comments, 1)
  session.close('client-closed')
  session.heartbeat(Date.now() + 120000, 60000)
  t.equal(writer.parsed().comments, 1, 'none after the end')
})

t.test('registry: reserve refuses past the replica and per-user limits, and a session\'s end gives its slot back', async t => {
  const registry = new SessionRegistry(60000)
  t.teardown(() => { registry.stop() })
  const make = (user: string | undefined): RegisteredSession =>
    ({ id: 'x', user, jti: undefined, issuedAtMs: undefined, openedAt: 0, deadlineAt: 0, deadlineIndex: -1, heartbeat: () => {}, expire: () => {}, closeWithRetry: () => {}, endByControl: () => {} })
  const a = make('u')
  const b = make('u')
  t.equal(registry.reserve(a, 3, 1), undefined)
  t.equal(registry.reserve(b, 3, 1), 'user-limit')
  t.equal(registry.reserve(make(undefined), 3, 1), undefined, 'anonymous streams count only against the replica')
  t.equal(registry.reserve(make('v'), 3, 1), undefined)
  t.equal(registry.reserve(make('w'), 3, 1), 'at-capacity')
  registry.delete(a)
  t.equal(registry.countFor('u'), 0)
  t.equal(registry.reserve(b, 3, 1), undefined, 'the slot is free again')
  registry.delete(a)
  t.equal(registry.size, 3, 'deleting twice gives back one slot')
})
