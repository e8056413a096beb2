/**
 * POST /publish end to end on the Redis engine: a connected SSE client gets
 * what was published, with the returned id as its `id:`; every refusal has
 * its status and stable code and writes nothing; trimming and expiry follow
 * the PUBLISH_* settings. Also: the in-memory engine serves the same API.
 */
import t from 'tap'
import { scrapeMetric, signatureOf, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { bearer, post, type Answer } from '../helpers/publish.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

async function setup (t: TestContext, env: Record<string, string | undefined> = {}): Promise<{ gw: TestGateway, prefix: string, publish: (body: unknown, headers?: Record<string, string>) => Promise<Answer> }> {
  const prefix = uniquePrefix('pub')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...env })
  t.teardown(() => gw.close())
  return { gw, prefix, publish: async (body, headers = {}) => await post(`${gw.url}/publish`, body, headers) }
}

const publisher = hsToken({ publish: ['topic:*', 'user:*'] })

/** A JSON refusal with a stable code and a message saying what to fix, that echoes no token. */
function refused (t: TestContext, res: Answer, status: number, code: string, message: RegExp, token?: string): void {
  t.equal(res.status, status, `${code}: status ${status}`)
  t.match(res.headers['content-type'], /^application\/json/, `${code}: JSON`)
  t.equal(res.body?.error, code, `${code}: stable code`)
  t.match(res.body?.message, message, `${code}: says what is wrong (${String(res.body?.message)})`)
  if (token !== undefined) t.notOk(JSON.stringify(res.body).includes(signatureOf(token)), `${code}: the token is not echoed`)
}

t.test('a published event reaches connected clients; the returned id is their SSE id', async t => {
  const { gw, prefix, publish } = await setup(t)
  const topicReader = await openStream(`${gw.url}/events?topic=news`, bearer(hsToken({ topics: ['news'] })))
  const userReader = await openStream(`${gw.url}/events`, bearer(hsToken({ sub: '42' })))
  t.teardown(() => { topicReader.close(); userReader.close() })
  t.equal(topicReader.status, 200)
  t.equal(userReader.status, 200)

  const a = await publish({ channel: 'topic:news', event: 'price', data: '{"p":1}' }, bearer(publisher))
  t.equal(a.status, 200, 'topic publish: 200')
  t.match(a.headers['content-type'], /^application\/json/)
  t.match(a.body, { id: /^\d+-\d+$/, channel: 'topic:news' }, 'answers the entry id and the channel')
  const b = await publish({ channel: 'user:42', data: 'line 1\nline 2' }, bearer(publisher))
  t.equal(b.status, 200, 'user publish: 200')
  t.same(b.body, { id: b.body.id, channel: 'user:42' })
  const c = await publish({ channel: 'topic:news', event: null, data: '' }, bearer(publisher))
  t.equal(c.status, 200, 'event: null is no event; empty data is data')

  const [e1, e3] = await topicReader.waitForEvents(2)
  t.same(e1, { event: 'price', data: '{"p":1}', id: a.body.id }, 'the topic reader gets the event, id = returned id')
  t.same(e3, { event: 'message', data: '', id: c.body.id })
  const [e2] = await userReader.waitForEvents(1)
  t.same(e2, { event: 'message', data: 'line 1\nline 2', id: b.body.id }, 'the user reader gets its event, lines intact, id = returned id')

  t.same(await redis.client.xrange(`${prefix}topic:news`, '-', '+'), [[a.body.id, ['event', 'price', 'data', '{"p":1}']], [c.body.id, ['data', '']]], 'Redis holds exactly the contract fields')
  t.equal(await redis.client.ttl(`${prefix}topic:news`), -1, 'no expiry on a topic stream')
  const ttl = await redis.client.ttl(`${prefix}user:42`)
  t.ok(ttl > 86390 && ttl <= 86400, `a user stream expires in PUBLISH_USER_TTL_SECONDS (${ttl})`)
})

t.test('a multi-channel client gets the published event too (with its own cursor id)', async t => {
  const { gw, publish } = await setup(t)
  const s = await openStream(`${gw.url}/events?topic=a&topic=b`, bearer(hsToken({ sub: 'm', topics: ['*'] })))
  t.teardown(() => { s.close() })
  const res = await publish({ channel: 'topic:b', event: 'x', data: 'to b' }, bearer(hsToken({ publish: 'topic:b' })))
  t.equal(res.status, 200, 'the publish claim may be a space/comma-separated string')
  const [e] = await s.waitForEvents(1)
  t.equal(e?.data, 'to b')
  t.not(e?.id, res.body.id, 'several channels: the SSE id is the composite cursor, not the entry id')
})

