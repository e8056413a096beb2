/**
 * Logs: a token never reaches a log line, whichever way it came and whether
 * or not it was accepted; each session logs one line when it opens and one
 * when it closes, with what an operator needs.
 */
import { connect } from 'node:net'
import t from 'tap'
import { eventually, getAnswer, rawToken, signatureOf, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

type Line = Record<string, unknown>
const parse = (gw: TestGateway): Line[] => gw.logs.map(l => JSON.parse(l) as Line)

/** Opens and closes accepted streams and provokes refusals, every token way; returns every token used. */
async function traffic (t: TestContext, gw: TestGateway, prefix: string): Promise<{ tokens: string[], received: Map<string, number> }> {
  const now = Math.floor(Date.now() / 1000)
  const tokens = {
    query: hsToken({ sub: 'via-query', topics: ['news'] }),
    header: hsToken({ sub: 'via-header' }),
    cookie: hsToken({ sub: 'via-cookie' }),
    expired: hsToken({ sub: 'late', exp: now - 5 }),
    forged: hsToken({ sub: 'mallory' }, 'not-the-secret-0123456789-abcdefghijklmno'),
    noExp: hsToken({ sub: 'forever', exp: undefined }),
    none: rawToken({ alg: 'none' }, { sub: 'root', exp: now + 60 }),
    forbidden: hsToken({ sub: 'nosy', topics: ['news'] }),
    notFound: hsToken({ sub: 'lost' }),
  }
  const received = new Map<string, number>()
  const streams: Array<{ sub: string, url: string, headers: Record<string, string> }> = [
    { sub: 'via-query', url: `${gw.url}/events?topic=news&token=${tokens.query}`, headers: {} },
    { sub: 'via-header', url: `${gw.url}/events`, headers: { authorization: `Bearer ${tokens.header}` } },
    { sub: 'via-cookie', url: `${gw.url}/events`, headers: { cookie: `sse_token=${tokens.cookie}` } },
  ]
  for (const { sub, url, headers } of streams) {
    const s = await openStream(url, headers)
    t.equal(s.status, 200, `${sub}: stream open`)
    const n = sub === 'via-query' ? 3 : 2
    for (let i = 0; i < n; i++) await redis.client.xadd(`${prefix}user:${sub}`, '*', 'data', `${sub} ${i}`)
    await s.waitForEvents(n)
    received.set(sub, s.events.length)
    s.close()
  }
  const refusals: Array<[string, Record<string, string>, number]> = [
    [`${gw.url}/events?token=${tokens.expired}`, {}, 401],
    [`${gw.url}/events?topic=news&token=${tokens.forged}`, {}, 401],
    [`${gw.url}/events`, { authorization: `Bearer ${tokens.noExp}` }, 401],
    [`${gw.url}/events`, { cookie: `sse_token=${tokens.none}` }, 401],
    [`${gw.url}/events?topic=secret&token=${tokens.forbidden}`, {}, 403],
    [`${gw.url}/events?topic=bad%20name&token=${tokens.forbidden}`, {}, 400],
    [`${gw.url}/events?token=${tokens.expired}&token=${tokens.forged}`, {}, 401],
    [`${gw.url}/nowhere?token=${tokens.notFound}`, { authorization: `Bearer ${tokens.notFound}` }, 404],
  ]
  for (const [url, headers, status] of refusals) {
    t.equal((await getAnswer(url, headers)).status, status, `refused with ${status}`)
  }
  await eventually(() => parse(gw).filter(l => l.msg === 'session closed').length >= streams.length, 10000, 'close lines')
  return { tokens: Object.values(tokens), received }
}

/** Buffers serialised into a log line (`{"type":"Buffer","data":[...]}`), decoded. */
function buffersIn (value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) buffersIn(v, out)
  else if (typeof value === 'object' && value !== null) {
    const o = value as Record<string, unknown>
    if (o.type === 'Buffer' && Array.isArray(o.data)) out.push(Buffer.from(o.data as number[]).toString('latin1'))
    else for (const v of Object.values(o)) buffersIn(v, out)
  }
  return out
}

function assertNoToken (t: TestContext, gw: TestGateway, tokens: string[]): void {
  t.ok(gw.logs.length > 0, `there are log lines (${gw.logs.length})`)
  const leaks: string[] = []
  for (const raw of gw.logs) {
    const line = [raw, ...buffersIn(JSON.parse(raw))].join('\n')
    for (const token of tokens) {
      if (line.includes(token)) leaks.push(`token in: ${raw.slice(0, 300)}`)
      else if (line.includes(signatureOf(token)) && signatureOf(token).length > 0) leaks.push(`signature in: ${raw.slice(0, 300)}`)
      else if (line.includes(token.slice(0, token.lastIndexOf('.')))) leaks.push(`header.payload in: ${raw.slice(0, 300)}`)
    }
    if (/token=/.test(line)) leaks.push(`query string in: ${raw.slice(0, 300)}`)
  }
  t.same(leaks, [], 'no log line holds a token, a signature, or a query string')
}

