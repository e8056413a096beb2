/**
 * The static-key verifier: what it accepts with a secret and with each kind
 * of public key, and every way it refuses, with the reason, code and message
 * a client sees.
 */
import t from 'tap'
import { AuthError } from '../../src/auth/auth-error.js'
import { fastJwtRejection } from '../../src/auth/fast-jwt-rejection.js'
import { StaticKeyVerifier } from '../../src/auth/static-key-verifier.js'
import { checkedClaims } from '../../src/auth/token-verifier.js'
import { verifierFromConfig } from '../../src/auth/verifier-from-config.js'
import { loadConfig, type JwtSettings } from '../../src/core/config.js'
import { Errors } from '../../src/core/errors.js'
import { rawToken, signatureOf, type TestContext as Test } from '../helpers/extra.js'
import { SECRET, asymmetricToken, hsToken, keyPair } from '../helpers/token.js'

const nowS = (): number => Math.floor(Date.now() / 1000)
const jwtOf = (env: Record<string, string>): JwtSettings => {
  const jwt = loadConfig(env).jwt
  if (jwt === undefined) throw new Error('no JWT settings')
  return jwt
}
const secretVerifier = (env: Record<string, string> = {}): StaticKeyVerifier => new StaticKeyVerifier(jwtOf({ JWT_SECRET: SECRET, ...env }))

/** `verify` rejects (never throws at the call) with an AuthError of this reason, code and message. */
async function refuses (t: Test, verifier: StaticKeyVerifier, token: string, reason: string, code: string, message: RegExp | string): Promise<void> {
  let answer: Promise<unknown> | undefined
  try {
    answer = verifier.verify(token)
  } catch (err) {
    t.fail(`threw at the call instead of rejecting: ${String(err)}`)
    return
  }
  const err = await answer.then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof AuthError, `${reason}: an AuthError`)
  if (!(err instanceof AuthError)) return
  t.equal(err.reason, reason, `reason ${reason}`)
  t.equal(err.code, code, `code ${code}`)
  t.equal(err.statusCode, 401, '401')
  if (typeof message === 'string') t.equal(err.message, message)
  else t.match(err.message, message)
  const signature = signatureOf(token)
  if (signature.length >= 16) t.notOk(err.message.includes(signature), 'the signature is not echoed')
}

const INVALID = Errors.AUTH_INVALID_TOKEN.code

t.test('a secret: a valid HS token resolves with its claims', async t => {
  const v = secretVerifier()
  const exp = nowS() + 60
  const claims = await v.verify(hsToken({ sub: 'alice', topics: ['a'], exp }))
  t.match(claims, { sub: 'alice', topics: ['a'], exp })
  t.same((await v.verify(hsToken({ exp }, SECRET, 'HS512'))).exp, exp, 'HS512 too (all HS* allowed by default)')
})

t.test('a secret: every refusal, with its reason and message', async t => {
  const v = secretVerifier()
  const exp = nowS() + 60
  await refuses(t, v, hsToken({ sub: 'alice', exp: nowS() - 10 }), 'expired', Errors.AUTH_EXPIRED_TOKEN.code, 'The token has expired: get a fresh one and reconnect.')
  await refuses(t, v, 'not-a-jwt', 'invalid', INVALID, 'The token was rejected: it is not a well-formed JWT.')
  await refuses(t, v, hsToken({ exp }, 'another-secret-0123456789-abcdefghijklmnop'), 'invalid', INVALID, 'The token was rejected: its signature does not match the configured key.')
  await refuses(t, secretVerifier({ JWT_ALGORITHMS: 'HS512' }), hsToken({ exp }), 'invalid', INVALID, 'The token was rejected: its `alg` is not one this gateway allows (JWT_ALGORITHMS).')
  await refuses(t, v, rawToken({ alg: 'none', typ: 'JWT' }, { exp }), 'invalid', INVALID, 'The token was rejected: it is unsigned.')
  await refuses(t, v, hsToken({ exp, nbf: nowS() + 600 }), 'invalid', INVALID, 'The token was rejected: it is not valid yet (`nbf`).')
  await refuses(t, v, hsToken({ exp: undefined }), 'invalid', INVALID, 'The token was rejected: it lacks the required `exp` claim.')
  await refuses(t, v, hsToken({ exp: 'tomorrow' }), 'invalid', INVALID, 'The token was rejected: a claim has the wrong type.')
  await refuses(t, v, rawToken({ alg: 'HS256', typ: 'JWT' }, [1, 2]), 'invalid', INVALID, 'The token was rejected: its payload is not a JSON object.')
  await refuses(t, v, rawToken({ alg: 'HS256', typ: 'JWT' }, 'claims'), 'invalid', INVALID, 'The token was rejected: its payload is not a JSON object.')
  await refuses(t, v, hsToken({ exp, sub: '' }), 'invalid', INVALID, 'The token was rejected: `sub` must be a string of 1 to 256 characters with no control characters.')
  await refuses(t, v, hsToken({ exp, sub: 42 }), 'invalid', INVALID, 'The token was rejected: `sub` must be a string of 1 to 256 characters with no control characters.')
  await refuses(t, v, hsToken({ exp, sub: 'a\nb' }), 'invalid', INVALID, /`sub` must be a string/)
})

