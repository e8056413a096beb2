/**
 * The token verifier seam through a real gateway: a verifier given to
 * buildGateway (one that answers later, as a JWKS verifier fetching its key
 * would) decides for both `GET /events` and `POST /publish`, its refusals
 * are answered and counted like the built-in ones, and a client that leaves
 * while its token is being verified costs nothing.
 */
import { request } from 'node:http'
import { Writable } from 'node:stream'
import t from 'tap'
import { buildGateway, type Gateway } from '../../src/app.js'
import { AuthError } from '../../src/auth/auth-error.js'
import type { Claims, TokenVerifier } from '../../src/auth/token-verifier.js'
import { loadConfig } from '../../src/core/config.js'
import { Errors } from '../../src/core/errors.js'
import { createLogger } from '../../src/log.js'
import { eventually, getAnswer, scrapeMetric, type TestContext } from '../helpers/extra.js'
import { bearer, post } from '../helpers/publish.js'
import { openStream, sleep } from '../helpers/sse.js'

/** Tokens are names of claim sets; each answer comes `delayMs` after the question. */
class LaterVerifier implements TokenVerifier {
  asked = 0
  constructor (private readonly tokens: Record<string, Claims>, private readonly delayMs: number) {}
  async verify (token: string): Promise<Claims> {
    this.asked++
    await sleep(this.delayMs)
    const claims = this.tokens[token]
    if (claims === undefined) throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: unknown to the stub.')
    return claims
  }
}

const exp = Math.floor(Date.now() / 1000) + 3600
const TOKENS: Record<string, Claims> = {
  reader: { sub: 'reader-1', exp, topics: ['room.*'] },
  writer: { sub: 'svc', exp, publish: ['topic:room.*', 'user:*'] },
}

async function gateway (t: TestContext, verifier: TokenVerifier): Promise<{ gateway: Gateway, url: string, internalUrl: string }> {
  // No JWT key in the configuration: only the given verifier can accept a token.
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', INTERNAL_PORT: '0', INTERNAL_HOST: '127.0.0.1', DEMO_ENABLED: 'false', LOG_LEVEL: 'warn' })
  const quiet = new Writable({ write (_chunk, _enc, done) { done() } })
  const gw = await buildGateway(config, { verifier, logger: createLogger(config.logLevel, quiet) })
  const { url, internalUrl } = await gw.listen()
  t.teardown(() => gw.shutdown(0))
  return { gateway: gw, url, internalUrl }
}

t.test('a verifier that answers later decides for /events and /publish', async t => {
  const verifier = new LaterVerifier(TOKENS, 40)
  const { url } = await gateway(t, verifier)
  const s = await openStream(`${url}/events?topic=room.1`, bearer('reader'))
  t.teardown(() => { s.close() })
  t.equal(s.status, 200, 'the stream opens once the verifier has answered')

  const toTopic = await post(`${url}/publish`, { channel: 'topic:room.1', data: 'to the room' }, bearer('writer'))
  t.equal(toTopic.status, 200, `publish allowed by the verifier's claims (${JSON.stringify(toTopic.body)})`)
  const toUser = await post(`${url}/publish`, { channel: 'user:reader-1', data: 'to the user' }, bearer('writer'))
  t.equal(toUser.status, 200, 'publish to the user channel')
  const events = await s.waitForEvents(2)
  t.same(events.map(e => e.data).sort(), ['to the room', 'to the user'], 'the topic and the user channel (from the verifier\'s `sub`) both arrive')

  const outside = await post(`${url}/publish`, { channel: 'topic:other', data: 'x' }, bearer('writer'))
  t.equal(outside.status, 403, 'a channel outside the claims is refused')
  t.equal(outside.body?.error, Errors.PUBLISH_FORBIDDEN.code)
  const reader = await post(`${url}/publish`, { channel: 'topic:room.1', data: 'x' }, bearer('reader'))
  t.equal(reader.status, 403, 'a token with no publish claim may not publish')
  const denied = await getAnswer(`${url}/events?topic=elsewhere`, bearer('reader'))
  t.equal(denied.status, 403, 'a topic outside the claims is refused')
  t.equal(denied.body?.error, Errors.TOPIC_FORBIDDEN.code)
})

t.test('the verifier\'s refusals are answered and counted like the built-in ones', async t => {
  const { url, internalUrl } = await gateway(t, new LaterVerifier(TOKENS, 10))
  for (const [what, answer] of [
    ['/events', await getAnswer(`${url}/events`, bearer('stranger'))],
    ['/publish', await post(`${url}/publish`, { channel: 'topic:room.1', data: 'x' }, bearer('stranger'))],
  ] as const) {
    t.equal(answer.status, 401, `${what}: 401`)
    t.same(answer.body, { error: Errors.AUTH_INVALID_TOKEN.code, message: 'The token was rejected: unknown to the stub.' }, `${what}: the verifier's code and message`)
  }
  t.equal(await scrapeMetric(internalUrl, 'sse_gateway_auth_failures_total', { reason: 'invalid' }), 2, 'counted by reason')
  const malformed = await getAnswer(`${url}/events`, { authorization: 'Basic x' })
  t.equal(malformed.body?.error, Errors.AUTH_INVALID_TOKEN.code, 'a malformed credential is refused before the verifier')
  t.match(malformed.body?.message, /^Malformed credentials/)
})

t.test('a client that leaves while its token is verified leaves no session behind', async t => {
  const verifier = new LaterVerifier(TOKENS, 300)
  const { gateway: gw, url } = await gateway(t, verifier)
  const req = request(`${url}/events?topic=room.1`, { headers: bearer('reader') })
  req.on('error', () => {})
  req.end()
  await eventually(() => verifier.asked === 1, 5000, 'the verifier is asked')
  req.destroy()
  await sleep(500)
  t.equal(gw.sessions.size, 0, 'no session')
  t.equal(gw.hub.size, 0, 'no stream key read')
  // The gateway still serves the next client.
  const s = await openStream(`${url}/events?topic=room.1`, bearer('reader'))
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
})