t.test('401 without a valid token in the Authorization header', async t => {
  const { gw, prefix, publish } = await setup(t)
  const body = { channel: 'topic:news', data: 'x' }
  refused(t, await publish(body), 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /Authorization: Bearer.*`publish` claim/)
  refused(t, await publish(body, { authorization: 'Basic abc' }), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /Malformed/)
  const forged = hsToken({ publish: ['*'] }, 'another-secret-0123456789-abcdefghijklmnop')
  refused(t, await publish(body, bearer(forged)), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /signature/, forged)
  const expired = hsToken({ publish: ['*'], exp: Math.floor(Date.now() / 1000) - 60 })
  refused(t, await publish(body, bearer(expired)), 401, 'SSEGW_ERR_AUTH_EXPIRED_TOKEN', /expired/, expired)
  // A write credential is taken from the header only: not from a URL, not from an ambient cookie.
  refused(t, await post(`${gw.url}/publish?token=${publisher}`, body), 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /Bearer/)
  refused(t, await publish(body, { cookie: `sse_token=${publisher}` }), 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /Bearer/)
  t.equal(await redis.client.exists(`${prefix}topic:news`), 0, 'nothing was written')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_auth_failures_total', { reason: 'missing' }), 3, 'counted as auth failures')
})

t.test('401 when the gateway has no JWT key: nobody can publish', async t => {
  const { publish } = await setup(t, { JWT_SECRET: undefined, PUBLIC_TOPICS: '*' })
  refused(t, await publish({ channel: 'topic:news', data: 'x' }, bearer(publisher)), 401, 'SSEGW_ERR_AUTH_NOT_CONFIGURED', /nobody can publish/)
})

t.test('403 without the publisher claim, or outside its patterns', async t => {
  const { gw, prefix, publish } = await setup(t)
  const reader = hsToken({ sub: '42', topics: ['*'] })
  refused(t, await publish({ channel: 'user:42', data: 'x' }, bearer(reader)), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /no `publish` claim/, reader)
  refused(t, await publish({ channel: 'topic:news', data: 'x' }, bearer(hsToken({ publish: [] }))), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /no `publish` claim/)
  refused(t, await publish({ channel: 'topic:news', data: 'x' }, bearer(hsToken({ publish: 42 }))), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /no `publish` claim/)
  const news = hsToken({ publish: ['topic:news', 'topic:orders.*'] })
  refused(t, await publish({ channel: 'topic:other', data: 'x' }, bearer(news)), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /may not publish to "topic:other"/)
  refused(t, await publish({ channel: 'user:42', data: 'x' }, bearer(news)), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /"user:42"/)
  refused(t, await publish({ channel: 'topic:orders', data: 'x' }, bearer(news)), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /"topic:orders"/)
  // Forbidden wins over a bad event or oversized data: nothing about the entry is checked for a channel it may not write.
  refused(t, await publish({ channel: 'topic:other', event: 'gateway.x', data: 1 }, bearer(news)), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /topic:other/)
  t.equal((await publish({ channel: 'topic:orders.eu', data: 'x' }, bearer(news))).status, 200, 'a pattern match is allowed')
  t.equal((await publish({ channel: 'topic:news', data: 'x' }, bearer(news))).status, 200, 'an exact match is allowed')
  t.equal((await publish({ channel: 'user:7', data: 'x' }, bearer(hsToken({ publish: ['user:*'] })))).status, 200, 'user:* allows user channels')
  t.equal((await publish({ channel: 'topic:any', data: 'x' }, bearer(hsToken({ publish: '*' })))).status, 200, '* allows every channel')
  for (const key of ['topic:other', 'user:42', 'topic:orders']) t.equal(await redis.client.exists(`${prefix}${key}`), 0, `nothing written to ${key}`)
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_requests_rejected_total', { code: 'SSEGW_ERR_PUBLISH_FORBIDDEN' }), 7, 'refusals are counted by code')
})

t.test('JWT_PUBLISH_CLAIM names the claim', async t => {
  const { publish } = await setup(t, { JWT_PUBLISH_CLAIM: 'https://example.com/publish' })
  t.equal((await publish({ channel: 'topic:a', data: 'x' }, bearer(hsToken({ 'https://example.com/publish': ['topic:*'] })))).status, 200, 'the configured claim grants')
  refused(t, await publish({ channel: 'topic:a', data: 'x' }, bearer(publisher)), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /https:\/\/example.com\/publish/)
})

