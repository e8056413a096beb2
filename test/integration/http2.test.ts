/**
 * HTTP/2 on the public listener (issue 15): over TLS (ALPN picks h2 or
 * http/1.1) and as cleartext prior knowledge (h2c), node:http2 and curl
 * clients get the same events, the same resume from Last-Event-ID and the
 * same gap as HTTP/1.1 ones; a stream whose client stops reading does not
 * slow the other streams of its connection and catches up when it reads
 * again; heartbeats keep an idle stream alive; the drain ends every stream
 * with a `retry:` and then sends GOAWAY; a renewed certificate is served
 * without a restart, and a half-written pair is refused.
 */
import { X509Certificate } from 'node:crypto'
import { copyFileSync, readFileSync } from 'node:fs'
import { connect as tlsConnect } from 'node:tls'
import t, { type Test } from 'tap'
import { CurlStream } from '../helpers/curl.js'
import { eventually, scrapeMetric } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { H2Stream, h2Connect, openH2Stream } from '../helpers/h2.js'
import { GAP_EVENT } from '../helpers/ledger.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { sleep, type ReceivedEvent } from '../helpers/sse.js'
import { makeTestCa, signServerCert } from '../helpers/tls.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(180000)

const redis = await startRedis()
t.teardown(() => redis.stop())
const ca = makeTestCa()
t.teardown(() => { ca.remove() })

const token = hsToken({ sub: 'h2user', topics: ['t'] })
const auth = { authorization: `Bearer ${token}` }
const PATH = '/events?topic=t'

type Mode = 'tls' | 'h2c'

async function gateway (t: Test, mode: Mode, env: Record<string, string> = {}): Promise<{ gw: TestGateway, prefix: string }> {
  const prefix = uniquePrefix('h2')
  const gw = await startGateway({
    REDIS_URL: redis.url,
    KEY_PREFIX: prefix,
    ...(mode === 'tls' ? { TLS_CERT_FILE: ca.serverCert, TLS_KEY_FILE: ca.serverKey } : { HTTP2_CLEARTEXT: 'true' }),
    ...env,
  })
  t.teardown(() => gw.close())
  return { gw, prefix }
}

/** What a test compares across clients: event name, data and id. */
const seen = (events: readonly ReceivedEvent[]): string[] => events.map(e => `${e.event}|${e.data}|${e.id ?? ''}`)

/** One client: its name, and what it has received. */
interface Client {
  readonly name: string
  readonly s: H2Stream | CurlStream
}

/** Every kind of client the mode allows, each on its own connection, all opened (headers seen, retry: read). */
async function openAll (t: Test, gw: TestGateway, mode: Mode, headers: Record<string, string> = {}): Promise<Client[]> {
  const session = await h2Connect(gw.url, mode === 'tls' ? { caFile: ca.caCert } : {})
  t.teardown(() => { session.destroy() })
  const node = await openH2Stream(session, PATH, { ...auth, ...headers })
  t.equal(node.status, 200, 'node:http2: 200')
  const curls: Array<[string, CurlStream]> = mode === 'tls'
    ? [['curl --http2', new CurlStream(`${gw.url}${PATH}`, ['--http2', '--cacert', ca.caCert], { ...auth, ...headers })],
        ['curl --http1.1 (TLS)', new CurlStream(`${gw.url}${PATH}`, ['--http1.1', '--cacert', ca.caCert], { ...auth, ...headers })]]
    : [['curl --http2-prior-knowledge', new CurlStream(`${gw.url}${PATH}`, ['--http2-prior-knowledge'], { ...auth, ...headers })]]
  for (const [name, c] of curls) {
    t.teardown(() => { c.close() })
    await c.opened()
    await c.until(s => s.retry !== undefined, 10000, `${name}: retry:`)
  }
  await node.until(s => s.retry !== undefined, 10000, 'node:http2: retry:')
  return [{ name: 'node:http2', s: node }, ...curls.map(([name, s]) => ({ name, s }))]
}

async function until (c: Client, enough: (events: number) => boolean, what: string): Promise<void> {
  const s = c.s
  await (s instanceof H2Stream
    ? s.until(x => enough(x.events.length), 10000, what)
    : s.until(x => enough(x.events.length), 10000, what))
}

