/**
 * `GET /events`: authenticate, work out the channels, subscribe, then open the
 * stream. Errors before the stream opens are JSON with a stable code; after
 * the 200, the session ends itself with a reason and never throws.
 */
import { randomUUID } from 'node:crypto'
import type { Http2ServerResponse } from 'node:http2'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { TopicPatterns, isValidTopicName, topicChannel, userChannel, type Channel } from '../core/channels.js'
import type { Config } from '../core/config.js'
import { decodeCursor } from '../core/cursor.js'
import { Errors, GatewayError, grantOf } from '../core/errors.js'
import { formatEvent, formatRetry } from '../core/frame.js'
import type { Logger } from 'pino'
import type { Hub } from '../delivery/hub.js'
import type { Metrics } from '../metrics.js'
import { AuthError } from '../auth/auth-error.js'
import { authenticate, type Authentication } from '../auth/authenticate.js'
import type { Principal } from '../auth/principal.js'
import type { TokenVerifier } from '../auth/token-verifier.js'
import { ANY_TOKEN_SOURCE, findToken } from './token-source.js'
import type { AdmissionRefusal } from '../source/control-store.js'
import { CONTROL_EVENTS, unavailableMessage, unavailablePayload, type CloseReason, type UnavailableReason } from '../core/protocol.js'
import { jitteredRetryMs } from '../core/retry.js'
import { Http1StreamWriter } from './http1-writer.js'
import { Http2StreamWriter } from './http2-writer.js'
import type { StreamWriter } from './stream-writer.js'
import { Session, type HistoryRequest, type SessionContext } from './session.js'
import type { SessionRegistry } from './session-registry.js'
import type { ControlStore } from '../source/control-store.js'

export interface EventsRouteOptions {
  readonly config: Config
  /** Verifies tokens; `undefined` when no key is configured (only public topics can be read). */
  readonly verifier: TokenVerifier | undefined
  readonly hub: Hub
  readonly sessions: SessionRegistry
  /** Revocations and the per-user limit (counted across replicas when it says so). */
  readonly control: ControlStore
  readonly metrics: Metrics
  readonly logger: Logger
  /** True while the replica drains: new streams get a `retry:` and end at once. */
  readonly isDraining: () => boolean
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  // no-transform: proxies must not compress or rewrite (and so buffer) the stream.
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
}

/**
 * The stream each connection carries. An SSE response never ends, so a
 * request pipelined behind it on the same connection can never be answered:
 * it must not become a second session, which would hold a slot and stream
 * keys with no socket to write to.
 */
/** More requests than this waiting behind one connection's unfinished answer is abuse: the connection is closed. */
const MAX_WAITING_PER_CONNECTION = 16
const waitingOn = new WeakMap<Socket, number>()

/**
 * An `onRequest` hook for every route: HTTP/1.1 answers a connection's
 * requests in order, so a pipelined request whose answer must wait behind
 * an earlier one (its response has no socket yet) does not run until that
 * answer has finished. Behind an SSE stream that may be never: the request
 * then costs nothing (no session, no slot, no key, no `POST /publish` run
 * that the client would send again on a new connection) and is dropped
 * when the connection closes, counted as `SSEGW_ERR_STREAM_PIPELINED`. If
 * the stream ends first, it runs then, in order, as HTTP/1.1 wants.
 */
export function inTurn (metrics: Metrics, logger: Logger) {
  // Callback style: the common case (our turn already) allocates no promise.
  return (request: FastifyRequest, reply: FastifyReply, next: (err?: Error) => void): void => {
    const res = reply.raw
    if (res.socket !== null) {
      next()
      return
    }
    const connection = request.raw.socket
    const waiting = (waitingOn.get(connection) ?? 0) + 1
    waitingOn.set(connection, waiting)
    if (waiting > MAX_WAITING_PER_CONNECTION) connection.destroy()
    // Each waiting request listens for the close: room for all of them.
    else connection.setMaxListeners(Math.max(connection.getMaxListeners(), 16 + MAX_WAITING_PER_CONNECTION))
    const done = (): void => {
      res.off('socket', done)
      connection.off('close', done)
      waitingOn.set(connection, (waitingOn.get(connection) ?? 1) - 1)
      if (res.socket !== null && !connection.destroyed) {
        next()
        return
      }
      reply.hijack()
      metrics.requestsRejected.inc({ code: Errors.STREAM_PIPELINED.code })
      logger.debug({ reqId: request.id, req: request, error: Errors.STREAM_PIPELINED.code }, 'request pipelined behind an answer that never finished: the connection closed first')
    }
    res.once('socket', done)
    connection.once('close', done)
    if (connection.destroyed) done()
  }
}