t.test('400 for a bad channel, event, data or body; 415 for a body that is not JSON', async t => {
  const { prefix, publish } = await setup(t)
  const auth = bearer(publisher)
  for (const channel of ['news', 'topic:', 'topic:.x', 'topic:a b', 'user:', 'user:a\nb', 'other:x', 42]) {
    refused(t, await publish({ channel, data: 'x' }, auth), 400, 'SSEGW_ERR_PUBLISH_CHANNEL_INVALID', /"topic:<name>".*"user:<sub>"/)
  }
  refused(t, await publish({ data: 'x' }, auth), 400, 'SSEGW_ERR_PUBLISH_CHANNEL_INVALID', /`channel` must be a string/)
  for (const event of ['', 'gateway.gap', 'a\nb', 'a\rb', 'x'.repeat(129), 7, ['a']]) {
    refused(t, await publish({ channel: 'topic:a', event, data: 'x' }, auth), 400, 'SSEGW_ERR_PUBLISH_EVENT_INVALID', /1 to 128 characters/)
  }
  for (const data of [undefined, null, 42, { text: 'hi' }, ['x'], true]) {
    refused(t, await publish({ channel: 'topic:a', data }, auth), 400, 'SSEGW_ERR_PUBLISH_DATA_INVALID', /`data` is required and must be a string/)
  }
  refused(t, await publish('{"channel":"topic:a","data":"\\ud800"}', auth), 400, 'SSEGW_ERR_PUBLISH_DATA_INVALID', /surrogate/)
  refused(t, await publish({ channel: 'topic:a', data: 'x', evnt: 'typo' }, auth), 400, 'SSEGW_ERR_PUBLISH_BODY_INVALID', /Unknown field "evnt"/)
  refused(t, await publish(['topic:a', 'x'], auth), 400, 'SSEGW_ERR_PUBLISH_BODY_INVALID', /JSON object/)
  refused(t, await publish('"just a string"', auth), 400, 'SSEGW_ERR_PUBLISH_BODY_INVALID', /JSON object/)
  refused(t, await publish('{"channel": "topic:a", ', auth), 400, 'SSEGW_ERR_PUBLISH_BODY_INVALID', /not valid JSON/)
  refused(t, await publish('', auth), 400, 'SSEGW_ERR_PUBLISH_BODY_INVALID', /not valid JSON/)
  refused(t, await publish('channel=topic:a&data=x', { ...auth, 'content-type': 'application/x-www-form-urlencoded' }), 415, 'SSEGW_ERR_PUBLISH_NOT_JSON', /application\/json/)
  refused(t, await publish('{"channel":"topic:a","data":"x"}', { ...auth, 'content-type': 'text/plain' }), 415, 'SSEGW_ERR_PUBLISH_NOT_JSON', /application\/json/)
  refused(t, await publish('{"__proto__":{"x":1},"channel":"topic:a","data":"x"}', auth), 400, 'SSEGW_ERR_PUBLISH_BODY_INVALID', /not valid JSON|refused/)
  // The gateway's own keys (epoch, wake and probe streams) live under the prefix too.
  const keys = (await redis.client.keys(`${prefix}*`)).filter(k => !k.startsWith(`${prefix}__gateway:`))
  t.same(keys, [], 'nothing was written')
})

t.test('413 when data is over MAX_EVENT_BYTES or the body over its limit', async t => {
  const { gw, prefix, publish } = await setup(t, { MAX_EVENT_BYTES: '1024' })
  const auth = bearer(publisher)
  const s = await openStream(`${gw.url}/events?topic=big`, bearer(hsToken({ topics: ['big'] })))
  t.teardown(() => { s.close() })
  refused(t, await publish({ channel: 'topic:big', data: 'x'.repeat(1025) }, auth), 413, 'SSEGW_ERR_PUBLISH_TOO_LARGE', /1025 bytes.*at most 1024 \(MAX_EVENT_BYTES\)/)
  refused(t, await publish({ channel: 'topic:big', data: 'é'.repeat(513) }, auth), 413, 'SSEGW_ERR_PUBLISH_TOO_LARGE', /1026 bytes/)
  // JSON escapes (six characters for one byte) do not count against the data limit.
  const ok = await publish({ channel: 'topic:big', data: '\u0001'.repeat(1024) }, auth)
  t.equal(ok.status, 200, 'data of exactly MAX_EVENT_BYTES, however escaped, is accepted')
  const huge = JSON.stringify({ channel: 'topic:big', data: 'x'.repeat(200000) })
  refused(t, await publish(huge, auth), 413, 'SSEGW_ERR_PUBLISH_TOO_LARGE', /body is too large.*1024 bytes \(MAX_EVENT_BYTES\)/)
  const [e] = await s.waitForEvents(1)
  t.equal(e?.data, '\u0001'.repeat(1024), 'the accepted one is relayed')
  t.equal(await redis.client.xlen(`${prefix}topic:big`), 1, 'only the accepted one was written')
})

