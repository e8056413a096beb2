/**
 * Who may open a stream: every refusal with its stable code and a message that
 * says what to fix, every way a token may come in, every key type.
 */
import t from 'tap'
import { getAnswer, rawToken, signatureOf, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream } from '../helpers/sse.js'
import { SECRET, asymmetricToken, hsToken, keyPair } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

type Test = TestContext

async function gateway (t: Test, env: Record<string, string | undefined> = {}): Promise<{ gw: TestGateway, prefix: string }> {
  const prefix = uniquePrefix('auth')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix, ...env })
  t.teardown(() => gw.close())
  return { gw, prefix }
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })
const nowS = (): number => Math.floor(Date.now() / 1000)

/** A JSON refusal: status, stable code, a message matching `message`, and no trace of `token`. */
async function refused (t: Test, url: string, headers: Record<string, string>, status: number, code: string, message: RegExp, token?: string): Promise<void> {
  const res = await getAnswer(url, headers)
  t.equal(res.status, status, `${code}: status ${status}`)
  t.match(res.headers['content-type'], /^application\/json/, `${code}: JSON body`)
  t.equal(res.body?.error, code, `${code}: stable error code`)
  t.type(res.body?.message, 'string', `${code}: has a message`)
  t.match(res.body?.message, message, `${code}: message says what is wrong (${String(res.body?.message)})`)
  if (token !== undefined && token.length > 0) {
    const text = JSON.stringify(res.body) + JSON.stringify(res.headers)
    t.notOk(text.includes(token), `${code}: the token is not echoed`)
    const sig = signatureOf(token)
    if (sig.length >= 16) t.notOk(text.includes(sig), `${code}: its signature is not echoed`)
  }
}

/** Opens a stream, checks it is a 200 SSE stream, and that an entry XADDed to `key` arrives. */
async function streams (t: Test, url: string, headers: Record<string, string>, key: string, what: string): Promise<void> {
  const s = await openStream(url, headers)
  t.teardown(() => { s.close() })
  t.equal(s.status, 200, `${what}: 200`)
  if (s.status !== 200) {
    t.comment(s.body)
    return
  }
  t.match(s.headers['content-type'], /^text\/event-stream/, `${what}: text/event-stream`)
  const data = `hello via ${what}`
  await redis.client.xadd(key, '*', 'data', data)
  const events = await s.waitForEvents(1)
  t.equal(events[0]?.data, data, `${what}: the event arrives`)
  s.close()
}

