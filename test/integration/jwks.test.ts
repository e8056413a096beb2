/**
 * Tokens from an identity provider: a gateway with JWT_JWKS_URL pointing at a
 * local JWKS server started here, a real Redis, real streams. Keys rotate
 * under 500 open streams; the endpoint goes down; a flood of made-up kids;
 * every bad token of the static-key tests, and the confusions a key set
 * invites, answered 401 with a stable code.
 */
import t from 'tap'
import { eventually, getAnswer, getText, openMany, rawToken, scrapeMetric, signatureOf, type TestContext as Test } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { JwksServer, signedToken, signingKey, type SigningKey } from '../helpers/jwks.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { RawStream, getJson, openStream } from '../helpers/sse.js'

t.setTimeout(180000)

const redis = await startRedis()
t.teardown(() => redis.stop())
const idp = await JwksServer.start()
t.teardown(() => idp.stop())

const ISS = 'https://idp.example/realms/app'
const OTHER = 'https://other.example/'
const nowS = (): number => Math.floor(Date.now() / 1000)
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

let paths = 0
/** A gateway whose issuer ISS has its own JWKS path, publishing `keys`. */
async function gateway (t: Test, keys: SigningKey[], env: Record<string, string | undefined> = {}): Promise<{ gw: TestGateway, prefix: string, path: string }> {
  const path = `/realms/app-${++paths}/certs`
  idp.publish(path, keys)
  const prefix = uniquePrefix('jwks')
  const gw = await startGateway({ JWT_SECRET: undefined, JWT_ISSUER: ISS, JWT_JWKS_URL: idp.url(path), REDIS_URL: redis.url, KEY_PREFIX: prefix, ...env })
  t.teardown(() => gw.close())
  return { gw, prefix, path }
}

async function refused (t: Test, url: string, token: string, status: number, code: string, message: RegExp): Promise<void> {
  const res = await getAnswer(url, bearer(token))
  t.equal(res.status, status, `${code}: ${status}`)
  t.equal(res.body?.error, code, `${code}: stable code`)
  t.match(res.body?.message, message, `${code}: ${String(res.body?.message)}`)
  const sig = signatureOf(token)
  if (sig.length >= 16) t.notOk(JSON.stringify(res.body).includes(sig), 'the token is not echoed')
}

t.test('every bad token of the static-key tests still gets 401 under JWKS, plus the confusions a key set invites', async t => {
  const key = signingKey('k-1')
  const other = signingKey('k-1')
  const { gw, path } = await gateway(t, [key], { JWT_AUDIENCE: 'sse-gateway' })
  const url = `${gw.url}/events`
  const good = { sub: 'ann', iss: ISS, aud: 'sse-gateway' }
  const s = await openStream(url, bearer(signedToken(key, good)))
  t.equal(s.status, 200, 'a good token opens a stream')
  s.close()
  const INVALID = 'SSEGW_ERR_AUTH_INVALID_TOKEN'
  const cases: Array<[string, string, string, RegExp]> = [
    ['not a JWT', 'not-a-jwt', INVALID, /not a well-formed JWT/],
    ['three junk parts', 'a.b.c', INVALID, /not a well-formed JWT/],
    ['signed by another key with the same kid', signedToken(other, good), INVALID, /signature does not match/],
    ['alg none', rawToken({ alg: 'none', typ: 'JWT', kid: 'k-1' }, { ...good, exp: nowS() + 60 }), INVALID, /unsigned/],
    ['alg none with a signature', rawToken({ alg: 'none', typ: 'JWT', kid: 'k-1' }, { ...good, exp: nowS() + 60 }) + 'c2lnbmF0dXJl', INVALID, /`alg`/],
    ['an RSA key offered for HS256 (keyed with its public PEM)', rawToken({ alg: 'HS256', typ: 'JWT', kid: 'k-1' }, { ...good, exp: nowS() + 60 }, key.publicPem), INVALID, /`alg`/],
    ['expired', signedToken(key, { ...good, exp: nowS() - 60 }), 'SSEGW_ERR_AUTH_EXPIRED_TOKEN', /expired.*fresh/],
    ['no exp', signedToken(key, { ...good, exp: undefined }), INVALID, /`exp`/],
    ['exp as text', signedToken(key, { ...good, exp: String(nowS() + 60) }), INVALID, /claim|exp/],
    ['array payload', rawToken({ alg: 'RS256', typ: 'JWT', kid: 'k-1' }, [good]) + 'eA', INVALID, /payload is not a JSON object/],
    ['numeric sub', signedToken(key, { ...good, sub: 42 }), INVALID, /`sub`/],
    ['control character in sub', signedToken(key, { ...good, sub: 'a\nb' }), INVALID, /`sub`/],
    ['not valid yet', signedToken(key, { ...good, nbf: nowS() + 600 }), INVALID, /not valid yet/],
    ['wrong aud', signedToken(key, { ...good, aud: 'someone-else' }), INVALID, /`aud`/],
    ['no aud', signedToken(key, { ...good, aud: undefined }), INVALID, /`aud`/],
    ['no iss', signedToken(key, { ...good, iss: undefined }), INVALID, /`iss`/],
    ['an unknown issuer', signedToken(key, { ...good, iss: OTHER }), 'SSEGW_ERR_AUTH_UNKNOWN_ISSUER', /`iss` is not an issuer/],
    ['the issuer without its trailing part', signedToken(key, { ...good, iss: 'https://idp.example/realms' }), 'SSEGW_ERR_AUTH_UNKNOWN_ISSUER', /JWT_ISSUER/],
    ['an unknown kid', signedToken(key, good, { kid: 'k-unknown' }), 'SSEGW_ERR_AUTH_UNKNOWN_KEY', /`kid` names no key/],
    ['a jku header', signedToken(key, good, { jku: 'https://evil.example/jwks' }), INVALID, /carries its own key \(`jku` header\)/],
    ['an x5u header', signedToken(key, good, { x5u: 'https://evil.example/cert' }), INVALID, /`x5u`/],
    ['a jwk header', signedToken(other, good, { jwk: other.jwk }), INVALID, /`jwk`/],
    ['an x5c header', signedToken(key, good, { x5c: ['MIIB'] }), INVALID, /`x5c`/],
  ]
  for (const [what, token, code, message] of cases) {
    t.comment(what)
    await refused(t, url, token, 401, code, message)
  }
  t.ok(idp.fetches(path) <= 2, `the key set was fetched at most twice (start-up, the unknown kid): ${idp.fetches(path)}`)
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_auth_failures_total', { reason: 'unknown-issuer' }), 2)
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_auth_failures_total', { reason: 'unknown-key' }), 1)
})

