/**
 * The client helper against a fake EventSource: which URL each new
 * EventSource gets (topics, token, cursor), what reaches onEvent / onGap /
 * onState, when a fresh token is asked for, back-off with jitter after
 * EventSource gives up, the cursor kept in storage, and close().
 */
import t, { type Test } from 'tap'
import {
  CONTROL_EVENTS,
  EventChannels,
  backoffDelay,
  channelHash,
  connect,
  streamChannels,
  streamUrl,
  tokenSubject,
  type ConnectionState,
  type EventSourceLike,
  type GapReason,
  type MessageEventLike,
  type StateDetail,
  type StorageLike,
  type TokenReason,
} from '../../src/client/sse-client.js'
import { CONTROL_EVENTS as SERVER_CONTROL_EVENTS, type GapReason as ServerGapReason } from '../../src/core/protocol.js'
import fc from 'fast-check'
import { channelHash as gatewayHash, encodeCursor, encodeSegment } from '../../src/core/cursor.js'

class FakeEventSource implements EventSourceLike {
  static instances: FakeEventSource[] = []
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSED = 2
  readyState = FakeEventSource.CONNECTING
  onopen: ((event: unknown) => void) | null = null
  onerror: ((event: unknown) => void) | null = null
  closed = false
  readonly listeners = new Map<string, Array<(event: MessageEventLike) => void>>()
  private lastId = ''

  constructor (readonly url: string, readonly init?: { withCredentials?: boolean }) {
    FakeEventSource.instances.push(this)
  }

  addEventListener (type: string, listener: (event: MessageEventLike) => void): void {
    let list = this.listeners.get(type)
    if (list === undefined) this.listeners.set(type, list = [])
    list.push(listener)
  }

  close (): void {
    this.closed = true
    this.readyState = FakeEventSource.CLOSED
  }

  get params (): URLSearchParams { return new URL(this.url).searchParams }

  // What a real EventSource does on the wire:
  open (): void {
    this.readyState = FakeEventSource.OPEN
    this.onopen?.({ type: 'open' })
  }

  /** One event; `id` sets the last event id, as an `id:` line does. */
  emit (type: string, data: string, id?: string): void {
    if (id !== undefined) this.lastId = id
    for (const l of this.listeners.get(type) ?? []) l({ type, data, lastEventId: this.lastId })
  }

  /** The stream ended or the network failed: EventSource will retry (readyState CONNECTING). */
  drop (): void {
    this.readyState = FakeEventSource.CONNECTING
    this.onerror?.({ type: 'error' })
  }

  /** A non-200 answer: EventSource gives up for good. */
  fail (code = 401): void {
    this.readyState = FakeEventSource.CLOSED
    this.onerror?.({ type: 'error', code })
  }
}

class MemoryStorage implements StorageLike {
  readonly items = new Map<string, string>()
  getItem (key: string): string | null { return this.items.get(key) ?? null }
  setItem (key: string, value: string): void { this.items.set(key, value) }
  removeItem (key: string): void { this.items.delete(key) }
}

const tick = async (ms = 0): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function until (check: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await tick(2)
  }
}

interface Harness {
  events: Array<[string, string, string]>
  gaps: unknown[]
  states: Array<[ConnectionState, StateDetail]>
  tokenCalls: TokenReason[]
  storage: MemoryStorage
  last: () => FakeEventSource
}

function harness (t: Test, overrides: Partial<Parameters<typeof connect>[0]> = {}): Harness & { conn: ReturnType<typeof connect> } {
  FakeEventSource.instances = []
  const h: Harness = {
    events: [],
    gaps: [],
    states: [],
    tokenCalls: [],
    storage: new MemoryStorage(),
    last: () => FakeEventSource.instances[FakeEventSource.instances.length - 1] as FakeEventSource,
  }
  let n = 0
  const conn = connect({
    url: 'http://gw.test/events',
    topics: ['news', 'orders'],
    getToken: reason => { h.tokenCalls.push(reason); return `tok${++n}` },
    onEvent: (name, data, id) => { h.events.push([name, data, id]) },
    onGap: channels => { h.gaps.push(channels) },
    onState: (state, detail) => { h.states.push([state, detail]) },
    storage: h.storage,
    storageKey: 'cursor',
    EventSource: FakeEventSource,
    backoff: { initialMs: 5, maxMs: 40 },
    ...overrides,
  })
  t.teardown(() => { conn.close() })
  return { ...h, conn }
}

