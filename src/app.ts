/**
 * Wires a gateway together: stream source, hub, sessions, the public HTTP
 * server (`/events`) and the internal one (`/metrics`, `/livez`, `/readyz`).
 * No side effects at import time; nothing here reads the environment.
 */
import fastifyCookie from '@fastify/cookie'
import fastifyCors from '@fastify/cors'
import fastifyRateLimit from '@fastify/rate-limit'
import type { Socket } from 'node:net'
import type { Server as TlsServer } from 'node:tls'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from './core/config.js'
import { controlKind } from './core/control.js'
import { ConfigError, Errors, GatewayError, type ErrorSpec } from './core/errors.js'
import { Hub } from './delivery/hub.js'
import type { TokenVerifier } from './auth/token-verifier.js'
import { verifierFromConfig } from './auth/verifier-from-config.js'
import { demoRoute, generatedJwtSettings } from './http/demo-route.js'
import { eventsRoute, inTurn } from './http/events-route.js'
import { controlRoute } from './http/control-route.js'
import { ListenerSessions, TlsReloader, applyHttp1Timeouts, listenerProtocolOptions } from './http/public-listener.js'
import { publishRoute } from './http/publish-route.js'
import { SessionRegistry } from './http/session-registry.js'
import { createLogger } from './log.js'
import { Metrics } from './metrics.js'
import type { Engine, EngineHooks } from './source/engine.js'
import { createEngine, engineOf } from './source/engines.js'
import { LIVE_READER_KINDS } from './source/live-readers.js'
import type { Publisher } from './source/publisher.js'
import type { StreamSource } from './source/stream-source.js'

export interface GatewayDeps {
  /** Defaults to the engine config asks for: Redis at `config.redisUrl`, or the in-memory engine when it is unset. */
  readonly engine?: Engine
  /** A source of the caller's own, in place of an engine's (see engineOf). */
  readonly source?: StreamSource
  readonly logger?: Logger
  readonly metrics?: Metrics
  /** Where `POST /publish` writes. Defaults to the in-memory engine when that is the source, else Redis at `config.redisUrl`. */
  readonly publisher?: Publisher
  /** Verifies tokens for `/events` and `/publish`. Defaults to the one `config.jwt` asks for (none when no key is set). */
  readonly verifier?: TokenVerifier
}

export interface Gateway {
  readonly config: Config
  readonly server: FastifyInstance
  readonly internal: FastifyInstance
  /** The engine's source: a `MemorySource` (producers may append to it) when REDIS_URL is unset. */
  readonly source: StreamSource
  readonly hub: Hub
  readonly sessions: SessionRegistry
  readonly metrics: Metrics
  readonly logger: Logger
  readonly draining: boolean
  /** Starts both listeners; resolves with their base URLs. */
  listen (): Promise<{ url: string, internalUrl: string }>
  /**
   * Graceful shutdown: not ready, new streams told to retry elsewhere, open
   * streams ended over `windowMs`, then listeners and Redis closed.
   */
  shutdown (windowMs?: number): Promise<void>
}

/** What the engine reports, as metrics. */
function engineHooks (metrics: Metrics): EngineHooks {
  return {
    onRead: s => { metrics.xreadSeconds.observe(s) },
    onReaderError: () => { metrics.readerErrors.inc() },
    onReconnect: () => { metrics.redisReconnects.inc() },
    onStall: reason => { metrics.liveStalls.inc({ reason }) },
    onModeChange: (mode, because) => {
      for (const kind of LIVE_READER_KINDS) metrics.readerMode.set({ mode: kind }, kind === mode ? 1 : 0)
      if (because !== 'start') metrics.readerModeChanges.inc({ mode, because })
    },
    onDataLost: () => { metrics.dataLost.inc() },
    onMasters: masters => {
      // Masters come and go (failover, a master added): only today's are shown.
      metrics.masterFlowing.reset()
      for (const [node, flowing, feed] of masters) metrics.masterFlowing.set({ node, feed }, flowing ? 1 : 0)
    },
  }
}