t.test('a request body too large without a token: 401 before the body is read', async t => {
  const { publish } = await setup(t, { MAX_EVENT_BYTES: '1024' })
  refused(t, await publish(JSON.stringify({ channel: 'topic:a', data: 'x'.repeat(200000) })), 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /Bearer/)
})

t.test('trimming and expiry follow PUBLISH_TOPIC_MAX_ENTRIES, PUBLISH_USER_MAX_ENTRIES and PUBLISH_USER_TTL_SECONDS', async t => {
  const { prefix, publish } = await setup(t, { PUBLISH_TOPIC_MAX_ENTRIES: '10', PUBLISH_USER_MAX_ENTRIES: '20', PUBLISH_USER_TTL_SECONDS: '120' })
  const auth = bearer(publisher)
  for (let i = 0; i < 400; i += 50) {
    await Promise.all(Array.from({ length: 50 }, async (_, j) => {
      t.equal((await publish({ channel: 'topic:t', data: String(i + j) }, auth)).status, 200)
      t.equal((await publish({ channel: 'user:u', data: String(i + j) }, auth)).status, 200)
    }))
  }
  const tl = await redis.client.xlen(`${prefix}topic:t`)
  const ul = await redis.client.xlen(`${prefix}user:u`)
  // `~` trims whole stream nodes (100 entries by default): near, not exactly at, the limit.
  t.ok(tl >= 10 && tl < 200, `topic trimmed near 10 (${tl} of 400)`)
  t.ok(ul >= 20 && ul < 200, `user stream trimmed near 20 (${ul} of 400)`)
  const ttl = await redis.client.ttl(`${prefix}user:u`)
  t.ok(ttl > 110 && ttl <= 120, `user stream TTL from PUBLISH_USER_TTL_SECONDS (${ttl})`)
  t.equal(await redis.client.ttl(`${prefix}topic:t`), -1, 'topic: none')
})

t.test('PUBLISH_USER_TTL_SECONDS=0: no expiry', async t => {
  const { prefix, publish } = await setup(t, { PUBLISH_USER_TTL_SECONDS: '0' })
  t.equal((await publish({ channel: 'user:u', data: 'x' }, bearer(publisher))).status, 200)
  t.equal(await redis.client.ttl(`${prefix}user:u`), -1)
})

t.test('PUBLISH_ENABLED=false: no route', async t => {
  const { publish } = await setup(t, { PUBLISH_ENABLED: 'false' })
  refused(t, await publish({ channel: 'topic:a', data: 'x' }, bearer(publisher)), 404, 'SSEGW_ERR_NOT_FOUND', /POST \/publish/)
})

t.test('503 with Retry-After when Redis cannot be reached; nothing is claimed written', async t => {
  t.setTimeout(60000)
  const dead = await startRedis()
  const gw = await startGateway({ REDIS_URL: dead.url, KEY_PREFIX: uniquePrefix('pub'), READER_MODE: 'block' })
  t.teardown(() => gw.close())
  await dead.kill()
  t.teardown(() => dead.stop())
  const started = Date.now()
  const res = await post(`${gw.url}/publish`, { channel: 'topic:a', data: 'x' }, bearer(publisher))
  refused(t, res, 503, 'SSEGW_ERR_UNAVAILABLE', /unreachable: nothing was published/)
  t.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After is set')
  t.ok(Date.now() - started < 15000, `fails fast (${Date.now() - started} ms)`)
})

t.test('the in-memory engine (no REDIS_URL) serves the same API', async t => {
  const gw = await startGateway({ REDIS_URL: undefined, KEY_PREFIX: 'sse:', PUBLISH_USER_TTL_SECONDS: '60' })
  t.teardown(() => gw.close())
  const s = await openStream(`${gw.url}/events`, bearer(hsToken({ sub: '42' })))
  t.teardown(() => { s.close() })
  const res = await post(`${gw.url}/publish`, { channel: 'user:42', event: 'notice', data: 'hello' }, bearer(publisher))
  t.equal(res.status, 200)
  t.match(res.body, { id: /^\d+-\d+$/, channel: 'user:42' })
  const [e] = await s.waitForEvents(1)
  t.same(e, { event: 'notice', data: 'hello', id: res.body.id }, 'delivered with the returned id')
  refused(t, await post(`${gw.url}/publish`, { channel: 'user:42', data: 'x' }, bearer(hsToken({ topics: ['*'] }))), 403, 'SSEGW_ERR_PUBLISH_FORBIDDEN', /publish/)
})