t.test('the control event names are the gateway\'s', async t => {
  t.same(CONTROL_EVENTS, SERVER_CONTROL_EVENTS)
})

// The client's gap reasons are the gateway's, both ways (checked by tsc: the typecheck test).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const gapReasonsMatch: Same<GapReason, ServerGapReason> = true
t.test('the gap reasons are the gateway\'s', async t => {
  t.equal(gapReasonsMatch, true)
})

t.test('first connect: topics and token in the URL, no cursor when none is stored', async t => {
  const h = harness(t)
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const es = h.last()
  t.equal(new URL(es.url).pathname, '/events')
  t.same(es.params.getAll('topic'), ['news', 'orders'])
  t.equal(es.params.get('token'), 'tok1')
  t.equal(es.params.get('lastEventId'), null)
  t.same(h.tokenCalls, ['initial'])
  t.equal(h.conn.state, 'connecting')
  es.open()
  t.equal(h.conn.state, 'open')
  t.same(h.states.map(s => s[0]), ['connecting', 'open'])
})

t.test('a stored cursor is sent as lastEventId on the first connect (page reload)', async t => {
  FakeEventSource.instances = []
  const storage = new MemoryStorage()
  storage.setItem('cursor', '1.abc.def')
  const h = harness(t, { storage })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  t.equal(h.last().params.get('lastEventId'), '1.abc.def')
  t.equal(h.conn.lastEventId, '1.abc.def')
})

t.test('an explicit lastEventId wins over the stored one; query parameters of the URL are kept', async t => {
  const storage = new MemoryStorage()
  storage.setItem('cursor', 'stored')
  const h = harness(t, { storage, lastEventId: 'given', url: 'http://gw.test/events?history=20' })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  t.equal(h.last().params.get('lastEventId'), 'given')
  t.equal(h.last().params.get('history'), '20')
})

t.test('events: unnamed as message, named ones listed in events or added with listen(); the cursor is stored', async t => {
  const h = harness(t, { events: ['price'] })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const es = h.last()
  es.open()
  es.emit('message', 'hello', '1-0')
  es.emit('price', '{"p":1}', '2-0')
  es.emit('other', 'not listened for', '3-0')
  h.conn.listen('other')
  es.emit('other', 'now listened for', '4-0')
  t.same(h.events, [['message', 'hello', '1-0'], ['price', '{"p":1}', '2-0'], ['other', 'now listened for', '4-0']])
  t.equal(h.storage.getItem('cursor'), '4-0', 'the last id is in storage')
  t.equal(h.conn.lastEventId, '4-0')
})

t.test('control event names are never handed to onEvent, even if listed', async t => {
  const h = harness(t, { events: ['gateway.gap', 'message'] })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  h.conn.listen('gateway.token-expired')
  const es = h.last()
  es.open()
  es.emit('gateway.gap', JSON.stringify({ channels: [] }), '5-0')
  es.emit('message', 'once', '6-0')
  t.same(h.events, [['message', 'once', '6-0']], 'message delivered once, the gap not as an event')
})