function queryValues (value: unknown): string[] {
  if (value === undefined) return []
  if (Array.isArray(value)) return value.map(String)
  return [String(value)]
}

export function parseTopics (raw: unknown, max: number): string[] {
  const topics = [...new Set(queryValues(raw))]
  for (const t of topics) {
    if (!isValidTopicName(t)) {
      throw new GatewayError(Errors.TOPIC_INVALID, `Topic ${JSON.stringify(t.slice(0, 140))} is not a valid name: use 1 to 128 of A-Z a-z 0-9 . _ - : @ /, starting with a letter or digit.`)
    }
  }
  if (topics.length > max) {
    throw new GatewayError(Errors.TOPIC_TOO_MANY, `This connection asks for ${topics.length} topics; at most ${max} are allowed (MAX_TOPICS_PER_CONNECTION).`)
  }
  return topics
}

/**
 * `history=N` (the newest N entries of each channel) or `since=<time>` (Unix
 * ms or an ISO 8601 date): where a first connect starts instead of now.
 */
/**
 * `channel=data`: each event carries its channel's name (`user:42`,
 * `topic:news`) as its first `data:` line, for plain EventSource pages
 * (README, "The channel of each event"). Absent: events as produced.
 */
export function parseChannelOption (query: Record<string, unknown>): boolean {
  const { channel } = query
  if (channel === undefined) return false
  if (channel === 'data') return true
  throw new GatewayError(Errors.CHANNEL_OPTION_INVALID, '`channel` takes one value, `data` (each event\'s first data line is then its channel), or leave it out.')
}

export function parseHistory (query: Record<string, unknown>, max: number): HistoryRequest | undefined {
  const { history, since } = query
  if (history === undefined && since === undefined) return undefined
  if (history !== undefined && since !== undefined) {
    throw new GatewayError(Errors.HISTORY_INVALID, 'Give `history` or `since`, not both.')
  }
  if (max === 0) throw new GatewayError(Errors.HISTORY_INVALID, 'History on first connect is disabled on this gateway (HISTORY_MAX_ENTRIES=0).')
  if (history !== undefined) {
    const n = typeof history === 'string' && /^\d{1,9}$/.test(history) ? Number(history) : NaN
    if (!(n >= 1 && n <= max)) throw new GatewayError(Errors.HISTORY_INVALID, `\`history\` must be a whole number from 1 to ${max} (entries per channel).`)
    return { kind: 'last', count: n }
  }
  const text = typeof since === 'string' ? since : ''
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN
  if (!Number.isFinite(ms)) throw new GatewayError(Errors.HISTORY_INVALID, '`since` must be a Unix time in milliseconds or an ISO 8601 date (2026-11-23T10:00:00Z).')
  return { kind: 'since', sinceMs: Math.min(ms, Date.now()) }
}

