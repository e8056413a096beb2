/**
 * The client helper with a real EventSource (the `eventsource` package)
 * against a real gateway on a throwaway redis-server: events as they arrive,
 * token expiry ridden through with nothing lost, a 401 answered with back-off
 * and a fresh token, a page reload resuming from stored cursors, a gap
 * reported, and the gateway's own retries (unavailable, streams shed) left to
 * EventSource.
 */
import { EventSource } from 'eventsource'
import t from 'tap'
import {
  connect,
  type ConnectOptions,
  type Connection,
  type ConnectionState,
  type GapChannel,
  type StateDetail,
  type StorageLike,
  type TokenReason,
} from '../../src/client/sse-client.js'
import { eventually, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

class MemoryStorage implements StorageLike {
  readonly items = new Map<string, string>()
  getItem (key: string): string | null { return this.items.get(key) ?? null }
  setItem (key: string, value: string): void { this.items.set(key, value) }
  removeItem (key: string): void { this.items.delete(key) }
}

async function setup (t: TestContext, env: Record<string, string> = {}): Promise<{ gw: TestGateway, prefix: string }> {
  const prefix = uniquePrefix('cli')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...env })
  t.teardown(() => gw.close())
  return { gw, prefix }
}

interface Client {
  readonly conn: Connection
  readonly events: Array<{ name: string, data: string, id: string }>
  readonly gaps: GapChannel[][]
  readonly states: Array<[ConnectionState, StateDetail]>
  readonly tokenCalls: TokenReason[]
  opens (): number
  data (): string[]
}

function client (t: TestContext, gw: TestGateway, tokens: (reason: TokenReason, n: number) => string, opts: Partial<ConnectOptions> = {}): Client {
  const c: Omit<Client, 'conn'> = {
    events: [],
    gaps: [],
    states: [],
    tokenCalls: [],
    opens () { return this.states.filter(s => s[0] === 'open').length },
    data () { return this.events.map(e => e.data) },
  }
  const conn = connect({
    url: `${gw.url}/events`,
    topics: ['news'],
    EventSource,
    storage: null,
    getToken: reason => { c.tokenCalls.push(reason); return tokens(reason, c.tokenCalls.length) },
    onEvent: (name, data, id) => { c.events.push({ name, data, id }) },
    onGap: channels => { c.gaps.push(channels) },
    onState: (state, detail) => { c.states.push([state, detail]) },
    backoff: { initialMs: 50, maxMs: 400 },
    ...opts,
  })
  t.teardown(() => { conn.close() })
  return { ...c, conn }
}

const hour = (): number => Math.floor(Date.now() / 1000) + 3600

async function xadd (key: string, data: string, event?: string): Promise<string> {
  const fields = event === undefined ? ['data', data] : ['event', event, 'data', data]
  return await redis.client.xadd(key, '*', ...fields) as string
}

t.test('events arrive as they are written: name, data and the gateway\'s cursor as id', async t => {
  const { gw, prefix } = await setup(t)
  const c = client(t, gw, () => hsToken({ sub: 'ana', topics: ['news'], exp: hour() }), { events: ['price'] })
  await eventually(() => c.conn.state === 'open', 10000, 'open')
  await xadd(`${prefix}topic:news`, '{"p":1}', 'price')
  await xadd(`${prefix}user:ana`, 'hello, ana')
  await eventually(() => c.events.length === 2, 10000, 'two events')
  t.match(c.events, [{ name: 'price', data: '{"p":1}' }, { name: 'message', data: 'hello, ana' }])
  t.ok(c.events.every(e => /^1\.[0-9a-z._]+$/.test(e.id)), 'ids are the two-channel cursor')
  t.equal(c.conn.lastEventId, c.events[1]?.id)
  t.same(c.tokenCalls, ['initial'])
})

t.test('token expiry: a fresh token and a resumed stream, every event once and in order', async t => {
  const { gw, prefix } = await setup(t)
  const soon = Math.floor(Date.now() / 1000) + 2
  const c = client(t, gw, (_reason, n) => hsToken({ sub: 'exp', topics: ['news'], exp: n === 1 ? soon : hour() }))
  await eventually(() => c.conn.state === 'open', 10000, 'open')
  const written: string[] = []
  const until = Date.now() + 3500
  while (Date.now() < until) {
    const data = `e${written.length + 1}`
    written.push(data)
    await xadd(`${prefix}topic:news`, data)
    await new Promise(resolve => setTimeout(resolve, 40))
  }
  await eventually(() => c.events.length >= written.length, 15000, `all ${written.length} events`)
  t.ok(c.tokenCalls.includes('token-expired'), `a fresh token was asked for after expiry (${c.tokenCalls.join(', ')})`)
  t.ok(c.opens() >= 2, `reconnected (${c.opens()} opens)`)
  t.same(c.data(), written, 'every event once, in order, across the expiry')
  t.equal(c.states.filter(s => s[0] === 'backing-off').length, 0, 'no back-off needed')
})