t.test('401 for every bad token, each with its stable code and a helpful message', async t => {
  const { gw } = await gateway(t, { JWT_ALGORITHMS: 'HS256' })
  const url = `${gw.url}/events`

  await refused(t, url, {}, 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /Authorization: Bearer.*token.*sse_token/s)

  for (const bad of ['not-a-jwt', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9.!!!.x']) {
    await refused(t, url, bearer(bad), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /not a well-formed JWT/, bad)
  }
  await refused(t, url, { authorization: 'Basic dXNlcjpwYXNz' }, 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /Malformed credentials.*Bearer/)
  const twice = hsToken({ sub: 'u1' })
  await refused(t, `${url}?token=${twice}&token=${twice}`, {}, 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /one `token` query parameter/, twice)

  const otherSecret = hsToken({ sub: 'u1' }, 'another-secret-0123456789-abcdefghijklmnop')
  await refused(t, url, bearer(otherSecret), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /signature does not match/, otherSecret)

  const hs512 = hsToken({ sub: 'u1' }, SECRET, 'HS512')
  await refused(t, url, bearer(hs512), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`alg`.*JWT_ALGORITHMS/, hs512)

  const none = rawToken({ alg: 'none', typ: 'JWT' }, { sub: 'u1', exp: nowS() + 3600 })
  await refused(t, url, bearer(none), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /unsigned/, none)
  // The same with a signature attached: the alg still decides, and `none` is never allowed.
  const noneSigned = none + 'c2lnbmF0dXJl'
  await refused(t, url, bearer(noneSigned), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`alg`/, noneSigned)

  const expired = hsToken({ sub: 'u1', exp: nowS() - 60 })
  await refused(t, url, bearer(expired), 401, 'SSEGW_ERR_AUTH_EXPIRED_TOKEN', /expired.*fresh/, expired)
  await refused(t, `${url}?token=${expired}`, {}, 401, 'SSEGW_ERR_AUTH_EXPIRED_TOKEN', /expired/, expired)

  const noExp = hsToken({ sub: 'u1', exp: undefined })
  await refused(t, url, bearer(noExp), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`exp`/, noExp)
  const textExp = hsToken({ sub: 'u1', exp: String(nowS() + 3600) })
  await refused(t, url, bearer(textExp), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /claim|exp/, textExp)

  const array = rawToken({ alg: 'HS256', typ: 'JWT' }, [{ sub: 'u1', exp: nowS() + 3600 }])
  await refused(t, url, bearer(array), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /payload is not a JSON object/, array)
  const scalar = rawToken({ alg: 'HS256', typ: 'JWT' }, 42)
  await refused(t, url, bearer(scalar), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /payload is not a JSON object/, scalar)

  const numericSub = hsToken({ sub: 42 })
  await refused(t, url, bearer(numericSub), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`sub`/, numericSub)
  const controlSub = hsToken({ sub: 'a\nb' })
  await refused(t, url, bearer(controlSub), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`sub`/, controlSub)

  const notYet = hsToken({ sub: 'u1', nbf: nowS() + 600 })
  await refused(t, url, bearer(notYet), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /not valid yet/, notYet)
})

t.test('aud and iss are enforced when JWT_AUDIENCE and JWT_ISSUER are set', async t => {
  const { gw, prefix } = await gateway(t, { JWT_AUDIENCE: 'sse-gateway,other-gw', JWT_ISSUER: 'https://auth.example' })
  const url = `${gw.url}/events`
  const good = { sub: 'ann', aud: 'sse-gateway', iss: 'https://auth.example' }
  await streams(t, url, bearer(hsToken(good)), `${prefix}user:ann`, 'right aud and iss')
  await streams(t, url, bearer(hsToken({ ...good, aud: ['x', 'other-gw'] })), `${prefix}user:ann`, 'aud array holding an allowed value')

  const wrongAud = hsToken({ ...good, aud: 'someone-else' })
  await refused(t, url, bearer(wrongAud), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`aud`/, wrongAud)
  const wrongIss = hsToken({ ...good, iss: 'https://evil.example' })
  await refused(t, url, bearer(wrongIss), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`iss`/, wrongIss)
})

t.test('regression: a token without aud or iss is refused when JWT_AUDIENCE and JWT_ISSUER are set', async t => {
  const { gw } = await gateway(t, { JWT_AUDIENCE: 'sse-gateway', JWT_ISSUER: 'https://auth.example' })
  const url = `${gw.url}/events`
  const noAud = hsToken({ sub: 'ann', iss: 'https://auth.example' })
  await refused(t, url, bearer(noAud), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`aud`/, noAud)
  const noIss = hsToken({ sub: 'ann', aud: 'sse-gateway' })
  await refused(t, url, bearer(noIss), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`iss`/, noIss)
})

t.test('a token while no key is configured is refused as not configured; public topics still work', async t => {
  const { gw, prefix } = await gateway(t, { JWT_SECRET: undefined, PUBLIC_TOPICS: 'status' })
  const url = `${gw.url}/events`
  const token = hsToken({ sub: 'u1' })
  await refused(t, url, bearer(token), 401, 'SSEGW_ERR_AUTH_NOT_CONFIGURED', /JWT_SECRET or JWT_PUBLIC_KEY/, token)
  await refused(t, `${url}?token=${token}`, {}, 401, 'SSEGW_ERR_AUTH_NOT_CONFIGURED', /no JWT key configured/, token)
  await refused(t, `${url}?topic=private`, {}, 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /No token/)
  await streams(t, `${url}?topic=status`, {}, `${prefix}topic:status`, 'public topic, no key configured')
})

t.test('403 for a topic outside the claim; patterns and string claims allow', async t => {
  const { gw, prefix } = await gateway(t)
  const url = `${gw.url}/events`
  const token = hsToken({ sub: 'bo', topics: ['news', 'orders.*'] })
  await refused(t, `${url}?topic=news&topic=billing`, bearer(token), 403, 'SSEGW_ERR_TOPIC_FORBIDDEN', /may not read "billing".*`topics`/, token)
  // `orders.*` covers orders.<anything>, not `orders` itself.
  await refused(t, `${url}?topic=orders`, bearer(token), 403, 'SSEGW_ERR_TOPIC_FORBIDDEN', /"orders"/, token)
  await streams(t, `${url}?topic=orders.eu`, bearer(token), `${prefix}topic:orders.eu`, 'pattern claim orders.*')
  await streams(t, `${url}?topic=orders.eu.north`, bearer(token), `${prefix}topic:orders.eu.north`, 'pattern over dots')
  const scope = hsToken({ topics: 'news orders.*,prices' })
  await streams(t, `${url}?topic=prices`, bearer(scope), `${prefix}topic:prices`, 'space/comma separated claim')
  const noClaim = hsToken({ sub: 'bo' })
  await refused(t, `${url}?topic=news`, bearer(noClaim), 403, 'SSEGW_ERR_TOPIC_FORBIDDEN', /"news"/, noClaim)
})

t.test('a custom JWT_TOPICS_CLAIM name is the one that counts', async t => {
  const { gw, prefix } = await gateway(t, { JWT_TOPICS_CLAIM: 'sse_topics' })
  const url = `${gw.url}/events?topic=news`
  await streams(t, url, bearer(hsToken({ sse_topics: ['news'] })), `${prefix}topic:news`, 'custom claim')
  const oldName = hsToken({ topics: ['news'] })
  await refused(t, url, bearer(oldName), 403, 'SSEGW_ERR_TOPIC_FORBIDDEN', /`sse_topics`/, oldName)
})

t.test('PUBLIC_TOPICS are readable with no token, and only those', async t => {
  const { gw, prefix } = await gateway(t, { PUBLIC_TOPICS: 'status,public.*' })
  const url = `${gw.url}/events`
  await streams(t, `${url}?topic=status`, {}, `${prefix}topic:status`, 'public topic, no token')
  await streams(t, `${url}?topic=public.news&topic=status`, {}, `${prefix}topic:public.news`, 'public pattern, no token')
  await refused(t, `${url}?topic=status&topic=private`, {}, 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /No token/)
  await refused(t, url, {}, 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /No token/)
  // A token with no topics claim may still read public topics.
  await streams(t, `${url}?topic=status`, bearer(hsToken({ sub: 'cy' })), `${prefix}topic:status`, 'public topic with a token')
})

t.test('400 for a bad topic name, too many topics, and nothing to stream', async t => {
  const { gw } = await gateway(t, { MAX_TOPICS_PER_CONNECTION: '3' })
  const url = `${gw.url}/events`
  const token = hsToken({ sub: 'di', topics: ['*'] })
  for (const bad of ['-leading-dash', 'has%20space', 'new%0Aline', 'x'.repeat(129), '', '%C3%A9t%C3%A9']) {
    await refused(t, `${url}?topic=${bad}`, bearer(token), 400, 'SSEGW_ERR_TOPIC_INVALID', /not a valid name: use 1 to 128/, token)
  }
  await refused(t, `${url}?topic=a&topic=b&topic=c&topic=d`, bearer(token), 400, 'SSEGW_ERR_TOPIC_TOO_MANY', /asks for 4 topics; at most 3.*MAX_TOPICS_PER_CONNECTION/, token)
  const noSub = hsToken({ topics: ['*'] })
  await refused(t, url, bearer(noSub), 400, 'SSEGW_ERR_NO_CHANNELS', /no `sub` and no `topic`/, noSub)
  // Three topics is the limit, not over it.
  const s = await openStream(`${url}?topic=a&topic=b&topic=c`, bearer(token))
  t.equal(s.status, 200, 'exactly MAX_TOPICS_PER_CONNECTION topics is fine')
  s.close()
})

t.test('a token from the Authorization header, the token query parameter or the cookie works', async t => {
  const { gw, prefix } = await gateway(t, { TOKEN_COOKIE: 'gw_auth' })
  const url = `${gw.url}/events`
  const key = `${prefix}user:eve`
  const token = hsToken({ sub: 'eve' })
  await streams(t, url, bearer(token), key, 'Authorization header')
  await streams(t, url, { authorization: `bearer   ${token}` }, key, 'Authorization header, any case and spacing')
  await streams(t, `${url}?token=${encodeURIComponent(token)}`, {}, key, 'token query parameter')
  await streams(t, url, { cookie: `theme=dark; gw_auth=${token}; other=1` }, key, 'TOKEN_COOKIE cookie')
  // Only the configured cookie name counts.
  await refused(t, url, { cookie: `sse_token=${token}` }, 401, 'SSEGW_ERR_AUTH_MISSING_TOKEN', /`gw_auth` cookie/, token)
  // A bad header token is not rescued by a good cookie: the header is what the client meant.
  await refused(t, url, { authorization: 'Bearer nope', cookie: `gw_auth=${token}` }, 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /not a well-formed JWT/, token)
})

for (const [type, alg] of [['rsa', 'RS256'], ['ec', 'ES256'], ['ed25519', 'EdDSA']] as const) {
  t.test(`${alg} tokens verify with JWT_PUBLIC_KEY; another key's are refused`, async t => {
    const mine = keyPair(type)
    const theirs = keyPair(type)
    const { gw, prefix } = await gateway(t, { JWT_SECRET: undefined, JWT_PUBLIC_KEY: mine.publicPem })
    const url = `${gw.url}/events`
    await streams(t, url, bearer(asymmetricToken({ sub: 'fay' }, mine.privateKey, alg)), `${prefix}user:fay`, alg)
    const forged = asymmetricToken({ sub: 'fay' }, theirs.privateKey, alg)
    await refused(t, url, bearer(forged), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /signature does not match/, forged)
    const expired = asymmetricToken({ sub: 'fay', exp: nowS() - 10 }, mine.privateKey, alg)
    await refused(t, url, bearer(expired), 401, 'SSEGW_ERR_AUTH_EXPIRED_TOKEN', /expired/, expired)
    // Algorithm confusion: an HMAC token keyed with the public key text.
    const confused = rawToken({ alg: 'HS256', typ: 'JWT' }, { sub: 'fay', exp: nowS() + 3600 }, mine.publicPem)
    await refused(t, url, bearer(confused), 401, 'SSEGW_ERR_AUTH_INVALID_TOKEN', /`alg`/, confused)
  })
}