t.test('keys rotate while 500 clients are connected and new ones connect: none dropped, none refused', async t => {
  const old = signingKey('2026-old')
  const { gw, prefix, path } = await gateway(t, [old], { JWT_JWKS_COOLDOWN_MS: '200', JWT_JWKS_MIN_TTL_MS: '1000', JWT_JWKS_MAX_TTL_MS: '1000', MAX_CONNECTIONS_PER_USER: '1000' })
  const url = `${gw.url}/events?topic=news`
  const token = (key: SigningKey, i: number): string => signedToken(key, { sub: `u${i}`, iss: ISS, topics: ['news'] })
  const streams: RawStream[] = await openMany(500, 100, i => ({ url, headers: bearer(token(old, i)) }))
  t.same([...new Set(streams.map(s => s.status))], [200], '500 streams open with the old key')
  // The provider adds a key and signs with it; the old one still verifies.
  const next = signingKey('2026-new')
  idp.publish(path, [next, old])
  await new Promise(resolve => setTimeout(resolve, 250))
  const during = await openMany(100, 50, i => ({ url, headers: bearer(token(i % 2 === 0 ? next : old, 500 + i)) }))
  t.same([...new Set(during.map(s => s.status))], [200], '100 new streams, half with each key: all open')
  // The old key retired: new tokens keep working, the streams opened with it stay.
  idp.publish(path, [next])
  await new Promise(resolve => setTimeout(resolve, 1200))
  const after = await openMany(100, 50, i => ({ url, headers: bearer(token(next, 600 + i)) }))
  t.same([...new Set(after.map(s => s.status))], [200], '100 more with the new key: all open')
  const all = [...streams, ...during, ...after]
  await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'after rotation')
  await eventually(() => all.every(s => s.events.some(e => e.data === 'after rotation')), 30000, 'every stream to get the event')
  t.equal(all.filter(s => s.ended).length, 0, 'no stream was dropped')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_auth_failures_total', { reason: 'unknown-key' }), 0, 'no token refused')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_open'), 700)
  for (const s of all) s.close()
  // A token of the retired key is now refused, as it should be.
  const res = await getAnswer(url, bearer(token(old, 1)))
  t.equal(res.body?.error, 'SSEGW_ERR_AUTH_UNKNOWN_KEY', 'the retired key no longer verifies new connects')
})