t.test('a 401 (expired token): back-off with jitter, a fresh token, then connected', async t => {
  const { gw, prefix } = await setup(t)
  const c = client(t, gw, (_reason, n) => hsToken({ sub: 'late', topics: ['news'], exp: n === 1 ? Math.floor(Date.now() / 1000) - 60 : hour() }))
  await eventually(() => c.conn.state === 'open', 10000, 'open')
  const backing = c.states.find(s => s[0] === 'backing-off')
  t.match(backing?.[1], { reason: 'error', attempt: 1, error: { code: 401 } }, 'backed off after the 401')
  t.ok((backing?.[1].delayMs ?? 0) >= 25 && (backing?.[1].delayMs ?? 99) <= 50, 'first delay within [initial/2, initial]')
  t.same(c.tokenCalls, ['initial', 'error'], 'a fresh token before trying again')
  await xadd(`${prefix}topic:news`, 'after the 401')
  await eventually(() => c.events.length === 1, 10000, 'the event')
  t.equal(c.events[0]?.data, 'after the 401')
})

t.test('page reload: a new client with the same storage resumes from the stored cursor', async t => {
  const { gw, prefix } = await setup(t)
  const storage = new MemoryStorage()
  const token = (): string => hsToken({ sub: 'reload', topics: ['news'], exp: hour() })
  const first = client(t, gw, token, { storage })
  await eventually(() => first.conn.state === 'open', 10000, 'open')
  for (const d of ['a', 'b', 'c']) await xadd(`${prefix}topic:news`, d)
  await eventually(() => first.events.length === 3, 10000, 'three events')
  first.conn.close()
  t.equal([...storage.items.values()][0], first.events[2]?.id, 'the last cursor is stored')
  // Written while no page was open.
  for (const d of ['d', 'e']) await xadd(`${prefix}topic:news`, d)
  await xadd(`${prefix}user:reload`, 'f')

  const second = client(t, gw, token, { storage })
  await eventually(() => second.events.length === 3, 10000, 'the missed events')
  t.same(second.data().sort(), ['d', 'e', 'f'], 'exactly what was missed, nothing twice')
  await xadd(`${prefix}topic:news`, 'g')
  await eventually(() => second.events.length === 4, 10000, 'then live')
  t.equal(second.events[3]?.data, 'g')
})

t.test('gateway.gap: onGap names the trimmed channel, then delivery goes on', async t => {
  const { gw, prefix } = await setup(t)
  const storage = new MemoryStorage()
  const token = (): string => hsToken({ topics: ['news'], exp: hour() })
  const key = `${prefix}topic:news`
  const first = client(t, gw, token, { storage })
  await eventually(() => first.conn.state === 'open', 10000, 'open')
  await xadd(key, 'seen')
  await eventually(() => first.events.length === 1, 10000, 'one event')
  first.conn.close()
  for (let i = 1; i <= 5; i++) await xadd(key, `missed${i}`)
  await redis.client.xtrim(key, 'MAXLEN', 2)

  const second = client(t, gw, token, { storage })
  await eventually(() => second.events.length === 2, 10000, 'the retained entries')
  t.same(second.gaps, [[{ channel: 'topic:news', reason: 'trimmed' }]], 'onGap with the channel and why')
  t.same(second.data(), ['missed4', 'missed5'], 'then the oldest retained entries')
  t.same(second.events.map(e => e.name), ['message', 'message'], 'the gap is not an event')
})

t.test('gateway.unavailable (replica full): EventSource retries by itself, the helper does not interfere', async t => {
  const { gw, prefix } = await setup(t, { MAX_CONNECTIONS: '1', RETRY_MS: '100', RETRY_JITTER_MS: '0' })
  const blocker = await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ topics: ['news'] })}` })
  t.teardown(() => { blocker.close() })
  t.equal(blocker.status, 200)
  const c = client(t, gw, () => hsToken({ topics: ['news'], exp: hour() }))
  await eventually(() => c.states.some(s => s[0] === 'reconnecting' && s[1].reason === 'unavailable'), 10000, 'gateway.unavailable')
  t.match(c.states.find(s => s[1].reason === 'unavailable')?.[1], { message: /connection limit/ })
  blocker.close()
  await eventually(() => c.conn.state === 'open', 10000, 'open once there is room')
  t.same(c.tokenCalls, ['initial'], 'no new token: the same EventSource came back')
  t.equal(c.states.filter(s => s[0] === 'backing-off').length, 0)
  await xadd(`${prefix}topic:news`, 'in')
  await eventually(() => c.events.length === 1, 10000, 'the event')
})

t.test('a stream the gateway ends (sessions shed): EventSource comes back with Last-Event-ID, nothing lost', async t => {
  const { gw, prefix } = await setup(t)
  const c = client(t, gw, () => hsToken({ sub: 'shed', topics: ['news'], exp: hour() }))
  await eventually(() => c.conn.state === 'open', 10000, 'open')
  await xadd(`${prefix}topic:news`, 'one')
  await eventually(() => c.events.length === 1, 10000, 'first event')
  await gw.gateway.sessions.closeAll('shutdown', 300, 0)
  await eventually(() => c.states.some(s => s[0] === 'reconnecting'), 10000, 'reconnecting')
  await xadd(`${prefix}topic:news`, 'two')
  await xadd(`${prefix}user:shed`, 'three')
  await eventually(() => c.events.length === 3, 10000, 'the rest')
  // Per-channel order only: the user channel's entry may come first.
  t.same(c.data().filter(d => d !== 'three'), ['one', 'two'], 'topic events once, in order')
  t.equal(c.data().filter(d => d === 'three').length, 1, 'the user event once')
  t.ok(c.opens() >= 2)
  t.same(c.tokenCalls, ['initial'])
})