for (const mode of ['tls', 'h2c'] as const) {
  t.test(`${mode}: node:http2 and curl get the same events, the same resume and the same gap`, async t => {
    const { gw, prefix } = await gateway(t, mode)
    const key = `${prefix}topic:t`

    // Live.
    const live = await openAll(t, gw, mode)
    if (mode === 'tls') {
      const c = await new CurlStream(`${gw.url}${PATH}`, ['--http2', '--cacert', ca.caCert], auth).opened()
      t.teardown(() => { c.close() })
      t.match(c.verbose, /ALPN: server accepted h2/, 'ALPN picks h2 for a client that offers it')
      t.equal(c.statusLine, 'HTTP/2 200')
      const c1 = await new CurlStream(`${gw.url}${PATH}`, ['--http1.1', '--cacert', ca.caCert], auth).opened()
      t.teardown(() => { c1.close() })
      t.match(c1.verbose, /ALPN: server accepted http\/1\.1/, 'and http/1.1 for one that offers only that')
      t.equal(c1.statusLine, 'HTTP/1.1 200')
    } else {
      const c = await new CurlStream(`${gw.url}${PATH}`, ['--http2-prior-knowledge'], auth).opened()
      t.teardown(() => { c.close() })
      t.equal(c.statusLine, 'HTTP/2 200', 'h2c: HTTP/2 with prior knowledge')
    }
    for (let i = 1; i <= 5; i++) await redis.client.xadd(key, '*', 'data', `e${i}`)
    for (const c of live) await until(c, n => n >= 5, `${c.name}: 5 events`)
    const reference = seen(live[0]?.s.events ?? [])
    t.same(reference.map(e => e.split('|')[1]), ['e1', 'e2', 'e3', 'e4', 'e5'], 'every entry, in order')
    for (const c of live) t.same(seen(c.s.events), reference, `${c.name}: the same events and ids`)
    const second = live[0]?.s.events[1]?.id as string
    const fifth = live[0]?.s.events[4]?.id as string
    for (const c of live) c.s.close()

    // Resume from the second event.
    const resumed = await openAll(t, gw, mode, { 'last-event-id': second })
    for (const c of resumed) await until(c, n => n >= 3, `${c.name}: 3 events`)
    for (const c of resumed) t.same(seen(c.s.events), reference.slice(2), `${c.name}: resumes after e2, e3 to e5 exactly`)
    for (const c of resumed) c.s.close()

    // History trimmed past the cursor: the gap is told, then the retained entries.
    await redis.client.xtrim(key, 'MAXLEN', 0)
    await redis.client.xadd(key, '*', 'data', 'e6')
    await redis.client.xadd(key, '*', 'data', 'e7')
    const gapped = await openAll(t, gw, mode, { 'last-event-id': fifth })
    for (const c of gapped) await until(c, () => c.s.events.filter(e => e.event === 'message').length >= 2, `${c.name}: e6, e7`)
    const gapRef = seen(gapped[0]?.s.events ?? [])
    t.equal(gapped[0]?.s.events[0]?.event, GAP_EVENT, 'a gateway.gap first')
    t.match(JSON.parse(gapped[0]?.s.events[0]?.data ?? '{}'), { channels: [{ channel: 'topic:t' }] }, 'naming the trimmed channel')
    t.same(gapRef.slice(1).map(e => e.split('|')[1]), ['e6', 'e7'], 'then the oldest retained entries')
    for (const c of gapped) t.same(seen(c.s.events), gapRef, `${c.name}: the same gap and events`)
    for (const c of gapped) c.s.close()

    t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_opened_total', { protocol: 'h2' }) >= 6, 'streams counted with protocol="h2"')
    if (mode === 'tls') t.ok(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_opened_total', { protocol: 'h1' }) >= 3, 'and HTTP/1.1 ones over TLS with protocol="h1"')
    await eventually(async () => await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_closed_total', { reason: 'client-closed', protocol: 'h2' }) >= 6, 10000, 'closed h2 streams counted')
  })
}

t.test('h2: errors before the stream are the same JSON answers (401 no token, 400 bad topic, 404)', async t => {
  const { gw } = await gateway(t, 'tls')
  const session = await h2Connect(gw.url, { caFile: ca.caCert })
  t.teardown(() => { session.destroy() })
  const answer = async (path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: any }> => {
    const s = await openH2Stream(session, path, headers)
    await s.waitForEnd(5000)
    return { status: s.status, body: JSON.parse(s.body) }
  }
  t.match(await answer(PATH), { status: 401, body: { error: 'SSEGW_ERR_AUTH_MISSING_TOKEN' } })
  t.match(await answer('/events?topic=%20bad', auth), { status: 400, body: { error: 'SSEGW_ERR_TOPIC_INVALID' } })
  t.match(await answer('/nowhere', auth), { status: 404, body: { error: 'SSEGW_ERR_NOT_FOUND' } })
  t.match(await answer('/events?topic=other', auth), { status: 403, body: { error: 'SSEGW_ERR_TOPIC_FORBIDDEN' } })
})

t.test('h2: no connection-specific header in the answer; CORS and the SSE headers are there', async t => {
  const { gw } = await gateway(t, 'h2c', { CORS_ORIGINS: 'https://app.example' })
  const session = await h2Connect(gw.url)
  t.teardown(() => { session.destroy() })
  const s = await openH2Stream(session, PATH, { ...auth, origin: 'https://app.example' })
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  for (const h of ['connection', 'keep-alive', 'transfer-encoding']) t.notOk(h in s.headers, `no ${h}`)
  t.equal(s.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(s.headers['x-accel-buffering'], 'no')
  t.equal(s.headers['access-control-allow-origin'], 'https://app.example')
})

t.test('h2: a stream whose client stops reading does not slow the others on its connection, and catches up when it reads again', async t => {
  const { gw, prefix } = await gateway(t, 'h2c', { SLOW_CLIENT_BUFFER_BYTES: '65536', SLOW_CLIENT_TIMEOUT_MS: '60000' })
  const key = `${prefix}topic:t`
  // A small per-stream window: the stalled stream holds at most 16 KiB of the connection's.
  const session = await h2Connect(gw.url, { settings: { initialWindowSize: 16384 } })
  t.teardown(() => { session.destroy() })
  const stalled = await openH2Stream(session, PATH, auth)
  const others = await Promise.all([1, 2, 3].map(async () => await openH2Stream(session, PATH, auth)))
  t.teardown(() => { for (const s of [stalled, ...others]) s.close() })
  for (const s of [stalled, ...others]) await s.until(x => x.retry !== undefined, 10000, 'retry:')
  stalled.pause()

  const N = 300
  const payload = 'x'.repeat(2000)
  for (let i = 0; i < N; i += 50) {
    const p = redis.client.pipeline()
    for (let k = i; k < i + 50; k++) p.xadd(key, '*', 'data', `${k}:${payload}`)
    await p.exec()
  }
  // About 600 KB: far past the stalled stream's window and the slow-client limit.
  for (const s of others) await s.until(x => x.events.length >= N, 20000, `a reading stream: ${N} events`)
  t.ok(stalled.events.length < N / 4, `the stalled stream got only what its window let through (${stalled.events.length} of ${N}) while the others got all ${N}`)
  for (const s of others) t.same(s.events.map(e => Number(e.data.split(':')[0])), Array.from({ length: N }, (_, i) => i), 'each reading stream: every event, in order')
  await eventually(async () => await scrapeMetric(gw.internalUrl, 'sse_gateway_slow_client_pauses_total') >= 1, 10000, 'the stalled stream paused (slow client)')

  stalled.resume()
  await stalled.until(x => x.events.length >= N, 20000, `the stalled stream, reading again: ${N} events`)
  t.same(stalled.events.map(e => Number(e.data.split(':')[0])), Array.from({ length: N }, (_, i) => i), 'it catches up from Redis: every event once, in order')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_slow_client_closes_total'), 0, 'and nobody was disconnected')
})

t.test('h2: heartbeats keep an idle stream alive', async t => {
  const { gw } = await gateway(t, 'tls', { HEARTBEAT_INTERVAL_MS: '1000' })
  const session = await h2Connect(gw.url, { caFile: ca.caCert })
  t.teardown(() => { session.destroy() })
  const s = await openH2Stream(session, PATH, auth)
  t.teardown(() => { s.close() })
  await s.until(x => x.comments >= 2, 10000, 'two heartbeat comments')
  t.notOk(s.ended, 'the stream is still open')
})

t.test('h2 drain: every stream ends with a retry:, a new one is told to come back, then GOAWAY closes the connection', async t => {
  const { gw } = await gateway(t, 'tls', { RETRY_MS: '700', RETRY_JITTER_MS: '100' })
  const session = await h2Connect(gw.url, { caFile: ca.caCert })
  t.teardown(() => { session.destroy() })
  let goawayAt = 0
  let closedAt = 0
  let finalRetriesAtGoaway: number[] = []
  session.on('close', () => { closedAt = Date.now() })
  const streams = await Promise.all([1, 2, 3, 4].map(async () => await openH2Stream(session, PATH, auth)))
  for (const s of streams) await s.until(x => x.retry !== undefined, 10000, 'retry:')
  // Frames are handled in the order they came: what each stream had read
  // when the GOAWAY arrived (its 'end' event may come a tick later).
  session.on('goaway', () => { goawayAt = Date.now(); finalRetriesAtGoaway = streams.map(s => s.retries.length) })
  // An HTTP/1.1 client on the same TLS listener drains as before.
  const h1 = await new CurlStream(`${gw.url}${PATH}`, ['--http1.1', '--cacert', ca.caCert], auth).opened()
  t.teardown(() => { h1.close() })
  await h1.until(x => x.retry !== undefined, 10000, 'h1: retry:')
  const endedAt: number[] = []
  for (const s of streams) void s.waitForEnd(20000).then(() => { endedAt.push(Date.now()) }, () => {})

  const shutdown = gw.gateway.shutdown(1500)
  await sleep(100)
  // Opened while draining, on the same connection: a 200 that tells it to retry.
  const late = await openH2Stream(session, PATH, auth)
  await late.waitForEnd(10000)
  t.equal(late.status, 200, 'a stream opened during the drain gets a 200')
  t.equal(late.events[0]?.event, 'gateway.unavailable', 'and gateway.unavailable')
  t.ok(late.retry !== undefined, 'with a retry:')

  await shutdown
  await eventually(() => closedAt > 0, 10000, 'the client connection closed')
  t.equal(endedAt.length, 4, 'every stream ended')
  for (const s of streams) {
    t.equal(s.retries.length, 2, 'each got the opening retry: and a final one')
    t.ok((s.retries[1] ?? 0) >= 700 && (s.retries[1] ?? 0) <= 800, 'the final retry: is the jittered RETRY_MS')
  }
  await h1.until(x => x.ended, 10000, 'h1 over TLS: end of stream')
  t.equal(h1.retries.length, 2, 'the HTTP/1.1 stream over TLS got its final retry: and ended')
  t.ok(goawayAt > 0, 'the server sent GOAWAY')
  t.same(finalRetriesAtGoaway, [2, 2, 2, 2], 'after every stream had its final retry:')
})

/** The serial number of the certificate a fresh TLS connection to `url` is served. */
async function servedSerial (url: string): Promise<string> {
  const { port } = new URL(url)
  return await new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(ca.caCert), ALPNProtocols: ['h2'] }, () => {
      const serial = socket.getPeerCertificate().serialNumber
      socket.end()
      resolve(serial)
    })
    socket.on('error', reject)
  })
}