t.test('gateway.gap: onGap gets the channels, the cursor moves, delivery goes on', async t => {
  const h = harness(t)
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const es = h.last()
  es.open()
  const channels = [{ channel: 'topic:news', reason: 'trimmed' }, { channel: 'user:42', reason: 'missing' }]
  es.emit(CONTROL_EVENTS.gap, JSON.stringify({ channels }), 'gap-cursor')
  t.same(h.gaps, [channels])
  t.equal(h.storage.getItem('cursor'), 'gap-cursor')
  t.equal(FakeEventSource.instances.length, 1, 'no reconnect')
  t.notOk(es.closed)
  es.emit(CONTROL_EVENTS.gap, 'not json', 'gap-2')
  t.same(h.gaps[1], [], 'malformed gap data: onGap with no channels')
})

t.test('gateway.token-expired: closes, asks for a fresh token, reconnects with the cursor', async t => {
  const h = harness(t)
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const first = h.last()
  first.open()
  first.emit('message', 'a', '10-0')
  // Expiry long after open: no back-off.
  await tick(1100)
  first.emit(CONTROL_EVENTS.tokenExpired, JSON.stringify({ reason: 'token-expired', message: 'The access token expired' }))
  t.ok(first.closed, 'the old EventSource is closed (it would come back with the old token)')
  await until(() => FakeEventSource.instances.length === 2, 'a second EventSource')
  const second = h.last()
  t.same(h.tokenCalls, ['initial', 'token-expired'])
  t.equal(second.params.get('token'), 'tok2', 'fresh token')
  t.equal(second.params.get('lastEventId'), '10-0', 'resumes from the cursor')
  t.same(second.params.getAll('topic'), ['news', 'orders'])
  t.equal(h.states.find(s => s[0] === 'backing-off'), undefined, 'no back-off for a token that lived its life')
  second.open()
  first.emit('message', 'late event from the closed source', '11-0')
  t.same(h.events.map(e => e[1]), ['a'], 'nothing from the old EventSource after it was replaced')
})

t.test('gateway.token-expired right after open backs off instead of spinning', async t => {
  const h = harness(t)
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  h.last().open()
  h.last().emit(CONTROL_EVENTS.tokenExpired, '{}')
  const backing = h.states.find(s => s[0] === 'backing-off')
  t.ok(backing, 'backing off')
  t.equal(backing?.[1].reason, 'token-expired')
  await until(() => FakeEventSource.instances.length === 2, 'a second EventSource')
  t.same(h.tokenCalls, ['initial', 'token-expired'])
})

t.test('gateway.revoked: closes, backs off, asks for a fresh token with reason revoked, and resumes from the cursor', async t => {
  const h = harness(t)
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const first = h.last()
  first.open()
  first.emit('message', 'one', '5-0')
  first.emit(CONTROL_EVENTS.revoked, '{"reason":"revoked","message":"This token was revoked: reconnect with a fresh token."}')
  t.ok(first.closed, 'the revoked stream is closed (EventSource would come back with the revoked token)')
  const backing = h.states.find(s => s[0] === 'backing-off')
  t.equal(backing?.[1].reason, 'revoked', 'onState says why')
  t.match(backing?.[1].message, /revoked/)
  await until(() => FakeEventSource.instances.length === 2, 'a second EventSource')
  t.same(h.tokenCalls, ['initial', 'revoked'])
  t.equal(h.last().params.get('token'), 'tok2', 'with the fresh token')
  t.equal(h.last().params.get('lastEventId'), '5-0', 'from the cursor')
})

t.test('gateway.unavailable and plain stream ends: EventSource retries by itself, no new EventSource', async t => {
  const h = harness(t)
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const es = h.last()
  es.open()
  es.emit(CONTROL_EVENTS.unavailable, JSON.stringify({ reason: 'draining', message: 'This replica is shutting down: reconnect.' }))
  es.drop()
  t.match(h.states[h.states.length - 1], ['reconnecting', { reason: 'unavailable', message: /shutting down/ }])
  es.open()
  es.drop()
  t.match(h.states[h.states.length - 1], ['reconnecting', { reason: 'error' }])
  await tick(30)
  t.equal(FakeEventSource.instances.length, 1, 'still the same EventSource')
  t.notOk(es.closed)
  t.same(h.tokenCalls, ['initial'], 'no token asked for')
})

