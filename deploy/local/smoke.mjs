// End-to-end check of the local deployment (run by `run.sh --smoke`):
// clients connect through the load balancer, a producer XADDs, replica a is
// sent SIGTERM mid-stream, and every client must end up with every event
// exactly once, in order, having resumed on replica b.
//
// Env: LB_URL, REDIS_URL, A_INTERNAL_URL, B_INTERNAL_URL, GATEWAY_A_PID,
// JWT_SECRET, KEY_PREFIX (default sse:). Exits non-zero on any failure.
import { createHmac } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback
  if (v === undefined) throw new Error(`${name} is not set`)
  return v
}
const LB_URL = env('LB_URL')
const PREFIX = env('KEY_PREFIX', 'sse:')
const CLIENTS = Number(env('SMOKE_CLIENTS', '20'))
const BEFORE = 50 // events before the drain
const DURING = 150 // events written while replica a drains
const AFTER = 50 // events once replica b holds every stream

function token (sub, topics) {
  const b64 = v => Buffer.from(JSON.stringify(v)).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, topics, iat: now, exp: now + 600 })}`
  return `${head}.${createHmac('sha256', env('JWT_SECRET')).update(head).digest('base64url')}`
}

/** A reconnecting SSE client, like a browser's EventSource. */
class Client {
  constructor (name, url, headers) {
    Object.assign(this, { name, url, headers, lastId: undefined, retry: 1000, data: [], controls: [], connects: 0, statuses: [] })
    this.abort = new AbortController()
  }

  async run () {
    while (!this.abort.signal.aborted) {
      this.connects++
      try {
        const headers = { accept: 'text/event-stream', ...this.headers }
        if (this.lastId !== undefined) headers['last-event-id'] = this.lastId
        const res = await fetch(this.url, { headers, signal: this.abort.signal })
        this.statuses.push(res.status)
        if (res.status !== 200) throw new Error(`status ${res.status}`)
        await this.read(res.body)
      } catch (err) {
        if (this.abort.signal.aborted) return
        this.error = err.message
      }
      await sleep(this.retry).catch(() => {})
    }
  }

  async read (body) {
    const decoder = new TextDecoder()
    let buf = ''
    let ev = { data: [], event: undefined, id: undefined }
    for await (const chunk of body) {
      buf += decoder.decode(chunk, { stream: true })
      let m
      while ((m = /\r\n|\r|\n/.exec(buf)) !== null) {
        const line = buf.slice(0, m.index)
        buf = buf.slice(m.index + m[0].length)
        if (line === '') {
          if (ev.id !== undefined) this.lastId = ev.id
          if (ev.data.length > 0) this.dispatch(ev.event ?? 'message', ev.data.join('\n'))
          ev = { data: [], event: undefined, id: undefined }
          continue
        }
        if (line.startsWith(':')) continue
        const colon = line.indexOf(':')
        const field = colon === -1 ? line : line.slice(0, colon)
        const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
        if (field === 'data') ev.data.push(value)
        else if (field === 'event') ev.event = value
        else if (field === 'id') ev.id = value
        else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value)
      }
    }
  }

  dispatch (event, data) {
    if (event.startsWith('gateway.')) this.controls.push(event)
    else this.data.push(`${event}:${data}`)
  }
}

async function metric (base, name) {
  const text = await (await fetch(`${base}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