function serialOf (certFile: string): string {
  return new X509Certificate(readFileSync(certFile)).serialNumber
}

t.test('TLS certificate reload: a renewed pair is served without a restart, open streams go on, a mismatched pair is refused', async t => {
  // The gateway's files, as a Secret volume holds them.
  const cert = `${ca.dir}/live.crt`
  const key = `${ca.dir}/live.key`
  copyFileSync(ca.serverCert, cert)
  copyFileSync(ca.serverKey, key)
  const { gw, prefix } = await gateway(t, 'tls', { TLS_CERT_FILE: cert, TLS_KEY_FILE: key })
  t.equal(await servedSerial(gw.url), serialOf(ca.serverCert), 'the first certificate is served')
  const session = await h2Connect(gw.url, { caFile: ca.caCert })
  t.teardown(() => { session.destroy() })
  const open = await openH2Stream(session, PATH, auth)
  t.teardown(() => { open.close() })
  await open.until(x => x.retry !== undefined, 10000, 'retry:')

  const renewed = signServerCert(ca, 'renewed')
  copyFileSync(renewed.key, key)
  copyFileSync(renewed.cert, cert)
  await eventually(async () => await servedSerial(gw.url) === serialOf(renewed.cert), 10000, 'the renewed certificate served')
  t.pass('the renewed certificate is served to new connections')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_tls_reloads_total', { result: 'ok' }), 1, 'one reload counted')
  const fresh = await h2Connect(gw.url, { caFile: ca.caCert })
  t.teardown(() => { fresh.destroy() })
  const again = await openH2Stream(fresh, PATH, auth)
  t.teardown(() => { again.close() })
  t.equal(again.status, 200, 'and HTTP/2 (ALPN) still works with it')

  await redis.client.xadd(`${prefix}topic:t`, '*', 'data', 'after-reload')
  await open.until(x => x.events.some(e => e.data === 'after-reload'), 10000, 'event on the stream opened before the reload')
  t.pass('a stream opened before the reload goes on')

  // Half a rotation: a new certificate beside the old key.
  const third = signServerCert(ca, 'third')
  copyFileSync(third.cert, cert)
  await eventually(async () => await scrapeMetric(gw.internalUrl, 'sse_gateway_tls_reloads_total', { result: 'refused' }) >= 1, 10000, 'the mismatched pair refused')
  t.equal(await servedSerial(gw.url), serialOf(renewed.cert), 'the previous pair keeps serving')
  t.ok(gw.logs.some(l => l.includes('new TLS certificate refused') && l.includes('TLS_KEY_FILE')), 'logged, naming the setting')
  t.notOk(gw.logs.some(l => l.includes('PRIVATE KEY')), 'no key in the logs')
  copyFileSync(third.key, key)
  await eventually(async () => await servedSerial(gw.url) === serialOf(third.cert), 10000, 'the completed pair served')
  t.pass('once the key follows, the new pair serves')
})