t.test('EventSource gives up (e.g. 401): back-off with jitter, then a fresh token and the cursor', async t => {
  const h = harness(t)
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const first = h.last()
  first.open()
  first.emit('message', 'x', '20-0')
  first.fail(401)
  t.ok(first.closed)
  const backing = h.states[h.states.length - 1] as [ConnectionState, StateDetail]
  t.equal(backing[0], 'backing-off')
  t.equal(backing[1].attempt, 1)
  t.ok((backing[1].delayMs ?? -1) >= 2 && (backing[1].delayMs ?? 99) <= 5, `first delay within [initial/2, initial] (${String(backing[1].delayMs)})`)
  t.match(backing[1].error, { code: 401 }, 'the error event is passed on')
  await until(() => FakeEventSource.instances.length === 2, 'a second EventSource')
  t.same(h.tokenCalls, ['initial', 'error'], 'a fresh token is asked for first')
  t.equal(h.last().params.get('token'), 'tok2')
  t.equal(h.last().params.get('lastEventId'), '20-0')

  // Consecutive failures grow the delay up to the ceiling; an open resets it.
  const delays: number[] = []
  for (let i = 0; i < 5; i++) {
    const count = FakeEventSource.instances.length
    h.last().fail(503)
    delays.push(h.states[h.states.length - 1]?.[1].delayMs as number)
    await until(() => FakeEventSource.instances.length === count + 1, 'the next EventSource')
  }
  t.same(h.states.filter(s => s[0] === 'backing-off').map(s => s[1].attempt), [1, 2, 3, 4, 5, 6])
  t.ok(delays.every(d => d <= 40), `capped at maxMs (${delays.join(', ')})`)
  t.ok((delays[4] as number) >= 20, 'the last ones are at least half the ceiling')
  h.last().open()
  h.last().fail(401)
  t.equal(h.states[h.states.length - 1]?.[1].attempt, 1, 'an open resets the attempts')
})

t.test('getToken failing: back-off and try again; a null token sends none (cookie auth)', async t => {
  let calls = 0
  const h = harness(t, {
    getToken: async () => {
      calls++
      if (calls === 1) throw new Error('token service down')
      return null
    },
  })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource after the retry')
  t.match(h.states.find(s => s[0] === 'backing-off')?.[1], { reason: 'token-error', error: { message: 'token service down' } })
  t.equal(h.last().params.get('token'), null, 'no token parameter')
  t.equal(calls, 2)
})

t.test('close(): closes the EventSource, cancels a pending reconnect and a pending getToken', async t => {
  const h = harness(t)
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  h.last().open()
  h.last().fail(401)
  h.conn.close()
  t.ok(h.last().closed)
  t.equal(h.conn.state, 'closed')
  await tick(60)
  t.equal(FakeEventSource.instances.length, 1, 'no reconnect after close')

  let release!: (token: string) => void
  const pending = harness(t, { getToken: async () => await new Promise<string>(resolve => { release = resolve }) })
  pending.conn.close()
  release('late')
  await tick(10)
  t.equal(FakeEventSource.instances.length, 0, 'a token that arrives after close opens nothing')
  pending.conn.close()
  t.same(pending.states.filter(s => s[0] === 'closed').length, 1, 'close is idempotent')
})

t.test('storage: sessionStorage-like failures never break delivery; null keeps the cursor in memory', async t => {
  const broken: StorageLike = {
    getItem () { throw new Error('SecurityError') },
    setItem () { throw new Error('QuotaExceededError') },
    removeItem () {},
  }
  const h = harness(t, { storage: broken })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  h.last().open()
  h.last().emit('message', 'a', '1-0')
  t.same(h.events, [['message', 'a', '1-0']])
  t.equal(h.conn.lastEventId, '1-0')

  const m = harness(t, { storage: null })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  m.last().emit('message', 'b', '2-0')
  t.equal(m.conn.lastEventId, '2-0')
})

