/**
 * The control endpoints, on the internal listener only (README "Control"):
 * `POST /control/disconnect`, `POST /control/revoke` and
 * `GET /control/presence`, each behind `Authorization: Bearer
 * <CONTROL_TOKEN>`. Without CONTROL_TOKEN they refuse: an internal port
 * reachable by mistake must not let anyone end every stream.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { isValidSubject, isValidTopicName } from '../core/channels.js'
import type { Config } from '../core/config.js'
import {
  ControlRequestError, PRESENCE_DEFAULT_LIMIT, PRESENCE_MAX_LIMIT, controlKind, parseControlCommand, type PresenceQuery,
} from '../core/control.js'
import { Errors, GatewayError } from '../core/errors.js'
import type { ControlStore } from '../source/control-store.js'

export interface ControlRouteOptions {
  readonly config: Config
  readonly control: ControlStore
  readonly logger: Logger
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest()

/** `limit` of a presence query: 1 to {@link PRESENCE_MAX_LIMIT}, default {@link PRESENCE_DEFAULT_LIMIT}. */
function parseLimit (value: unknown): number {
  if (value === undefined) return PRESENCE_DEFAULT_LIMIT
  const n = typeof value === 'string' && /^\d{1,7}$/.test(value) ? Number(value) : NaN
  if (!(n >= 1 && n <= PRESENCE_MAX_LIMIT)) throw new GatewayError(Errors.CONTROL_REQUEST_INVALID, `\`limit\` must be a whole number from 1 to ${PRESENCE_MAX_LIMIT}.`)
  return n
}

export function parsePresenceQuery (query: Record<string, unknown>, presenceEnabled: boolean): PresenceQuery {
  const { channel, user } = query
  const limit = parseLimit(query.limit)
  if ((channel === undefined) === (user === undefined)) {
    throw new GatewayError(Errors.CONTROL_REQUEST_INVALID, 'Give one of `channel` (topic:<name> or user:<sub>) or `user` (a token `sub`).')
  }
  if (user !== undefined) {
    if (typeof user !== 'string' || !isValidSubject(user)) throw new GatewayError(Errors.CONTROL_REQUEST_INVALID, '`user` must be a token `sub`: 1 to 256 characters with no control characters.')
    return { user, limit }
  }
  const text = typeof channel === 'string' ? channel : ''
  if (text.startsWith('user:') && isValidSubject(text.slice(5))) return { channel: text, limit }
  if (text.startsWith('topic:') && isValidTopicName(text.slice(6))) {
    if (!presenceEnabled) throw new GatewayError(Errors.CONTROL_REQUEST_INVALID, 'Presence of topics is off on this gateway (PRESENCE_ENABLED=false): ask for a user or a user channel.')
    return { channel: text, limit }
  }
  throw new GatewayError(Errors.CONTROL_REQUEST_INVALID, '`channel` must be topic:<name> or user:<sub>.')
}

export async function controlRoute (app: FastifyInstance, opts: ControlRouteOptions): Promise<void> {
  const { config, control, logger } = opts
  const expected = config.controlToken === undefined ? undefined : digest(config.controlToken)

  app.setErrorHandler((err: Error & { statusCode?: number }, request, reply) => {
    const e = err instanceof GatewayError
      ? err
      : typeof err.statusCode === 'number' && err.statusCode < 500
        ? new GatewayError(Errors.CONTROL_REQUEST_INVALID, `The request could not be read: ${err.message}`)
        : new GatewayError(Errors.INTERNAL, 'Internal error.')
    if (e.statusCode === 500) logger.error({ reqId: request.id, err }, 'control request failed')
    else logger.info({ reqId: request.id, url: request.url.split('?')[0], statusCode: e.statusCode, error: e.code }, 'control request refused')
    return reply.code(e.statusCode).send(e.toJSON())
  })

  /** Bearer CONTROL_TOKEN, compared in constant time (digests of equal length). */
  app.addHook('onRequest', async (request: FastifyRequest) => {
    if (expected === undefined) {
      throw new GatewayError(Errors.CONTROL_NOT_CONFIGURED, 'The control endpoints are off: set CONTROL_TOKEN (or CONTROL_TOKEN_FILE) on the gateway, then send `Authorization: Bearer <CONTROL_TOKEN>`.')
    }
    const header = request.headers.authorization
    const m = typeof header === 'string' ? /^Bearer (\S+)$/i.exec(header) : null
    if (m === null || !timingSafeEqual(digest(m[1] as string), expected)) {
      throw new GatewayError(Errors.CONTROL_UNAUTHORIZED, 'Send `Authorization: Bearer <CONTROL_TOKEN>` with the gateway\'s control token.')
    }
  })

  const command = (kind: 'disconnect' | 'revoke') => async (request: FastifyRequest, reply: FastifyReply) => {
    const body = request.body
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new GatewayError(Errors.CONTROL_REQUEST_INVALID, 'Send a JSON object body (Content-Type: application/json), e.g. {"user":"42"}.')
    }
    const given = (body as Record<string, unknown>).kind
    if (given !== undefined && given !== kind) throw new GatewayError(Errors.CONTROL_REQUEST_INVALID, `\`kind\` is given by the path here (${kind}): leave it out.`)
    let c
    try {
      c = parseControlCommand({ ...body, kind }, { nowMs: Date.now(), maxTokenLifetimeMs: config.controlMaxTokenLifetimeMs })
    } catch (err) {
      if (err instanceof ControlRequestError) throw new GatewayError(Errors.CONTROL_REQUEST_INVALID, err.message)
      throw err
    }
    try {
      await control.apply(c)
    } catch (err) {
      logger.warn({ reqId: request.id, err: { message: (err as Error).message } }, 'control command not applied: the control store is unavailable')
      throw new GatewayError(Errors.CONTROL_UNAVAILABLE, 'The command was not applied: Redis is unreachable. Retry.')
    }
    logger.info({ reqId: request.id, control: controlKind(c), ...('user' in c ? { user: c.user } : {}), ...('session' in c ? { session: c.session } : {}) }, 'control command given')
    return await reply.send({ applied: controlKind(c), command: c })
  }
  app.post('/control/disconnect', command('disconnect'))
  app.post('/control/revoke', command('revoke'))
  app.get('/control/presence', async (request: FastifyRequest) => {
    const q = parsePresenceQuery((request.query ?? {}) as Record<string, unknown>, config.presenceEnabled)
    try {
      return await control.presence(q)
    } catch (err) {
      logger.warn({ reqId: request.id, err: { message: (err as Error).message } }, 'presence not answered: the control store is unavailable')
      throw new GatewayError(Errors.CONTROL_UNAVAILABLE, 'Presence could not be read: Redis is unreachable. Retry.')
    }
  })
}
