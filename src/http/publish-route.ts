/**
 * `POST /publish`: for services that cannot write to Redis themselves. The
 * token must carry the publisher claim (`JWT_PUBLISH_CLAIM`) with a pattern
 * matching the channel; the entry is checked by the same rules as the
 * producer helper, written by the engine's {@link Publisher}, and its id
 * returned.
 *
 * The token is checked in `onRequest`, before the body is read: a caller
 * without a valid token cannot make the gateway buffer a large body. Only
 * the `Authorization` header is accepted: a write credential belongs neither
 * in a URL (logs) nor in an ambient cookie.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../core/config.js'
import { Errors, GatewayError } from '../core/errors.js'
import { parseChannel, validateEntry, type AppendOptions } from '../core/publish.js'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import { PublisherUnavailableError, type Publisher } from '../source/publisher.js'
import { AuthError } from '../auth/auth-error.js'
import { authenticate, type Authentication } from '../auth/authenticate.js'
import type { Principal } from '../auth/principal.js'
import type { TokenVerifier } from '../auth/token-verifier.js'
import { HEADER_ONLY, findToken } from './token-source.js'

export interface PublishRouteOptions {
  readonly config: Config
  /** Verifies tokens; `undefined` when no key is configured (nobody can publish). */
  readonly verifier: TokenVerifier | undefined
  readonly publisher: Publisher
  readonly metrics: Metrics
  readonly logger: Logger
}

const BODY_FIELDS = new Set(['channel', 'event', 'data'])

/**
 * Largest body that can hold `data` of `maxEventBytes` UTF-8 bytes: JSON
 * escapes one byte as at most six characters (`\u0001`), plus room for the
 * channel, the event name and the punctuation.
 */
export function publishBodyLimit (maxEventBytes: number): number {
  return maxEventBytes * 6 + 65536
}

/** The Fastify errors a body can cause, as catalogue errors (the app's handler answers them). */
function bodyError (err: FastifyError, maxEventBytes: number): GatewayError | FastifyError {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new GatewayError(Errors.PUBLISH_TOO_LARGE, `The request body is too large: \`data\` may be at most ${maxEventBytes} bytes (MAX_EVENT_BYTES).`)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new GatewayError(Errors.PUBLISH_NOT_JSON, 'Send the body as JSON with `Content-Type: application/json`.')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new GatewayError(Errors.PUBLISH_BODY_INVALID, 'The body is not valid JSON: send {"channel": "topic:<name>" | "user:<sub>", "event"?: "<name>", "data": "<text>"}.')
    default:
      // Prototype poisoning and the like: refused by Fastify with a 400.
      if (err.statusCode === 400) return new GatewayError(Errors.PUBLISH_BODY_INVALID, `The body was refused: ${err.message}`)
      return err
  }
}

export async function publishRoute (app: FastifyInstance, opts: PublishRouteOptions): Promise<void> {
  const { config, publisher, metrics, logger } = opts
  const auth: Authentication = { verifier: opts.verifier, claims: config }
  const principalOf = new WeakMap<FastifyRequest, Principal>()

  app.setErrorHandler((err: FastifyError | GatewayError) => {
    // Thrown on to the app's error handler, which logs, counts and answers.
    throw err instanceof GatewayError ? err : bodyError(err, config.maxEventBytes)
  })
  app.addHook('onClose', async () => { await publisher.close?.() })
  // The body is JSON or nothing: without this, Fastify's text/plain parser
  // would hand the route a string (a 400 for the wrong reason, not a 415).
  app.removeAllContentTypeParsers()
  // (The route's bodyLimit bounds it.)
  app.addContentTypeParser('application/json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'))

  app.addHook('onRequest', async (request: FastifyRequest) => {
    try {
      const found = findToken(request, HEADER_ONLY, config.tokenCookie)
      if (found === undefined) {
        throw new AuthError('missing', Errors.AUTH_MISSING_TOKEN, 'No token: send `Authorization: Bearer <jwt>` with a token whose `' + config.publishClaim + '` claim lists the channels it may publish to.')
      }
      const principal = await authenticate(auth, found.token, 'nobody can publish through it.')
      if (principal.publish.empty) {
        throw new AuthError('forbidden', Errors.PUBLISH_FORBIDDEN, `This token may not publish: it has no \`${config.publishClaim}\` claim listing channels (JWT_PUBLISH_CLAIM).`)
      }
      principalOf.set(request, principal)
    } catch (err) {
      if (err instanceof AuthError) metrics.authFailures.inc({ reason: err.reason })
      throw err
    }
  })

  const limits = { maxDataBytes: config.maxEventBytes, limitName: 'MAX_EVENT_BYTES' }
  app.post('/publish', { bodyLimit: publishBodyLimit(config.maxEventBytes) }, async (request: FastifyRequest, reply: FastifyReply) => {
    const body = request.body
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new GatewayError(Errors.PUBLISH_BODY_INVALID, 'The body must be a JSON object: {"channel": "topic:<name>" | "user:<sub>", "event"?: "<name>", "data": "<text>"}.')
    }
    const fields = body as Record<string, unknown>
    const unknown = Object.keys(fields).filter(k => !BODY_FIELDS.has(k))
    if (unknown.length > 0) {
      throw new GatewayError(Errors.PUBLISH_BODY_INVALID, `Unknown field ${JSON.stringify(unknown[0]?.slice(0, 64))}: the body takes \`channel\`, \`event\` and \`data\` only.`)
    }
    // Permission before the rest of the entry: a channel outside the token's
    // patterns is refused whatever the event and data.
    const channel = parseChannel(config.keyPrefix, fields.channel)
    if (principalOf.get(request)?.publish.matches(channel.name) !== true) {
      metrics.authFailures.inc({ reason: 'forbidden' })
      throw new AuthError('forbidden', Errors.PUBLISH_FORBIDDEN, `This token may not publish to ${JSON.stringify(channel.name)} (claim \`${config.publishClaim}\`).`)
    }
    const entry = validateEntry(config.keyPrefix, { channel: fields.channel, event: fields.event, data: fields.data }, limits)
    const append: AppendOptions = entry.channel.kind === 'user'
      ? { maxLen: config.publishUserMaxEntries, expireSeconds: config.publishUserTtlSeconds }
      : { maxLen: config.publishTopicMaxEntries }
    let id: string
    try {
      id = await publisher.publish(entry.channel.key, entry.fields, append)
    } catch (err) {
      if (!(err instanceof PublisherUnavailableError)) throw err
      logger.warn({ reqId: request.id, err: { message: err.message } }, 'cannot publish (stream engine unavailable)')
      reply.header('retry-after', '1')
      throw new GatewayError(Errors.UNAVAILABLE, 'The event store (Redis) is unreachable: nothing was published; retry shortly.')
    }
    logger.debug({ reqId: request.id, channel: entry.channel.name, id }, 'published')
    return { id, channel: entry.channel.name }
  })
}