const CLIENT_ERRORS: Readonly<Record<string, readonly [ErrorSpec, string, string, string]>> = {
  ERR_HTTP_REQUEST_TIMEOUT: [Errors.REQUEST_TIMEOUT, 'Request Timeout', 'timeout', 'the request headers did not arrive in time (HEADERS_TIMEOUT_MS)'],
  HPE_HEADER_OVERFLOW: [Errors.HEADERS_TOO_LARGE, 'Request Header Fields Too Large', 'header_overflow', 'the request line and headers may hold at most 16 KiB: send a long token in the Authorization header or a cookie, not the URL'],
}

/**
 * A request Node could not parse (or that timed out, or whose headers are too
 * large): answered as Fastify answers it, logged at trace. The error's
 * `rawPacket` (the bytes read, token included) is dropped by the serializer.
 */
function answerClientError (logger: Logger, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [spec, text, label, why] = CLIENT_ERRORS[err.code ?? ''] ?? [Errors.BAD_REQUEST, 'Bad Request', 'error', 'it is not valid HTTP/1.1']
  logger.trace({ err }, `client ${label}`)
  if (socket.writable) {
    const body = JSON.stringify(new GatewayError(spec, `${text}: the request could not be read: ${why}.`).toJSON())
    socket.write(`HTTP/1.1 ${spec.statusCode} ${text}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy(err)
}

const LISTEN_ERRORS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'is in use by another process: stop it, or set {port} to a free port',
  EACCES: 'may not be bound by this user (ports below 1024 need privileges): set {port} to 1024 or above',
  EADDRNOTAVAIL: 'is not an address of this machine: set {host} to one of its addresses, 0.0.0.0 or ::',
}

/** Listens, or fails with a message that names the setting to change. */
async function listenOn (app: FastifyInstance, port: number, host: string, portName: string, hostName: string): Promise<string> {
  try {
    return await app.listen({ port, host })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    const why = LISTEN_ERRORS[code]
    if (why === undefined) throw err
    throw new ConfigError(`${portName}=${port} on ${hostName}=${host} ${why.replace('{port}', portName).replace('{host}', hostName)} (${code})`, { cause: err })
  }
}

export async function buildGateway (config: Config, deps: GatewayDeps = {}): Promise<Gateway> {
  // A demo with no JWT key signs with a random per-process secret, so its
  // page can hand out tokens; the secret is never logged and dies with the process.
  const demoJwt = config.demoEnabled && config.jwt === undefined ? generatedJwtSettings(config) : undefined
  if (demoJwt !== undefined) config = Object.freeze({ ...config, jwt: demoJwt })
  const logger = deps.logger ?? createLogger(config.logLevel)
  const metrics = deps.metrics ?? new Metrics()
  const engine = deps.engine ?? (deps.source !== undefined
    ? engineOf(deps.source, config)
    : createEngine(config, { logger, hooks: engineHooks(metrics) }))
  const source = engine.source
  const hub = new Hub(source, source, {
    maxEventBytes: config.maxEventBytes,
    maxConcurrentReads: config.maxConcurrentCatchups,
    logger: logger.child({ component: 'hub' }),
    onSkip: reason => { metrics.entriesSkipped.inc({ reason }) },
    onDelivered: lag => { metrics.deliveryLag.observe(lag) },
  })
  metrics.streamsReadNow = () => hub.size
  if (config.trustProxy === true && config.connectRatePerIp > 0) {
    logger.warn('TRUST_PROXY=true takes the leftmost X-Forwarded-For address, which any client can write: CONNECT_RATE_PER_IP limits nothing. Set TRUST_PROXY to the addresses or CIDRs of the proxies in front')
  }
  await source.start?.()
  const sessions = new SessionRegistry(config.heartbeatIntervalMs)
  let draining = false
  // Control commands from any replica (or this one) end the streams they name here.
  const control = engine.control
  control.setListener((command, atMs) => {
    const kind = controlKind(command)
    const ended = sessions.applyControl(command, atMs, config.retryMs, config.retryJitterMs)
    metrics.controlApplied.inc({ kind })
    if (ended > 0) metrics.controlEnded.inc({ kind }, ended)
    // The user or session it names; never a jti (it is half of a credential's identity).
    logger.info({ control: kind, ...('user' in command ? { user: command.user } : {}), ...('session' in command ? { session: command.session } : {}), ended }, 'control command applied')
  })
  await control.start()

  const checkingIntervalMs = Math.max(250, Math.min(5000, Math.floor(config.headersTimeoutMs / 5)))
  const server = Fastify({
    // Fastify runs without a logger; the gateway logs for itself (one line
    // per session open and close, per refused request, per failure). A
    // Fastify logger would give every request a pino child and keep the
    // request and reply reachable from response listeners for as long as a
    // stream stays open: about 0.5 KB per idle stream (bench/RESULTS.md, Q4).
    logger: false,
    // Long-lived streams: Node's timeouts must not cut them (proxies are told
    // to keep them open with heartbeats).
    requestTimeout: 0,
    // Headers must arrive in time, though (slow-headers clients); Node checks
    // every connectionsCheckingInterval, 30 s by default: often enough to
    // keep the timeout within a fifth of itself.
    http: { headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: checkingIntervalMs },
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // HTTP/1.1; or HTTPS with HTTP/2 and HTTP/1.1 by ALPN, or h2c (typed
    // as the HTTP/1.1 options: the rest of them are checked the same).
    ...(listenerProtocolOptions(config) as { http2?: false }),
    trustProxy: typeof config.trustProxy === 'object' ? [...config.trustProxy] : config.trustProxy,
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Socket) => { answerClientError(logger, err, socket) },
    // A URL Fastify cannot decode (`GET /%`): in the catalogue's shape, like every answer.
    frameworkErrors: (err, request, reply) => {
      const e = new GatewayError(Errors.BAD_REQUEST, `The URL could not be decoded (${err.code}): percent-encode it (a % must be followed by two hex digits).`)
      logger.info({ reqId: request.id, req: request, statusCode: e.statusCode, error: e.code }, 'request refused')
      metrics.requestsRejected.inc({ code: e.code })
      void (reply as FastifyReply).code(e.statusCode).send(e.toJSON())
    },
    // Fastify types an HTTP/2 instance apart; routes and hooks are the same.
  }) as unknown as FastifyInstance
  applyHttp1Timeouts(server.server, config, checkingIntervalMs)
  const h2Sessions = new ListenerSessions(server.server)
  const tlsReloader = config.listenerTls === undefined
    ? undefined
    : new TlsReloader(server.server as unknown as TlsServer, config.listenerTls, metrics, logger.child({ component: 'tls' }))
  // Before any other hook: a pipelined request runs in its turn (after the
  // answer ahead of it), never behind a stream that does not end.
  server.addHook('onRequest', inTurn(metrics, logger))
  // First: routes that plugins add (the CORS preflight route) take the
  // error handler in place when they are registered.
  server.setErrorHandler((err: FastifyError | GatewayError, request, reply) => {
    if (err instanceof GatewayError) {
      logger.info({ reqId: request.id, req: request, statusCode: err.statusCode, error: err.code }, 'request refused')
      metrics.requestsRejected.inc({ code: err.code })
      return reply.code(err.statusCode).send(err.toJSON())
    }
    // Fastify's own 4xx (a body it cannot parse, and the like): its status and
    // message, the catalogue's code. Anything else is ours: 500, logged.
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500
    if (status === 500) logger.error({ reqId: request.id, req: request, err }, 'request failed')
    else metrics.requestsRejected.inc({ code: Errors.BAD_REQUEST.code })
    const e = status === 500 ? new GatewayError(Errors.INTERNAL, 'Internal error.') : new GatewayError(Errors.BAD_REQUEST, err.message)
    return reply.code(status).send(e.toJSON())
  })
  await server.register(fastifyCookie)
  if (config.corsOrigins.length > 0) {
    // Before the CORS plugin's own hook, which answers a bad preflight in
    // text/plain: an OPTIONS that is no CORS preflight gets the catalogue's shape.
    server.addHook('onRequest', async request => {
      if (request.method !== 'OPTIONS') return
      if (request.headers.origin === undefined || request.headers['access-control-request-method'] === undefined) {
        throw new GatewayError(Errors.BAD_REQUEST, 'OPTIONS is answered only as a CORS preflight: send `Origin` and `Access-Control-Request-Method`.')
      }
    })
    const any = config.corsOrigins.includes('*')
    await server.register(fastifyCors, {
      origin: any ? '*' : [...config.corsOrigins],
      credentials: !any,
      methods: ['GET', 'POST'],
      allowedHeaders: ['Authorization', 'Last-Event-ID', 'Content-Type'],
      maxAge: 600,
    })
  }
  if (config.connectRatePerIp > 0) {
    await server.register(fastifyRateLimit, {
      global: false,
      errorResponseBuilder: (_request, context) => new GatewayError(Errors.RATE_LIMITED,
        `Too many new streams from this address: at most ${config.connectRatePerIp} per second (CONNECT_RATE_PER_IP); retry in ${context.after}.`),
    })
  }
  const verifier = deps.verifier ?? verifierFromConfig(config.jwt, {
    logger: logger.child({ component: 'jwks' }),
    hooks: {
      onFetch: issuer => { metrics.jwksFetches.inc({ issuer }) },
      onFetchFailure: (issuer, reason) => { metrics.jwksFetchFailures.inc({ issuer, reason }) },
    },
  })
  // Key sets fetched before the first token comes (bounded by JWT_JWKS_TIMEOUT_MS; a failure is logged, not fatal).
  await verifier?.start?.()
  server.setNotFoundHandler((request, reply) => {
    const e = new GatewayError(Errors.NOT_FOUND, `No route ${request.method} ${request.url.split('?')[0] ?? ''}: streams are at GET /events.`)
    return reply.code(404).send(e.toJSON())
  })
  await server.register(eventsRoute, { config, verifier, hub, sessions, control, metrics, logger, isDraining: () => draining })
  const publisher = !config.publishEnabled ? undefined : deps.publisher ?? engine.createPublisher()
  if (publisher !== undefined) await server.register(publishRoute, { config, verifier, publisher, metrics, logger })
  if (config.demoEnabled) await server.register(demoRoute, { config, logger, tokenSecret: demoJwt?.keys[0]?.key as string | undefined })
  // fastify.close() would wait for open streams forever: end them first.
  server.addHook('preClose', async () => {
    await sessions.closeAll('shutdown', config.retryMs, config.retryJitterMs)
  })

  const internal = Fastify({ logger: false })
  internal.get('/livez', async () => ({ status: 'ok' }))
  // Ready: connected, live reads proven to flow, not draining. The
  // in-memory engine is always ready: only draining takes it out.
  const ready = (): boolean => source.state === 'ready' && source.liveReason === undefined && !draining
  metrics.readyNow = ready
  metrics.connectionsLimit.set(config.maxConnections)
  internal.get('/readyz', async (_request, reply) => {
    const ok = ready()
    // Key sets are shown, never counted against readiness: cached keys keep
    // serving through an identity provider's outage, and one replica being
    // unready would not make the provider answer.
    const jwks = verifier?.readiness?.()
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not-ready', ...engine.readiness(), ...(jwks !== undefined ? { jwks } : {}), draining })
  })
  internal.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType)
    return await metrics.registry.metrics()
  })
  // Its own scope: the bearer check guards /control/* only.
  await internal.register(controlRoute, { config, control, logger: logger.child({ component: 'control' }) })

  let closed = false
  const gateway: Gateway = {
    config,
    server,
    internal,
    source,
    hub,
    sessions,
    metrics,
    logger,
    get draining () { return draining },
    async listen () {
      const url = await listenOn(server, config.port, config.host, 'PORT', 'HOST')
      tlsReloader?.start()
      const internalUrl = await listenOn(internal, config.internalPort, config.internalHost, 'INTERNAL_PORT', 'INTERNAL_HOST')
      logger.info({ url, internalUrl }, 'sse-gateway listening')
      return { url, internalUrl }
    },
    async shutdown (windowMs = config.drainWindowMs) {
      if (closed) return
      closed = true
      draining = true
      logger.info({ sessions: sessions.size, windowMs }, 'draining')
      await sessions.closeAll('shutdown', config.retryMs, config.retryJitterMs, windowMs)
      tlsReloader?.stop()
      // Every stream has its retry: now. HTTP/2 connections get a GOAWAY
      // (server.close() alone would wait for them forever).
      await h2Sessions.goAway()
      await server.close()
      sessions.stop()
      await control.close()
      await source.close()
      verifier?.close?.()
      await internal.close()
      logger.info('stopped')
    },
  }
  return gateway
}