t.test('defaults: the global EventSource and sessionStorage, a key per URL and topic set', async t => {
  const g = globalThis as Record<string, unknown>
  const storage = new MemoryStorage()
  g.EventSource = FakeEventSource
  g.sessionStorage = storage
  t.teardown(() => { delete g.EventSource; delete g.sessionStorage })
  FakeEventSource.instances = []
  const events: string[] = []
  const conn = connect({ url: 'http://gw.test/events', topics: ['b', 'a'], onEvent: (_n, d) => { events.push(d) }, withCredentials: true })
  t.teardown(() => { conn.close() })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const es = FakeEventSource.instances[0] as FakeEventSource
  t.same(es.init, { withCredentials: true })
  t.equal(es.params.get('token'), null, 'no getToken: no token parameter')
  es.emit('message', 'x', '9-0')
  t.same([...storage.items], [['sse-gateway:cursor:http://gw.test/events|a,b', '9-0']])
})

t.test('no EventSource, or a relative URL with no page: a clear TypeError at once', async t => {
  t.throws(() => connect({ url: 'http://gw.test/events', onEvent: () => {} }), { name: 'TypeError', message: /no EventSource.*eventsource/ })
  t.throws(() => connect({ url: '/events', onEvent: () => {}, EventSource: FakeEventSource }), TypeError)
})

t.test('streamUrl: topics appended, token and cursor set, an empty token removes one in the base', async t => {
  const u = new URL(streamUrl('http://gw.test/events?token=old&history=5', ['a', 'b.c'], '', '1.x'))
  t.same(u.searchParams.getAll('topic'), ['a', 'b.c'])
  t.equal(u.searchParams.get('token'), null)
  t.equal(u.searchParams.get('history'), '5')
  t.equal(u.searchParams.get('lastEventId'), '1.x')
  t.equal(new URL(streamUrl(new URL('http://gw.test/events'), [], 'tok', undefined)).search, '?token=tok')
})

t.test('backoffDelay: exponential, capped, between half and all of the ceiling', async t => {
  t.equal(backoffDelay(1, 1000, 30000, () => 0), 500)
  t.equal(backoffDelay(1, 1000, 30000, () => 1), 1000)
  t.equal(backoffDelay(3, 1000, 30000, () => 1), 4000)
  t.equal(backoffDelay(10, 1000, 30000, () => 1), 30000)
  t.equal(backoffDelay(10, 1000, 30000, () => 0), 15000)
  t.equal(backoffDelay(1e9, 1000, 30000, () => 0.5), 22500, 'huge attempt counts do not overflow')
  for (let attempt = 1; attempt < 40; attempt++) {
    const d = backoffDelay(attempt, 250, 8000)
    const ceiling = Math.min(8000, 250 * 2 ** (attempt - 1))
    if (!(d >= ceiling / 2 && d <= ceiling)) t.fail(`attempt ${attempt}: ${d} outside [${ceiling / 2}, ${ceiling}]`)
  }
})

t.test('channel names: the hash is the gateway\'s, and the channels come in its order', async t => {
  fc.assert(fc.property(fc.string({ maxLength: 200, unit: 'binary' }), name => channelHash(name) === gatewayHash(name)), { numRuns: 2000 })
  t.same(streamChannels('alice', ['b', 'a', 'b']), ['user:alice', 'topic:b', 'topic:a'])
  t.same(streamChannels(undefined, ['a']), ['topic:a'])
})