export async function eventsRoute (app: FastifyInstance, opts: EventsRouteOptions): Promise<void> {
  const { config, hub, sessions, control, metrics, logger } = opts
  const context: SessionContext = {
    hub,
    metrics,
    logger,
    retryMs: config.retryMs,
    pageSize: config.catchupPageSize,
    slowClientTimeoutMs: config.slowClientTimeoutMs,
    onEnd: session => {
      sessions.delete(session)
      control.release(session.id)
    },
  }
  const publicTopics = new TopicPatterns(config.publicTopics)
  const retryMs = (): number => jitteredRetryMs(config.retryMs, config.retryJitterMs)

  const auth: Authentication = { verifier: opts.verifier, claims: config }

  async function authorize (request: FastifyRequest, topics: string[]): Promise<Principal | undefined> {
    const found = findToken(request, ANY_TOKEN_SOURCE, config.tokenCookie)
    if (found === undefined) {
      const needsToken = topics.length === 0 || topics.some(t => !publicTopics.matches(t))
      if (needsToken) {
        throw new AuthError('missing', Errors.AUTH_MISSING_TOKEN, 'No token: send `Authorization: Bearer <jwt>`, a `token` query parameter, or the `' + config.tokenCookie + '` cookie.')
      }
      return undefined
    }
    return await authenticate(auth, found.token, 'it cannot accept tokens; only public topics can be read without one.')
  }

  // No automatic HEAD route: a HEAD would open a session that never ends.
  const routeConfig = config.connectRatePerIp > 0
    ? { exposeHeadRoute: false, config: { rateLimit: { max: config.connectRatePerIp, timeWindow: 1000 } } }
    : { exposeHeadRoute: false }
  app.get('/events', routeConfig, async (request: FastifyRequest, reply: FastifyReply) => {
    const connection = request.raw.socket
    const query = (request.query ?? {}) as Record<string, unknown>
    let principal: Principal | undefined
    let channels: Channel[]
    let history: HistoryRequest | undefined
    let topics: string[]
    let channelOnWire = false
    try {
      topics = parseTopics(query.topic, config.maxTopicsPerConnection)
      principal = await authorize(request, topics)
      const denied = topics.filter(t => !publicTopics.matches(t) && principal?.topics.matches(t) !== true)
      if (denied.length > 0) {
        throw new AuthError('forbidden', Errors.TOPIC_FORBIDDEN, `This token may not read ${denied.map(t => JSON.stringify(t)).join(', ')} (claim \`${config.topicsClaim}\`).`)
      }
      channels = topics.map(t => topicChannel(config.keyPrefix, t))
      if (principal?.sub !== undefined) channels.unshift(userChannel(config.keyPrefix, principal.sub))
      if (channels.length === 0) {
        throw new GatewayError(Errors.NO_CHANNELS, 'Nothing to stream: the token has no `sub` and no `topic` parameter was given.')
      }
      history = parseHistory(query, config.historyMaxEntries)
      channelOnWire = parseChannelOption(query)
    } catch (err) {
      if (err instanceof AuthError) {
        metrics.authFailures.inc({ reason: err.reason })
        // The issuer's keys cannot be fetched: not the token's fault, so an
        // EventSource is told to come back rather than to give up for good;
        // other clients get the 503 with Retry-After.
        if (err.reason === 'keys-unavailable') {
          const wait = retryMs()
          if (wantsEventStream(request)) return unavailable(request, reply, 'keys-unavailable', wait, metrics)
          void reply.header('retry-after', String(Math.max(1, Math.ceil(wait / 1000))))
        }
      }
      throw err
    }

    if (opts.isDraining()) return unavailable(request, reply, 'draining', retryMs(), metrics)

    const header = request.headers['last-event-id']
    const lastEventId = typeof header === 'string' && header.length > 0
      ? header
      : typeof query.lastEventId === 'string' && query.lastEventId.length > 0 ? query.lastEventId : undefined

    // A request that came over HTTP/2 carries its stream (the compatibility
    // response of node:http2); HTTP/1.1 ones, also on a TLS listener that
    // negotiated http/1.1 by ALPN, are node:http responses.
    const h2 = (reply.raw as unknown as Partial<Http2ServerResponse>).stream
    const writer: StreamWriter = h2 !== undefined
      ? new Http2StreamWriter(reply.raw as unknown as Http2ServerResponse, config.slowClientBufferBytes)
      : new Http1StreamWriter(reply.raw, connection, config.slowClientBufferBytes)
    const session = new Session(context, {
      id: randomUUID(),
      user: principal?.sub,
      channels,
      resume: lastEventId === undefined ? undefined : (decodeCursor(lastEventId) ?? null),
      history,
      channelOnWire,
      // Accepted until exp + tolerance, so it must not be cut off before then
      // (else a client is accepted and ended at once, over and over).
      expiresAtMs: principal === undefined ? undefined : principal.expiresAtMs + (config.jwt?.clockToleranceMs ?? 0),
      jti: principal?.jti,
      issuedAtMs: principal?.issuedAtMs,
    }, writer)
    // The limits are checked and the slot taken in one step, before the
    // first await; from here every path that does not open the stream
    // ends the session, which gives the slot back. A control store that
    // counts across replicas takes the per-user limit from here.
    const perUser = control.countsAcrossReplicas ? Number.POSITIVE_INFINITY : config.maxConnectionsPerUser
    const refused = sessions.reserve(session, config.maxConnections, perUser)
    // Spread the retries wider: the other replicas take these clients.
    if (refused === 'at-capacity') return unavailable(request, reply, 'at-capacity', retryMs() * 2, metrics)
    if (refused === 'user-limit') {
      throw new GatewayError(Errors.TOO_MANY_CONNECTIONS, `This user already has ${config.maxConnectionsPerUser} open streams on this replica (MAX_CONNECTIONS_PER_USER): close one, or share one stream across tabs.`)
    }
    session.bindConnection()
    if (session.closed) {
      // The client left before we got here.
      reply.hijack()
      return reply
    }

    // Revocations and the cluster-wide per-user limit: one round trip. The
    // session is registered already, so a command given meanwhile ends it
    // too (checked below, with the close reason).
    let admission: AdmissionRefusal | undefined
    try {
      admission = await control.admit({
        session: session.id,
        user: session.user,
        jti: session.jti,
        issuedAtMs: session.issuedAtMs,
        topics,
        maxPerUser: config.maxConnectionsPerUser,
      })
    } catch (err) {
      session.close('source-error')
      logger.warn({ reqId: request.id, err: { message: (err as Error).message } }, 'cannot check revocations and limits (control store unavailable); client told to retry')
      return unavailable(request, reply, 'source-unavailable', retryMs(), metrics)
    }
    // It ended while admitted (the client left, a command came): the lease it was just given goes too.
    if (session.closed) control.release(session.id)
    if (admission === 'revoked' || session.endReason === 'revoked') {
      session.close('revoked')
      metrics.authFailures.inc({ reason: 'revoked' })
      throw new AuthError('revoked', Errors.AUTH_REVOKED_TOKEN, 'This token was revoked (by its `jti`, or as issued before its user\'s cut-off): get a fresh token.')
    }
    if (admission === 'user-limit') {
      session.close('client-closed')
      throw new GatewayError(Errors.TOO_MANY_CONNECTIONS, `This user already has ${config.maxConnectionsPerUser} open streams across the gateway's replicas (MAX_CONNECTIONS_PER_USER): close one, or share one stream across tabs.`)
    }
    if (session.closed) {
      if (session.endReason === 'disconnected') return unavailable(request, reply, 'disconnected', retryMs(), metrics)
      reply.hijack()
      return reply
    }

    // Subscribe before the headers go out: anything written after the client
    // sees `open` is then guaranteed to reach it.
    try {
      await session.subscribe()
    } catch (err) {
      session.close('source-error')
      logger.warn({ reqId: request.id, err: { message: (err as Error).message }, ...grantOf(err) }, 'cannot subscribe (stream source unavailable); client told to retry')
      return unavailable(request, reply, 'source-unavailable', retryMs(), metrics)
    }
    // A command may have ended it while it subscribed.
    if (endReasonOf(session) === 'revoked') {
      metrics.authFailures.inc({ reason: 'revoked' })
      throw new AuthError('revoked', Errors.AUTH_REVOKED_TOKEN, 'This token was revoked (by its `jti`, or as issued before its user\'s cut-off): get a fresh token.')
    }
    if (endReasonOf(session) === 'disconnected') return unavailable(request, reply, 'disconnected', retryMs(), metrics)
    if (session.closed || connection.destroyed || request.raw.destroyed || reply.raw.destroyed) {
      // The client left, or the replica began to drain, while we subscribed.
      session.close('client-closed')
      if (opts.isDraining() && !connection.destroyed) return unavailable(request, reply, 'draining', retryMs(), metrics)
      reply.hijack()
      return reply
    }
    reply.hijack()
    try {
      writer.open({ ...reply.getHeaders(), ...SSE_HEADERS } as Record<string, string>)
      metrics.connectionsOpened.inc({ protocol: writer.protocol })
      metrics.connectionsOpen.inc()
      for (const ch of channels) metrics.subscriptions.inc({ kind: ch.kind })
      session.start(retryMs(), request.id)
      if (session.expiresAtMs !== undefined) sessions.expireAt(session, session.expiresAtMs)
    } catch (err) {
      // After hijack() nobody else reports it: log, and let the client retry.
      logger.error({ reqId: request.id, err }, 'cannot start the stream')
      session.close('source-error')
      writer.destroy()
    }
    return reply
  })
}

