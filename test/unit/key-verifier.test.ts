/**
 * The key verifier with several keys and with JWKS URLs (a local JWKS
 * server started here): which key a token is tried with, what is refused
 * before any key is fetched, how the key-set cache, its cooldown and its
 * outages behave, with the reason, code and message a client sees.
 */
import t from 'tap'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuthError } from '../../src/auth/auth-error.js'
import { KeyVerifier } from '../../src/auth/key-verifier.js'
import { maxAge } from '../../src/auth/jwks-fetch.js'
import { verifierFromConfig } from '../../src/auth/verifier-from-config.js'
import { loadConfig, type JwtSettings } from '../../src/core/config.js'
import { ConfigError, Errors } from '../../src/core/errors.js'
import { rawToken, type TestContext as Test } from '../helpers/extra.js'
import { JwksServer, signedToken, signingKey } from '../helpers/jwks.js'
import { SECRET, asymmetricToken, hsToken, keyPair } from '../helpers/token.js'

const server = await JwksServer.start()
t.teardown(() => server.stop())
const dir = mkdtempSync(join(tmpdir(), 'sse-jwks-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

const jwtOf = (env: Record<string, string>): JwtSettings => {
  const jwt = loadConfig(env).jwt
  if (jwt === undefined) throw new Error('no JWT settings')
  return jwt
}

/** `verify` rejects with an AuthError of this reason and code, its message matching. */
async function refuses (t: Test, v: { verify: (token: string) => Promise<unknown> }, token: string, reason: string, code: string, message: RegExp): Promise<void> {
  const err = await v.verify(token).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof AuthError, `${reason}: an AuthError (${String(err)})`)
  if (!(err instanceof AuthError)) return
  t.equal(err.reason, reason, `reason ${reason}`)
  t.equal(err.code, code, `code ${code}`)
  t.match(err.message, message)
}

const INVALID = Errors.AUTH_INVALID_TOKEN.code
const ISS_A = 'https://a.example/'
const ISS_B = 'https://b.example/realms/b'

/** A clock the key-set cache reads, moved by hand. */
function clock (): { now: () => number, advance: (ms: number) => void } {
  let ms = 1_000_000
  return { now: () => ms, advance: d => { ms += d } }
}

t.test('regression: two PEM keys concatenated in JWT_PUBLIC_KEY silently used only the first', async t => {
  const first = keyPair('rsa')
  const second = keyPair('ec')
  const jwt = jwtOf({ JWT_PUBLIC_KEY: first.publicPem + second.publicPem })
  t.equal(jwt.keys.length, 2, 'two keys')
  t.same(jwt.algorithms, ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256'], 'the algorithms of both')
  const v = verifierFromConfig(jwt)
  if (v === undefined) throw new Error('no verifier')
  t.match(await v.verify(asymmetricToken({ sub: 'one' }, first.privateKey, 'RS256')), { sub: 'one' }, 'the first key verifies its tokens')
  t.match(await v.verify(asymmetricToken({ sub: 'two' }, second.privateKey, 'ES256')), { sub: 'two' }, 'and the second key its own')
  const other = keyPair('rsa')
  await refuses(t, v, asymmetricToken({ sub: 'x' }, other.privateKey, 'RS256'), 'invalid', INVALID, /signature does not match/)
  // A bundle with something that is not a key in it is refused at start-up, naming the key.
  t.throws(() => loadConfig({ JWT_PUBLIC_KEY: first.publicPem + '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' }), { message: /JWT_PUBLIC_KEY key 2 of 2 is not a PEM public key/ })
  t.throws(() => loadConfig({ JWT_PUBLIC_KEY: first.publicPem + 'junk' }), { message: /text outside its PEM blocks/ })
})

t.test('several secrets, one per line, are tried in order: rotation without a flag day', async t => {
  const next = 'next-secret-0123456789-abcdefghijklmnopqrstu'
  const v = verifierFromConfig(jwtOf({ JWT_SECRET: `${next}\n${SECRET}\n` }))
  if (v === undefined) throw new Error('no verifier')
  t.match(await v.verify(hsToken({ sub: 'new' }, next)), { sub: 'new' }, 'the new secret')
  t.match(await v.verify(hsToken({ sub: 'old' }, SECRET)), { sub: 'old' }, 'the old one still')
  await refuses(t, v, hsToken({ sub: 'x' }, 'third-secret-0123456789-abcdefghijklmnopqrs'), 'invalid', INVALID, /signature does not match/)
  // Expired under the right secret: told it expired, not that the signature is wrong.
  await refuses(t, v, hsToken({ sub: 'x', exp: Math.floor(Date.now() / 1000) - 60 }, SECRET), 'expired', Errors.AUTH_EXPIRED_TOKEN.code, /expired/)
  t.throws(() => loadConfig({ JWT_SECRET: `${next}\nshort` }), { message: /JWT_SECRET line 2 must be at least 32 characters/ })
})

t.test('_FILE variants: JWT_SECRET_FILE and JWT_PUBLIC_KEY_FILE, one of the two forms at a time', async t => {
  const secretFile = join(dir, 'secret')
  writeFileSync(secretFile, `${SECRET}\n`)
  t.same(jwtOf({ JWT_SECRET_FILE: secretFile }).keys.map(k => k.key), [SECRET], 'trailing newline stripped')
  const pair = keyPair('ed25519')
  const pemFile = join(dir, 'key.pem')
  writeFileSync(pemFile, pair.publicPem)
  const v = verifierFromConfig(jwtOf({ JWT_PUBLIC_KEY_FILE: pemFile }))
  t.match(await v?.verify(asymmetricToken({ sub: 'f' }, pair.privateKey, 'EdDSA')), { sub: 'f' })
  t.throws(() => loadConfig({ JWT_SECRET: SECRET, JWT_SECRET_FILE: secretFile }), { message: 'JWT_SECRET and JWT_SECRET_FILE are both set: give one' })
  t.throws(() => loadConfig({ JWT_SECRET_FILE: join(dir, 'missing') }), { message: /JWT_SECRET_FILE names .*missing, which does not exist/ })
  const empty = join(dir, 'empty')
  writeFileSync(empty, '\n')
  t.throws(() => loadConfig({ JWT_PUBLIC_KEY_FILE: empty }), { message: /JWT_PUBLIC_KEY_FILE names .*, which is empty/ })
  const shortFile = join(dir, 'short')
  writeFileSync(shortFile, 'short-s3cret\n')
  const err = t.throws(() => loadConfig({ JWT_SECRET_FILE: shortFile }), { message: /JWT_SECRET \(from JWT_SECRET_FILE .*\) must be at least 32/ }) as Error
  t.notMatch(err?.message ?? '', /s3cret/, 'the file\'s text is never quoted')
  const urlFile = join(dir, 'redis-url')
  writeFileSync(urlFile, 'redis://:pw@redis.example:6380\n')
  t.equal(loadConfig({ REDIS_URL_FILE: urlFile }).redisUrl, 'redis://:pw@redis.example:6380', 'REDIS_URL_FILE')
})

t.test('a JWKS file: keys chosen by kid, keys without one tried in order, secrets beside public keys', async t => {
  const rsa = signingKey('rsa-1')
  const ec = signingKey('ec-1', 'ES256')
  const noKid = signingKey('', 'EdDSA')
  const hmac = Buffer.from('h'.repeat(40))
  const file = join(dir, 'jwks.json')
  writeFileSync(file, JSON.stringify({ keys: [rsa.jwk, ec.jwk, { ...noKid.jwk, kid: undefined }, { kty: 'oct', kid: 'hmac-1', k: hmac.toString('base64url') }] }))
  const jwt = jwtOf({ JWT_JWKS_FILE: file })
  t.same(jwt.keys.map(k => k.kid ?? null), ['rsa-1', 'ec-1', null, 'hmac-1'])
  const v = new KeyVerifier(jwt)
  t.match(await v.verify(signedToken(rsa, { sub: 'r' })), { sub: 'r' }, 'RSA by kid')
  t.match(await v.verify(signedToken(ec, { sub: 'e' })), { sub: 'e' }, 'EC by kid')
  t.match(await v.verify(signedToken(noKid, { sub: 'n' }, { kid: undefined })), { sub: 'n' }, 'no kid: tried in order')
  t.match(await v.verify(signedToken(noKid, { sub: 'n' }, { kid: 'made-up' })), { sub: 'n' }, 'an unknown kid falls to the keys without one')
  t.match(await v.verify(rawToken({ alg: 'HS256', typ: 'JWT', kid: 'hmac-1' }, { sub: 'h', exp: Math.floor(Date.now() / 1000) + 60 }, hmac.toString())), { sub: 'h' }, 'an oct key verifies HS256')
  // kid confusion: the EC key's kid on a token signed by the RSA key.
  await refuses(t, v, signedToken(rsa, { sub: 'x' }, { kid: 'ec-1' }), 'invalid', INVALID, /`alg` is not one the key its `kid` names can verify/)
  // The RSA key's kid, HS256, keyed with the RSA public key's PEM: the classic confusion.
  const confused = rawToken({ alg: 'HS256', typ: 'JWT', kid: 'rsa-1' }, { sub: 'x', exp: Math.floor(Date.now() / 1000) + 60 }, rsa.publicPem)
  await refuses(t, v, confused, 'invalid', INVALID, /`alg` is not one the key its `kid` names can verify/)
  // A file whose keys all have a kid: a kid it lacks is an unknown key.
  const kidsOnly = join(dir, 'kids.json')
  writeFileSync(kidsOnly, JSON.stringify({ keys: [rsa.jwk] }))
  await refuses(t, new KeyVerifier(jwtOf({ JWT_JWKS_FILE: kidsOnly })), signedToken(rsa, { sub: 'x' }, { kid: 'other' }), 'unknown-key', Errors.AUTH_UNKNOWN_KEY.code, /`kid` names no key of this gateway/)
  // Refused at start-up, naming the key.
  writeFileSync(kidsOnly, JSON.stringify({ keys: [{ ...rsa.jwk, alg: 'HS256' }] }))
  t.throws(() => loadConfig({ JWT_JWKS_FILE: kidsOnly }), { message: /key "rsa-1" has `alg: "HS256"`, which its type cannot verify/ })
  writeFileSync(kidsOnly, JSON.stringify({ keys: [rsa.jwk, rsa.jwk] }))
  t.throws(() => loadConfig({ JWT_JWKS_FILE: kidsOnly }), { message: /two keys with kid "rsa-1"/ })
  writeFileSync(kidsOnly, JSON.stringify({ keys: [{ ...rsa.jwk, d: 'x' }] }))
  t.throws(() => loadConfig({ JWT_JWKS_FILE: kidsOnly }), { message: /holds a private key/ })
  writeFileSync(kidsOnly, '{"keys":')
  t.throws(() => loadConfig({ JWT_JWKS_FILE: kidsOnly }), { message: /which is not JSON/ })
})

t.test('a token that carries its own key (jku, x5u, jwk, x5c) is refused, with static keys and with JWKS', async t => {
  const key = signingKey('k1')
  server.publish('/own/jwks', [key])
  const v = new KeyVerifier(jwtOf({ JWT_PUBLIC_KEY: key.publicPem }))
  const jwks = new KeyVerifier(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/own/jwks') }))
  for (const [name, value] of [['jku', server.url('/own/jwks')], ['x5u', 'https://evil.example/cert.pem'], ['jwk', key.jwk], ['x5c', ['MIIB']]] as const) {
    const token = signedToken(key, { sub: 'x', iss: ISS_A }, { [name]: value })
    await refuses(t, v, token, 'invalid', INVALID, new RegExp(`carries its own key \\(\`${name}\` header\\)`))
    await refuses(t, jwks, token, 'invalid', INVALID, new RegExp(`\`${name}\``))
  }
  t.equal(server.fetches('/own/jwks'), 0, 'nothing was fetched for them')
})

t.test('JWKS: the issuer is checked before any key is fetched; keys are bound to their issuer', async t => {
  const a = signingKey('shared-kid')
  const b = signingKey('b-1')
  const bSameKid = signingKey('shared-kid')
  server.publish('/a/jwks', [a])
  server.publish('/b/jwks', [b, bSameKid])
  const jwt = jwtOf({ JWT_ISSUER: `${ISS_A},${ISS_B}`, JWT_JWKS_URL: `${ISS_A}=${server.url('/a/jwks')},${ISS_B}=${server.url('/b/jwks')}` })
  t.same(jwt.jwks, [{ issuer: ISS_A, url: server.url('/a/jwks') }, { issuer: ISS_B, url: server.url('/b/jwks') }])
  const v = new KeyVerifier(jwt)
  await refuses(t, v, signedToken(a, { sub: 'x', iss: 'https://evil.example/' }), 'unknown-issuer', Errors.AUTH_UNKNOWN_ISSUER.code, /`iss` is not an issuer this gateway accepts/)
  await refuses(t, v, signedToken(a, { sub: 'x', iss: 'https://a.example' }), 'unknown-issuer', Errors.AUTH_UNKNOWN_ISSUER.code, /`iss`/)
  await refuses(t, v, signedToken(a, { sub: 'x' }), 'invalid', INVALID, /lacks the required `iss` claim/)
  t.equal(server.fetches('/a/jwks') + server.fetches('/b/jwks'), 0, 'no key set fetched for a token of an unknown issuer')
  t.match(await v.verify(signedToken(a, { sub: 'ann', iss: ISS_A })), { sub: 'ann', iss: ISS_A })
  t.match(await v.verify(signedToken(b, { sub: 'bob', iss: ISS_B })), { sub: 'bob' })
  t.equal(server.fetches('/a/jwks'), 1, 'A fetched once')
  // Issuer confusion: a token claiming issuer A, signed by B's key, with a kid A has.
  await refuses(t, v, signedToken(bSameKid, { sub: 'ann', iss: ISS_A }), 'invalid', INVALID, /signature does not match/)
  // ... or with B's kid that A lacks: A's set is asked, never B's.
  await refuses(t, v, signedToken(b, { sub: 'ann', iss: ISS_A }), 'unknown-key', Errors.AUTH_UNKNOWN_KEY.code, /`kid` names no key of its issuer's key set/)
  t.match(v.readiness(), { [ISS_A]: 'fresh', [ISS_B]: 'fresh' })
  // The right issuer but a wrong audience or expiry still fails as it would with a static key.
  const aud = new KeyVerifier(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/a/jwks'), JWT_AUDIENCE: 'gw' }))
  await refuses(t, aud, signedToken(a, { sub: 'x', iss: ISS_A, aud: 'other' }), 'invalid', INVALID, /`aud` or `iss`/)
  await refuses(t, aud, signedToken(a, { sub: 'x', iss: ISS_A, aud: 'gw', exp: Math.floor(Date.now() / 1000) - 10 }), 'expired', Errors.AUTH_EXPIRED_TOKEN.code, /expired/)
})

t.test('JWKS: an RSA key is never offered for an HMAC alg, and a remote set never serves HMAC secrets', async t => {
  const key = signingKey('r1')
  server.publish('/hmac/jwks', [key, { kty: 'oct', kid: 'o1', k: Buffer.from('s'.repeat(40)).toString('base64url') }])
  const exp = Math.floor(Date.now() / 1000) + 60
  const v = new KeyVerifier(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/hmac/jwks') }))
  t.same(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/hmac/jwks') }).algorithms, ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'], 'no HS* by default')
  await refuses(t, v, rawToken({ alg: 'HS256', typ: 'JWT', kid: 'r1' }, { sub: 'x', iss: ISS_A, exp }, key.publicPem), 'invalid', INVALID, /`alg` is not one this gateway allows/)
  await refuses(t, v, rawToken({ alg: 'none', typ: 'JWT', kid: 'r1' }, { sub: 'x', iss: ISS_A, exp }), 'invalid', INVALID, /unsigned/)
  // With HS256 allowed (for a static secret beside the set): still not with the RSA key, nor with the set's oct key.
  const mixed = new KeyVerifier(jwtOf({ JWT_SECRET: SECRET, JWT_ISSUER: `${ISS_A},local`, JWT_JWKS_URL: `${ISS_A}=${server.url('/hmac/jwks')}`, JWT_ALGORITHMS: 'HS256,RS256' }))
  await refuses(t, mixed, rawToken({ alg: 'HS256', typ: 'JWT', kid: 'r1' }, { sub: 'x', iss: ISS_A, exp }, key.publicPem), 'invalid', INVALID, /`alg` is not one the key its `kid` names can verify/)
  await refuses(t, mixed, rawToken({ alg: 'HS256', typ: 'JWT', kid: 'o1' }, { sub: 'x', iss: ISS_A, exp }, 's'.repeat(40)), 'unknown-key', Errors.AUTH_UNKNOWN_KEY.code, /kid/)
  t.match(await mixed.verify(hsToken({ sub: 'svc', iss: 'local' })), { sub: 'svc' }, 'the static secret verifies the other issuer')
  await refuses(t, mixed, hsToken({ sub: 'svc', iss: 'elsewhere' }), 'unknown-issuer', Errors.AUTH_UNKNOWN_ISSUER.code, /JWT_ISSUER/)
  await refuses(t, mixed, hsToken({ sub: 'svc', iss: ISS_A }), 'invalid', INVALID, /`alg` is not one its issuer's keys can verify/)
  t.match(await mixed.verify(signedToken(key, { sub: 'idp', iss: ISS_A })), { sub: 'idp' })
})

t.test('JWKS: Cache-Control max-age within the TTL bounds; a stale set answers while it is fetched again', async t => {
  const k1 = signingKey('c1')
  const k2 = signingKey('c2')
  server.publish('/cache/jwks', [k1], 'public, max-age=120')
  const c = clock()
  const v = new KeyVerifier(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/cache/jwks'), JWT_JWKS_MIN_TTL_MS: '60000', JWT_JWKS_MAX_TTL_MS: '300000', JWT_JWKS_COOLDOWN_MS: '1000' }), { now: c.now })
  await v.verify(signedToken(k1, { iss: ISS_A }))
  t.equal(server.fetches('/cache/jwks'), 1)
  c.advance(119_000)
  await v.verify(signedToken(k1, { iss: ISS_A }))
  t.equal(server.fetches('/cache/jwks'), 1, 'within max-age: no fetch')
  server.publish('/cache/jwks', [k2, k1], 'max-age=999999')
  c.advance(2_000)
  t.equal(v.readiness()?.[ISS_A], 'stale')
  await v.verify(signedToken(k1, { iss: ISS_A }))
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(server.fetches('/cache/jwks'), 2, 'past max-age: fetched again, in the background')
  c.advance(299_000)
  await v.verify(signedToken(k2, { iss: ISS_A }))
  t.equal(server.fetches('/cache/jwks'), 2, 'a long max-age is cut to JWT_JWKS_MAX_TTL_MS, not beyond')
  c.advance(2_000)
  await v.verify(signedToken(k2, { iss: ISS_A }))
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(server.fetches('/cache/jwks'), 3, 'fetched again after the longest TTL')
  server.publish('/cache/jwks', [k2], 'no-store')
  c.advance(300_000)
  await v.verify(signedToken(k2, { iss: ISS_A }))
  await new Promise(resolve => setTimeout(resolve, 100))
  c.advance(59_000)
  await v.verify(signedToken(k2, { iss: ISS_A }))
  t.equal(server.fetches('/cache/jwks'), 4, 'no-store: kept for the shortest TTL')
  t.same([maxAge('max-age=30'), maxAge('public, max-age="45", must-revalidate'), maxAge('no-cache'), maxAge(null), maxAge('private')], [30, 45, 0, undefined, undefined])
})

t.test('JWKS: a flood of unknown kids fetches at most once per cooldown; a new kid after it is found', async t => {
  const k1 = signingKey('f1')
  server.publish('/flood/jwks', [k1])
  const c = clock()
  const v = new KeyVerifier(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/flood/jwks'), JWT_JWKS_COOLDOWN_MS: '30000' }), { now: c.now })
  await v.start()
  t.equal(server.fetches('/flood/jwks'), 1, 'fetched at start')
  const tokens = Array.from({ length: 500 }, (_, i) => signedToken(k1, { iss: ISS_A }, { kid: `made-up-${i}` }))
  const answers = await Promise.all(tokens.map(async token => await v.verify(token).then(() => 'accepted', (e: AuthError) => e.code)))
  t.same([...new Set(answers)], [Errors.AUTH_UNKNOWN_KEY.code], 'each refused as an unknown key')
  t.equal(server.fetches('/flood/jwks'), 1, 'no fetch within the cooldown of the start-up fetch')
  c.advance(30_000)
  await Promise.all(tokens.map(async token => await v.verify(token).catch(() => undefined)))
  t.equal(server.fetches('/flood/jwks'), 2, 'after the cooldown: one fetch for 500 unknown kids')
  // The issuer adds a key: its first token, after the cooldown, fetches it; concurrent ones wait for that fetch.
  const k2 = signingKey('f2')
  server.publish('/flood/jwks', [k2, k1])
  c.advance(30_000)
  const fresh = await Promise.all(Array.from({ length: 20 }, async () => await v.verify(signedToken(k2, { sub: 'n', iss: ISS_A }))))
  t.equal(fresh.length, 20, 'all 20 accepted')
  t.equal(server.fetches('/flood/jwks'), 3, 'with one fetch')
})

t.test('JWKS: the endpoint down: cached keys keep serving; without a set, 503 keys-unavailable; every failure has its reason', async t => {
  const k1 = signingKey('d1')
  server.publish('/down/jwks', [k1])
  const c = clock()
  const failures: string[] = []
  const warnings: string[] = []
  const logger = { info () {}, debug () {}, error () {}, warn (_o: unknown, msg: string) { warnings.push(msg) }, child () { return this } }
  const v = new KeyVerifier(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/down/jwks'), JWT_JWKS_COOLDOWN_MS: '1000', JWT_JWKS_TIMEOUT_MS: '300', JWT_JWKS_MAX_BYTES: '2048' }),
    { now: c.now, logger: logger as never, hooks: { onFetchFailure: (_issuer, reason) => { failures.push(reason) } } })
  await v.start()
  const behaviours = [
    [{ kind: 'status', status: 503 }, 'http-status'],
    [{ kind: 'hang' }, 'timeout'],
    [{ kind: 'body', body: 'not json' }, 'invalid-json'],
    [{ kind: 'body', body: '{"nokeys":[]}' }, 'invalid-jwks'],
    [{ kind: 'body', body: JSON.stringify({ keys: [{ kty: 'RSA', n: 'x'.repeat(4000), e: 'AQAB' }] }) }, 'too-large'],
    [{ kind: 'keys', keys: [{ kty: 'oct', k: 'abc' }] }, 'no-usable-keys'],
  ] as const
  for (const [behaviour, reason] of behaviours) {
    server.behave('/down/jwks', behaviour)
    c.advance(3_600_000)
    t.match(await v.verify(signedToken(k1, { sub: 'still', iss: ISS_A })), { sub: 'still' }, `${reason}: the cached key still verifies`)
    await new Promise(resolve => setTimeout(resolve, reason === 'timeout' ? 500 : 100))
    t.equal(failures.at(-1), reason, `counted as ${reason}`)
  }
  t.equal(v.readiness()?.[ISS_A], 'cached, fetch failing: no-usable-keys')
  t.equal(warnings.filter(w => /JWKS fetch failed/.test(w)).length, 1, 'logged once for the whole outage')
  server.publish('/down/jwks', [k1])
  c.advance(3_600_000)
  await v.verify(signedToken(k1, { iss: ISS_A }))
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(v.readiness()?.[ISS_A], 'fresh', 'back to fresh once it answers')

  // Never fetched: refused with 503 (not the token's fault), and retried only after the cooldown.
  server.behave('/never/jwks', { kind: 'status', status: 500 })
  const cold = new KeyVerifier(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/never/jwks'), JWT_JWKS_COOLDOWN_MS: '1000' }), { now: c.now })
  await refuses(t, cold, signedToken(k1, { iss: ISS_A }), 'keys-unavailable', Errors.AUTH_KEYS_UNAVAILABLE.code, /cannot be fetched right now/)
  await refuses(t, cold, signedToken(k1, { iss: ISS_A }), 'keys-unavailable', Errors.AUTH_KEYS_UNAVAILABLE.code, /retry shortly/)
  t.equal(server.fetches('/never/jwks'), 1, 'one fetch within the cooldown')
  t.equal(cold.readiness()?.[ISS_A], 'unavailable: http-status')
  t.equal(Errors.AUTH_KEYS_UNAVAILABLE.statusCode, 503)
  server.publish('/never/jwks', [k1])
  c.advance(1_000)
  t.ok(await cold.verify(signedToken(k1, { iss: ISS_A })), 'it answers again: accepted')
})

t.test('JWT_JWKS_URL settings: JWT_ISSUER required, one URL or issuer=url pairs, each issuer with keys', async t => {
  const rejects = (env: Record<string, string>, message: RegExp): void => {
    let err: unknown
    try { loadConfig(env) } catch (e) { err = e }
    t.ok(err instanceof ConfigError, `refused: ${String(message)}`)
    t.match((err as Error | undefined)?.message, message)
  }
  rejects({ JWT_JWKS_URL: 'https://idp.example/jwks' }, /JWT_JWKS_URL needs JWT_ISSUER/)
  rejects({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: 'ftp://idp.example/jwks' }, /https:\/\//)
  rejects({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: 'not a url' }, /not a URL/)
  rejects({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: 'https://user:s3cret@idp.example/jwks' }, /without credentials/)
  rejects({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: 'https://a/jwks,https://b/jwks' }, /give each as issuer=url/)
  rejects({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: `https://other/=${server.url('/a/jwks')}` }, /"https:\/\/other\/", which is not in JWT_ISSUER/)
  rejects({ JWT_ISSUER: `${ISS_A},${ISS_B}`, JWT_JWKS_URL: `${ISS_A}=${server.url('/a/jwks')}` }, /JWT_ISSUER has "https:\/\/b.example\/realms\/b", but no key verifies its tokens/)
  rejects({ JWT_SECRET: SECRET, JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/a/jwks') }, /bind the URL to its issuer/)
  rejects({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/a/jwks'), JWT_ALGORITHMS: 'HS256' }, /HMAC needs JWT_SECRET/)
  // One URL for several issuer forms of one provider: each issuer gets its own cache of that set.
  const two = jwtOf({ JWT_ISSUER: `${ISS_A},https://a.example/v2`, JWT_JWKS_URL: server.url('/a/jwks') })
  t.same(two.jwks.map(b => b.issuer), [ISS_A, 'https://a.example/v2'])
})

t.test('JWT_USER_CLAIM: the user comes from the configured claim, checked like sub', async t => {
  const v = verifierFromConfig(jwtOf({ JWT_SECRET: SECRET, JWT_USER_CLAIM: 'uid' }))
  t.match(await v?.verify(hsToken({ uid: 'u-1', sub: 'ignored' })), { uid: 'u-1' })
  await refuses(t, v as KeyVerifier, hsToken({ uid: 'a\nb' }), 'invalid', INVALID, /`uid` must be a string/)
})

t.test('JWKS: a fetched key JWT_ALGORITHMS rules out is skipped; a set with no usable key keeps the last good one', async t => {
  const rsa = signingKey('rs')
  const ec = signingKey('es', 'ES256')
  server.publish('/narrow/jwks', [rsa, ec, { kty: 'RSA', kid: 'enc', use: 'enc', n: 'AQAB', e: 'AQAB' }])
  const failures: string[] = []
  const c = clock()
  const skipped: unknown[] = []
  const logger = { info () {}, debug () {}, error () {}, warn (o: { skipped?: unknown }) { skipped.push(o.skipped) }, child () { return this } }
  const v = new KeyVerifier(jwtOf({ JWT_ISSUER: ISS_A, JWT_JWKS_URL: server.url('/narrow/jwks'), JWT_ALGORITHMS: 'ES256', JWT_JWKS_COOLDOWN_MS: '1000' }), { now: c.now, logger: logger as never, hooks: { onFetchFailure: (_i, reason) => { failures.push(reason) } } })
  t.match(await v.verify(signedToken(ec, { sub: 'e', iss: ISS_A })), { sub: 'e' })
  await refuses(t, v, signedToken(rsa, { sub: 'r', iss: ISS_A }), 'invalid', INVALID, /`alg` is not one this gateway allows/)
  await refuses(t, v, signedToken(ec, { sub: 'r', iss: ISS_A }, { kid: 'enc' }), 'unknown-key', Errors.AUTH_UNKNOWN_KEY.code, /kid/)
  t.same(skipped, [['key "rs" verifies RS256, none of which JWT_ALGORITHMS allows']], 'the RSA key is named as skipped, once; the encryption key is skipped silently')
  server.publish('/narrow/jwks', [rsa])
  c.advance(3_600_000)
  t.match(await v.verify(signedToken(ec, { sub: 'e', iss: ISS_A })), { sub: 'e' }, 'the cached EC key still serves')
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(failures, ['no-usable-keys'], 'a set of RSA keys only, with ES256 alone allowed, is a failed fetch')
})