t.test('h2c refuses TLS settings beside it, and each TLS file needs the other (start-up errors)', async t => {
  await t.rejects(startGateway({ HTTP2_CLEARTEXT: 'true', TLS_CERT_FILE: ca.serverCert, TLS_KEY_FILE: ca.serverKey }), /HTTP2_CLEARTEXT=true is set with TLS_CERT_FILE/)
  await t.rejects(startGateway({ TLS_CERT_FILE: ca.serverCert }), /TLS_CERT_FILE is set without TLS_KEY_FILE/)
  await t.rejects(startGateway({ TLS_CERT_FILE: ca.serverCert, TLS_KEY_FILE: ca.clientKey }), /TLS_KEY_FILE names .* not the key of the certificate/)
})

t.test('HTTP/1.1 over TLS keeps HEADERS_TIMEOUT_MS: a client that drips its headers is cut off (regression: the HTTP/2 server\'s own 60 s applied)', async t => {
  const { gw } = await gateway(t, 'tls', { HEADERS_TIMEOUT_MS: '1000', PUBLIC_TOPICS: 't' })
  const { port } = new URL(gw.url)
  let text = ''
  let ended = false
  const started = Date.now()
  const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(ca.caCert), ALPNProtocols: ['http/1.1'] }, () => {
    socket.write('GET /events?topic=t HTTP/1.1\r\nHost: gw\r\n')
  })
  socket.setEncoding('utf8')
  socket.on('data', (c: string) => { text += c })
  socket.on('close', () => { ended = true })
  socket.on('error', () => {})
  const drip = setInterval(() => { if (!ended) socket.write('X-A: b\r\n') }, 200)
  t.teardown(() => { clearInterval(drip); socket.destroy() })
  await eventually(() => ended, 8000, 'the slow TLS client cut off')
  t.ok(Date.now() - started < 8000, `cut off after ${Date.now() - started} ms, not the HTTP/2 server's 60 s`)
  t.equal(socket.alpnProtocol, 'http/1.1', 'it spoke HTTP/1.1 (ALPN)')
  t.match(text, /^HTTP\/1\.1 408/, '408 in the catalogue shape')
  t.match(text, /SSEGW_ERR_REQUEST_TIMEOUT/)
})