/** Why a session ended, read afresh after an await (a control command may end it meanwhile). */
function endReasonOf (session: Session): CloseReason | undefined {
  return session.endReason
}

/**
 * This replica cannot serve the stream now. An EventSource (it asks for
 * `text/event-stream`) gives up for good on any non-200, so it gets a 200
 * with `retry:`, a `gateway.unavailable` event and the end of the stream, and
 * comes back by itself, usually to another replica. Other clients get a 503
 * with `Retry-After`.
 */
/** An EventSource asks for `text/event-stream` (and gives up for good on any non-200). */
function wantsEventStream (request: FastifyRequest): boolean {
  const accept = request.headers.accept
  return typeof accept === 'string' && accept.includes('text/event-stream')
}

function unavailable (request: FastifyRequest, reply: FastifyReply, reason: UnavailableReason, retryMs: number, metrics: Metrics): FastifyReply {
  metrics.unavailable.inc({ reason })
  if (wantsEventStream(request)) {
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, { ...reply.getHeaders(), ...SSE_HEADERS } as Record<string, string>)
    res.write(formatRetry(retryMs))
    res.end(formatEvent(unavailablePayload(reason), CONTROL_EVENTS.unavailable))
    return reply
  }
  return reply.code(503).header('retry-after', String(Math.max(1, Math.ceil(retryMs / 1000))))
    .send(new GatewayError(Errors.UNAVAILABLE, unavailableMessage(reason)).toJSON())
}