t.test('channel of an id: a bare id names the one channel; a cursor its first segment\'s channel; unknown hashes nothing', async t => {
  const seg = (name: string, id: `${number}-${number}`): string => encodeSegment(gatewayHash(name), id)
  const known = new EventChannels('alice', ['news', 'chat'])
  t.equal(known.channelOf(encodeCursor([seg('topic:chat', '5-0'), seg('user:alice', '9-1'), seg('topic:news', '3-0')])), 'topic:chat')
  t.equal(known.channelOf(encodeCursor([seg('user:alice', '9-1'), seg('topic:chat', '5-0'), seg('topic:news', '3-0')])), 'user:alice')
  t.equal(known.channelOf(encodeCursor([seg('topic:other', '9-1'), seg('topic:chat', '5-0')])), undefined, 'a channel this stream does not read: none, never a wrong one')
  t.equal(known.channelOf('1700000000000-0'), undefined, 'a bare id on a stream of three: none')
  t.equal(new EventChannels('alice', []).channelOf('1700000000000-0'), 'user:alice')
  t.equal(new EventChannels(undefined, ['news']).channelOf('1700000000000-0'), 'topic:news')
  t.equal(new EventChannels(undefined, []).channelOf('1700000000000-0'), 'user:', 'unknown user, no topic: the user channel')
  const anon = new EventChannels(undefined, ['news'])
  t.equal(anon.channelOf(encodeCursor([seg('user:bob', '1-0'), seg('topic:news', '3-0')])), 'user:', 'unknown user: the hash no topic has')
  t.equal(anon.channelOf(encodeCursor([seg('topic:news', '3-0'), seg('user:bob', '1-0')])), 'topic:news')
})

t.test('tokenSubject: the sub of a JWT (UTF-8, base64url), nothing for anything else', async t => {
  const jwt = (payload: unknown): string => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`
  t.equal(tokenSubject(jwt({ sub: 'ålice-42' })), 'ålice-42')
  t.equal(tokenSubject(jwt({ uid: 7 })), undefined)
  t.equal(tokenSubject('opaque-token'), undefined)
  t.equal(tokenSubject('a.!!!.c'), undefined)
  t.equal(tokenSubject(undefined), undefined)
})

t.test('onEvent gets each event\'s channel: from the id, the user from the token or the option', async t => {
  const jwt = `e30.${Buffer.from(JSON.stringify({ sub: 'alice' })).toString('base64url')}.sig`
  const got: Array<string | undefined> = []
  const h = harness(t, { getToken: () => jwt, onEvent: (_n, _d, _id, channel) => { got.push(channel) } })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const es = h.last()
  es.open()
  es.emit('message', 'x', encodeCursor([encodeSegment(gatewayHash('topic:orders'), '5-0'), encodeSegment(gatewayHash('user:alice'), '1-0'), encodeSegment(gatewayHash('topic:news'), '1-0')]))
  es.emit('message', 'y', encodeCursor([encodeSegment(gatewayHash('user:alice'), '6-0'), encodeSegment(gatewayHash('topic:orders'), '5-0'), encodeSegment(gatewayHash('topic:news'), '1-0')]))
  t.same(got, ['topic:orders', 'user:alice'])
  t.equal(es.params.get('channel'), null, 'nothing asked of the gateway')
  const named: Array<string | undefined> = []
  const h2 = harness(t, { user: 'bob', topics: [], onEvent: (_n, _d, _id, channel) => { named.push(channel) } })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  h2.last().open()
  h2.last().emit('message', 'z', '7-0')
  t.same(named, ['user:bob'])
})

t.test('channelOnWire: asks for channel=data, and onEvent gets the channel line apart from the data', async t => {
  const got: Array<[string, string, string | undefined]> = []
  const h = harness(t, { channelOnWire: true, events: ['order'], onEvent: (name, data, _id, channel) => { got.push([name, data, channel]) } })
  await until(() => FakeEventSource.instances.length === 1, 'an EventSource')
  const es = h.last()
  t.equal(es.params.get('channel'), 'data')
  es.open()
  es.emit('message', 'topic:news\n{"a":1}', '1-0')
  es.emit('order', 'topic:orders\ntwo\nlines', '2-0')
  es.emit('message', 'topic:news\n', '3-0')
  t.same(got, [['message', '{"a":1}', 'topic:news'], ['order', 'two\nlines', 'topic:orders'], ['message', '', 'topic:news']])
})
