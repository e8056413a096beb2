/**
 * From a credential to a principal through the verifier seam: the checks
 * every route shares (no key, malformed credential), a verifier that
 * answers later, and the principal both routes read.
 */
import t from 'tap'
import { AuthError } from '../../src/auth/auth-error.js'
import { authenticate, type Authentication } from '../../src/auth/authenticate.js'
import { principalOf } from '../../src/auth/principal.js'
import { type Claims, type TokenVerifier } from '../../src/auth/token-verifier.js'
import { Errors } from '../../src/core/errors.js'

const names = { topicsClaim: 'topics', publishClaim: 'publish' }

/** A verifier that answers after `delayMs`, as one that fetches a key would, and records what it was asked. */
class LaterVerifier implements TokenVerifier {
  readonly asked: string[] = []
  constructor (private readonly answer: (token: string) => Claims, private readonly delayMs = 20) {}
  async verify (token: string): Promise<Claims> {
    this.asked.push(token)
    await new Promise(resolve => setTimeout(resolve, this.delayMs))
    return this.answer(token)
  }
}

t.test('principalOf: user, read and publish patterns, expiry in ms', async t => {
  const p = principalOf({ sub: 'alice', exp: 2000000000, topics: ['orders.*', 'news'], publish: 'topic:chat.* user:alice' }, names)
  t.equal(p.sub, 'alice')
  t.equal(p.expiresAtMs, 2000000000 * 1000)
  t.ok(p.topics.matches('orders.eu'), 'read pattern')
  t.ok(p.topics.matches('news'))
  t.notOk(p.topics.matches('chat.room'), 'publish patterns do not grant reading')
  t.ok(p.publish.matches('topic:chat.room'), 'publish pattern from a space-separated string')
  t.ok(p.publish.matches('user:alice'))
  t.notOk(p.publish.matches('topic:news'), 'read patterns do not grant publishing')

  const bare = principalOf({ exp: 1 }, names)
  t.equal(bare.sub, undefined, 'no sub: no user channel')
  t.ok(bare.topics.empty, 'no topics claim: reads nothing but public topics')
  t.ok(bare.publish.empty, 'no publish claim: publishes nothing')

  const renamed = principalOf({ exp: 1, scopes: 'a,b', rights: ['topic:*'], topics: ['x'], publish: ['user:*'] }, { topicsClaim: 'scopes', publishClaim: 'rights' })
  t.ok(renamed.topics.matches('b'), 'claim names come from the configuration (JWT_TOPICS_CLAIM)')
  t.notOk(renamed.topics.matches('x'), 'the default claim name is then ignored')
  t.ok(renamed.publish.matches('topic:anything'), 'JWT_PUBLISH_CLAIM')
  t.notOk(renamed.publish.matches('user:bob'))
})

t.test('authenticate: a verifier that answers later is awaited, and its claims become the principal', async t => {
  const verifier = new LaterVerifier(() => ({ sub: 'dave', exp: 1900000000, topics: ['room.*'] }), 30)
  const auth: Authentication = { verifier, claims: names }
  let settled = false
  const answer = authenticate(auth, 'opaque-token', 'nobody can publish through it.').finally(() => { settled = true })
  await new Promise(resolve => setTimeout(resolve, 5))
  t.notOk(settled, 'not settled before the verifier answers')
  const p = await answer
  t.same(verifier.asked, ['opaque-token'], 'the verifier got the token as sent')
  t.equal(p.sub, 'dave')
  t.equal(p.expiresAtMs, 1900000000000)
  t.ok(p.topics.matches('room.1'))
})

t.test('authenticate: a verifier\'s refusal reaches the route as it is', async t => {
  const refusal = new AuthError('expired', Errors.AUTH_EXPIRED_TOKEN, 'The token has expired: get a fresh one and reconnect.')
  const verifier = new LaterVerifier(() => { throw refusal })
  await t.rejects(authenticate({ verifier, claims: names }, 'tok', 'x'), refusal)
})

t.test('authenticate: no key configured is said first, in the route\'s words, whatever was sent', async t => {
  for (const token of ['', 'some.jwt.value']) {
    const err = await authenticate({ verifier: undefined, claims: names }, token, 'nobody can publish through it.').then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof AuthError, `token ${JSON.stringify(token)}: an AuthError`)
    t.match(err, {
      reason: 'not-configured',
      code: Errors.AUTH_NOT_CONFIGURED.code,
      statusCode: 401,
      message: 'This gateway has no JWT key configured (JWT_SECRET or JWT_PUBLIC_KEY), so nobody can publish through it.',
    })
  }
})

t.test('authenticate: a malformed credential is refused before the verifier is asked', async t => {
  const verifier = new LaterVerifier(() => ({ exp: 1 }))
  const err = await authenticate({ verifier, claims: names }, '', 'x').then(() => undefined, (e: unknown) => e)
  t.match(err, {
    reason: 'invalid',
    code: Errors.AUTH_INVALID_TOKEN.code,
    message: 'Malformed credentials: send `Authorization: Bearer <jwt>` or one `token` query parameter.',
  })
  t.same(verifier.asked, [], 'the verifier was not asked')
})