async function until (what, check, timeoutMs) {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

const failures = []
const expect = (ok, what) => { if (!ok) failures.push(what); console.log(`${ok ? 'ok' : 'FAIL'} - ${what}`) }

const redis = new Redis(env('REDIS_URL'))
const topicKey = `${PREFIX}topic:demo`
const clients = []
const tokens = []
for (let i = 0; i < CLIENTS; i++) {
  const withToken = i % 2 === 1
  const jwt = token(`user-${i}`, ['demo'])
  tokens.push(jwt)
  // Token clients: header (as servers do), and ?token= as a browser's EventSource must.
  if (!withToken) clients.push(new Client(`anon-${i}`, `${LB_URL}/events?topic=demo`, {}))
  else if (i % 4 === 1) clients.push(new Client(`user-${i}`, `${LB_URL}/events?topic=demo`, { authorization: `Bearer ${jwt}` }))
  else clients.push(new Client(`user-${i}`, `${LB_URL}/events?topic=demo&token=${jwt}`, {}))
}
const running = clients.map(c => c.run())

try {
  const A = env('A_INTERNAL_URL')
  const B = env('B_INTERNAL_URL')
  await until('every client connected', async () => (await metric(A, 'sse_gateway_connections_open')) + (await metric(B, 'sse_gateway_connections_open')) === CLIENTS, 15000)
  const onA = await metric(A, 'sse_gateway_connections_open')
  const onB = await metric(B, 'sse_gateway_connections_open')
  expect(onA > 0 && onB > 0, `the load balancer spread ${CLIENTS} streams over both replicas (a: ${onA}, b: ${onB})`)

  let seq = 0
  const expected = []
  const produce = async n => {
    for (let i = 0; i < n; i++) {
      seq++
      expected.push(`tick:${seq}`)
      await redis.xadd(topicKey, 'MAXLEN', '~', '100000', '*', 'event', 'tick', 'data', String(seq))
    }
  }
  for (const c of clients.filter(c => c.name.startsWith('user-'))) {
    await redis.xadd(`${PREFIX}user:${c.name}`, '*', 'event', 'private', 'data', c.name)
  }
  await produce(BEFORE)
  await until('events before the drain', () => clients.every(c => c.data.filter(d => d.startsWith('tick:')).length >= BEFORE), 15000)
  expect(true, `${BEFORE} events reached all ${CLIENTS} clients through the load balancer`)

  // Drain replica a while the producer keeps writing.
  const drainStart = Date.now()
  const writer = (async () => {
    for (let i = 0; i < DURING; i += 5) { await produce(5); await sleep(20) }
  })()
  await sleep(100)
  process.kill(Number(env('GATEWAY_A_PID')), 'SIGTERM')
  await writer
  await until('replica b holds every stream', async () => (await metric(B, 'sse_gateway_connections_open')) === CLIENTS, 20000)
  expect(true, `replica b holds all ${CLIENTS} streams`)
  await produce(AFTER)
  await until('every event', () => clients.every(c => c.data.filter(d => d.startsWith('tick:')).length >= expected.length), 30000)
  const drainMs = Date.now() - drainStart

  let exact = 0
  for (const c of clients) {
    const ticks = c.data.filter(d => d.startsWith('tick:'))
    if (JSON.stringify(ticks) === JSON.stringify(expected)) exact++
    else console.log(`  ${c.name}: ${ticks.length} events, first mismatch at ${ticks.findIndex((d, i) => d !== expected[i])}`)
  }
  expect(exact === CLIENTS, `${exact}/${CLIENTS} clients got all ${expected.length} events exactly once, in order, across the drain (${drainMs} ms)`)
  const moved = clients.filter(c => c.connects > 1).length
  expect(moved >= onA, `${moved} clients reconnected (replica a had ${onA})`)
  expect(clients.every(c => !c.controls.includes('gateway.gap')), 'no gap announced')
  expect(clients.every(c => c.statuses.every(s => s === 200)), 'every answer through the load balancer was a 200 (EventSource keeps retrying)')
  const privates = clients.filter(c => c.name.startsWith('user-')).every(c => c.data.filter(d => d.startsWith('private:')).join() === `private:${c.name}`)
  expect(privates, 'each token client got its own user-channel event, and only its own')
  const replayed = await metric(B, 'sse_gateway_events_delivered_total{source="replay"}')
  expect(replayed > 0, `replica b replayed ${replayed} events to resuming clients (sse_gateway_events_delivered_total{source="replay"})`)
} catch (err) {
  expect(false, err.message)
} finally {
  for (const c of clients) c.abort.abort()
  await Promise.allSettled(running)
  redis.disconnect()
}
// Tokens in query strings must not land in the load balancer's or the
// gateways' logs.
for (const file of (process.env.LOG_FILES ?? '').split(':').filter(Boolean)) {
  const text = await readFile(file, 'utf8').catch(() => '')
  const leaked = tokens.filter(tk => text.includes(tk) || text.includes(tk.split('.')[2])).length
  expect(text !== '' && leaked === 0, `${file.split('/').slice(-2).join('/')}: written, and no token in it`)
}
console.log(JSON.stringify({ clients: CLIENTS, failures }))
process.exit(failures.length === 0 ? 0 : 1)