t.test('no log line contains a token, whichever way it came and whatever happened to it', async t => {
  const prefix = uniquePrefix('logs')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  const { tokens } = await traffic(t, gw, prefix)
  const refusedLines = parse(gw).filter(l => l.msg === 'request refused')
  t.equal(refusedLines.length, 7, 'one line per refused request (404s are not logged)')
  for (const l of refusedLines) {
    t.match(l, { error: /^SSEGW_ERR_/, statusCode: Number, req: { method: 'GET', path: '/events' } }, `refusal logged with its code and path only (${String(l.error)})`)
  }
  await gw.close()
  assertNoToken(t, gw, tokens)
})

t.test('no token in the logs at trace level either', async t => {
  const prefix = uniquePrefix('logs')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, LOG_LEVEL: 'trace' })
  t.teardown(() => gw.close())
  const { tokens } = await traffic(t, gw, prefix)
  await gw.close()
  assertNoToken(t, gw, tokens)
})

t.test('session open (debug) and close (info) lines carry session id, user, channels, events sent, duration and reason', async t => {
  const prefix = uniquePrefix('logs')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, LOG_LEVEL: 'debug' })
  t.teardown(() => gw.close())
  const { received } = await traffic(t, gw, prefix)
  const lines = parse(gw)
  for (const [user, events] of received) {
    const opened = lines.filter(l => l.msg === 'session opened' && l.user === user)
    t.equal(opened.length, 1, `${user}: one open line`)
    const open = opened[0] ?? {}
    t.match(open, { level: 20, session: /^[0-9a-f-]{36}$/, reqId: String, user, channels: user === 'via-query' ? 2 : 1, resumed: false }, `${user}: open line (debug) has session id, request id, user and channel count`)
    const closed = lines.filter(l => l.msg === 'session closed' && l.session === open.session)
    t.equal(closed.length, 1, `${user}: one close line for that session`)
    t.match(closed[0], { level: 30, user, channels: user === 'via-query' ? 2 : 1, resumed: false, events, durationMs: Number, reason: 'client-closed' }, `${user}: close line has user, channels, events sent (${events}), duration and reason`)
    t.ok(typeof closed[0]?.durationMs === 'number' && closed[0].durationMs >= 0, `${user}: duration is a non-negative number`)
  }
  // A session the server ends says so.
  const s = await openStream(`${gw.url}/events`, { authorization: `Bearer ${hsToken({ sub: 'drained' })}` })
  await gw.gateway.sessions.closeAll('shutdown', 1000, 0)
  await s.waitForEnd()
  const drained = parse(gw).find(l => l.msg === 'session closed' && l.user === 'drained')
  t.match(drained, { reason: 'shutdown', events: 0, channels: 1 }, 'server-ended session logs reason shutdown')
})

/** Sends raw bytes and waits for the server to answer or close. */
async function rawRequest (gw: TestGateway, text: string): Promise<string> {
  return await new Promise(resolve => {
    let reply = ''
    const sock = connect(Number(new URL(gw.url).port), '127.0.0.1', () => { sock.write(text) })
    sock.setEncoding('latin1')
    sock.on('data', (d: string) => { reply += d })
    sock.on('close', () => { resolve(reply) })
    sock.on('error', () => { resolve(reply) })
  })
}

t.test('regression: the raw bytes of a malformed request (query string, headers, token) are not logged', async t => {
  const prefix = uniquePrefix('logs')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, LOG_LEVEL: 'trace' })
  t.teardown(() => gw.close())
  const inQuery = hsToken({ sub: 'raw-query' })
  const inHeader = hsToken({ sub: 'raw-header' })
  const inCookie = hsToken({ sub: 'raw-cookie' })
  // A header line with no colon: Node's parser fails and reports the bytes it read.
  const bad = await rawRequest(gw, `GET /events?token=${inQuery} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${inHeader}\r\nnot a header\r\n\r\n`)
  t.match(bad, /^HTTP\/1\.1 400/, 'malformed request refused')
  // Headers over Node's 16 KiB limit.
  const big = await rawRequest(gw, `GET /events HTTP/1.1\r\nHost: x\r\nCookie: sse_token=${inCookie}; pad=${'x'.repeat(20000)}\r\n\r\n`)
  t.match(big, /^HTTP\/1\.1 431/, 'oversized headers refused')
  await gw.close()
  t.ok(gw.logs.some(l => l.includes('client error') || l.includes('client header_overflow')), 'the client errors were logged (at trace)')
  assertNoToken(t, gw, [inQuery, inHeader, inCookie])
})