t.test('the endpoint goes down: cached keys keep working, /readyz says so and stays ready, the failures are counted and logged once', async t => {
  const key = signingKey('down-1')
  const { gw, prefix, path } = await gateway(t, [key], { JWT_JWKS_COOLDOWN_MS: '100', JWT_JWKS_MIN_TTL_MS: '1000', JWT_JWKS_MAX_TTL_MS: '1000' })
  const url = `${gw.url}/events`
  const open = await openStream(url, bearer(signedToken(key, { sub: 'ann', iss: ISS })))
  t.teardown(() => { open.close() })
  idp.behave(path, { kind: 'status', status: 503 })
  // Past the TTL, several refetches fail while tokens keep coming.
  for (let i = 0; i < 8; i++) {
    await new Promise(resolve => setTimeout(resolve, 300))
    const s = await openStream(url, bearer(signedToken(key, { sub: `b${i}`, iss: ISS })))
    t.equal(s.status, 200, `connect ${i} during the outage: 200 with the cached key`)
    s.close()
  }
  const failures = await scrapeMetric(gw.internalUrl, 'sse_gateway_jwks_fetch_failures_total', { issuer: ISS, reason: 'http-status' })
  t.ok(failures >= 2, `failed fetches counted: ${failures}`)
  const ready = await getJson(`${gw.internalUrl}/readyz`)
  t.equal(ready.status, 200, 'still ready')
  t.match(ready.body, { status: 'ready', jwks: { [ISS]: 'cached, fetch failing: http-status' } })
  const warned = gw.logs.filter(l => l.includes('JWKS fetch failed'))
  t.equal(warned.length, 1, 'logged once for the outage')
  await redis.client.xadd(`${prefix}user:ann`, '*', 'data', 'still here')
  t.equal((await open.waitForEvents(1))[0]?.data, 'still here', 'the open stream never noticed')
  idp.publish(path, [key])
  // Fetched again when a token next needs the set (and the cooldown allows).
  await eventually(async () => {
    const s = await openStream(url, bearer(signedToken(key, { sub: 'c', iss: ISS })))
    s.close()
    return (await getJson(`${gw.internalUrl}/readyz`)).body?.jwks?.[ISS] === 'fresh'
  }, 10000, 'the set to be fresh again', 200)
  t.ok(gw.logs.some(l => l.includes('the outage is over')), 'the recovery is logged')
})

t.test('an issuer whose keys were never fetched: an EventSource is told to retry (200 + gateway.unavailable), others get 503', async t => {
  const key = signingKey('never')
  const path = '/never-up/certs'
  idp.behave(path, { kind: 'status', status: 500 })
  const prefix = uniquePrefix('jwks')
  const gw = await startGateway({ JWT_SECRET: undefined, JWT_ISSUER: ISS, JWT_JWKS_URL: idp.url(path), REDIS_URL: redis.url, KEY_PREFIX: prefix, JWT_JWKS_COOLDOWN_MS: '60000' })
  t.teardown(() => gw.close())
  const token = signedToken(key, { sub: 'ann', iss: ISS })
  const es = await openStream(`${gw.url}/events`, bearer(token))
  t.equal(es.status, 200, 'an EventSource gets a 200')
  await es.waitForEnd()
  t.match(es.events, [{ event: 'gateway.unavailable', data: /keys-unavailable/ }])
  t.ok(es.retry !== undefined, 'with a retry:')
  const plain = await getJson(`${gw.url}/events`, { ...bearer(token), accept: 'application/json' })
  t.equal(plain.status, 503)
  t.equal(plain.body?.error, 'SSEGW_ERR_AUTH_KEYS_UNAVAILABLE')
  t.match(plain.body?.message, /cannot be fetched right now/)
  t.ok(Number(plain.headers['retry-after']) >= 1, 'with Retry-After')
  t.match((await getJson(`${gw.internalUrl}/readyz`)).body, { status: 'ready', jwks: { [ISS]: 'unavailable: http-status' } })
  t.equal(idp.fetches(path), 1, 'fetched once (start-up), not per request, within the cooldown')
})

t.test('a flood of unknown kids over HTTP: the key set is fetched at most once per cooldown', async t => {
  const key = signingKey('flood')
  const { gw, path } = await gateway(t, [key], { JWT_JWKS_COOLDOWN_MS: '60000' })
  const before = idp.fetches(path)
  const codes = new Set<string>()
  for (let batch = 0; batch < 10; batch++) {
    const answers = await Promise.all(Array.from({ length: 30 }, async (_, i) =>
      await getAnswer(`${gw.url}/events`, bearer(signedToken(key, { sub: 'x', iss: ISS }, { kid: `bogus-${batch}-${i}` })))))
    for (const a of answers) codes.add(String(a.body?.error))
  }
  t.same([...codes], ['SSEGW_ERR_AUTH_UNKNOWN_KEY'], '300 refusals, each an unknown key')
  t.ok(idp.fetches(path) - before <= 1, `fetches for 300 unknown kids: ${idp.fetches(path) - before} (at most one per cooldown)`)
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_jwks_fetches_total', { issuer: ISS }), idp.fetches(path), 'sse_gateway_jwks_fetches_total counts them')
  t.match((await getText(`${gw.internalUrl}/metrics`)).body, /sse_gateway_jwks_fetch_failures_total/)
})