t.test('a secret: audience and issuer, when configured, are required and checked', async t => {
  const v = secretVerifier({ JWT_AUDIENCE: 'gateway', JWT_ISSUER: 'https://issuer.example' })
  const exp = nowS() + 60
  t.match(await v.verify(hsToken({ exp, aud: 'gateway', iss: 'https://issuer.example' })), { aud: 'gateway' })
  t.match(await v.verify(hsToken({ exp, aud: ['other', 'gateway'], iss: 'https://issuer.example' })), { iss: 'https://issuer.example' }, 'one of several audiences')
  await refuses(t, v, hsToken({ exp, iss: 'https://issuer.example' }), 'invalid', INVALID, 'The token was rejected: it lacks the required `aud` claim.')
  await refuses(t, v, hsToken({ exp, aud: 'gateway' }), 'invalid', INVALID, 'The token was rejected: it lacks the required `iss` claim.')
  await refuses(t, v, hsToken({ exp, aud: 'elsewhere', iss: 'https://issuer.example' }), 'invalid', INVALID, 'The token was rejected: its `aud` or `iss` is not one this gateway accepts.')
  await refuses(t, v, hsToken({ exp, aud: 'gateway', iss: 'https://evil.example' }), 'invalid', INVALID, 'The token was rejected: its `aud` or `iss` is not one this gateway accepts.')
  // Without them configured, tokens need neither.
  t.ok(await secretVerifier().verify(hsToken({ exp })), 'no aud/iss needed when none is configured')
})

t.test('a secret: the clock tolerance accepts a token just past exp, and not beyond', async t => {
  const v = secretVerifier({ JWT_CLOCK_TOLERANCE_MS: '30000' })
  t.ok(await v.verify(hsToken({ exp: nowS() - 5 })), 'expired 5 s ago, 30 s tolerance: accepted')
  await refuses(t, v, hsToken({ exp: nowS() - 120 }), 'expired', Errors.AUTH_EXPIRED_TOKEN.code, /has expired/)
})

for (const [type, alg] of [['rsa', 'RS256'], ['ec', 'ES256'], ['ed25519', 'EdDSA']] as const) {
  t.test(`a public key (${type}): ${alg} tokens signed by its private key, and no other`, async t => {
    const pair = keyPair(type)
    const v = new StaticKeyVerifier(jwtOf({ JWT_PUBLIC_KEY: pair.publicPem }))
    const exp = nowS() + 60
    t.match(await v.verify(asymmetricToken({ sub: 'bob', exp }, pair.privateKey, alg)), { sub: 'bob', exp })
    const other = keyPair(type)
    await refuses(t, v, asymmetricToken({ sub: 'bob', exp }, other.privateKey, alg), 'invalid', INVALID, 'The token was rejected: its signature does not match the configured key.')
    await refuses(t, v, hsToken({ exp }), 'invalid', INVALID, 'The token was rejected: its `alg` is not one this gateway allows (JWT_ALGORITHMS).')
    await refuses(t, v, asymmetricToken({ exp: nowS() - 10 }, pair.privateKey, alg), 'expired', Errors.AUTH_EXPIRED_TOKEN.code, /has expired/)
  })
}

t.test('verifierFromConfig: the static-key verifier for a key, none without one', async t => {
  t.equal(verifierFromConfig(undefined), undefined, 'no key: no verifier')
  const v = verifierFromConfig(jwtOf({ JWT_SECRET: SECRET }))
  t.ok(v instanceof StaticKeyVerifier)
  t.match(await v?.verify(hsToken({ sub: 'carol' })), { sub: 'carol' })
})

t.test('checkedClaims: only an object with a numeric exp and a valid sub (or none) passes', async t => {
  t.same(checkedClaims({ exp: 1, sub: 'x', other: [1] }), { exp: 1, sub: 'x', other: [1] })
  t.same(checkedClaims({ exp: 1 }), { exp: 1 }, 'no sub is fine')
  const cases: Array<[unknown, RegExp]> = [
    [null, /payload is not a JSON object/],
    [[{ exp: 1 }], /payload is not a JSON object/],
    ['{"exp":1}', /payload is not a JSON object/],
    [{}, /needs a numeric `exp` claim/],
    [{ exp: '1' }, /needs a numeric `exp` claim/],
    [{ exp: Number.POSITIVE_INFINITY }, /needs a numeric `exp` claim/],
    [{ exp: 1, sub: 'x'.repeat(257) }, /`sub` must be a string of 1 to 256 characters/],
    [{ exp: 1, sub: null }, /`sub` must be a string/],
  ]
  for (const [payload, message] of cases) {
    t.throws(() => checkedClaims(payload), { reason: 'invalid', code: INVALID, message }, JSON.stringify(payload) ?? String(payload))
  }
})

t.test('fastJwtRejection: an unknown error is "could not be verified", never the library\'s text', async t => {
  t.match(fastJwtRejection(Object.assign(new Error('secret detail eyJhbGciOi'), { code: 'FAST_JWT_SOMETHING_NEW' })), { reason: 'invalid', code: INVALID, message: 'The token was rejected: it could not be verified.' })
  t.match(fastJwtRejection(undefined), { reason: 'invalid', message: 'The token was rejected: it could not be verified.' })
  t.match(fastJwtRejection({ code: 'FAST_JWT_MISSING_REQUIRED_CLAIM', message: 'The sub claim is required.' }), { message: 'The token was rejected: it lacks the required `exp` claim.' }, 'only our own claim names are named')
})
