/**
 * What the public listener speaks and how it lets go of its connections:
 * plain HTTP/1.1; HTTPS with HTTP/2 and HTTP/1.1 chosen by ALPN
 * (TLS_CERT_FILE, TLS_KEY_FILE), the pair reloaded when its files change;
 * or cleartext HTTP/2 with prior knowledge (HTTP2_CLEARTEXT). The internal
 * listener (metrics, health) is always plain HTTP/1.1 and is not built here.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs'
import type { Server as HttpServer } from 'node:http'
import type { Http2Session, ServerHttp2Stream } from 'node:http2'
import type { Server as TlsServer } from 'node:tls'
import type { Logger } from 'pino'
import type { Config } from '../core/config.js'
import { readListenerTls, type ListenerTls } from '../core/listener-tls.js'
import type { Metrics } from '../metrics.js'

/** The protocol part of the Fastify options of the public listener. */
export interface ListenerProtocolOptions {
  readonly http2?: true
  readonly https?: { readonly allowHTTP1: true, readonly cert: string, readonly key: string }
  readonly http2SessionTimeout?: number
  /** HTTP/2 servers have no closeIdleConnections: shutdown closes their sessions itself (ListenerSessions). */
  readonly forceCloseConnections?: false
}

/**
 * Fastify's options for what `config` asks the listener to speak. An idle
 * HTTP/2 connection (no stream) is closed after the session timeout, which
 * is kept well above the heartbeat interval: every heartbeat is activity,
 * so an open stream's connection is never taken for idle.
 */
export function listenerProtocolOptions (config: Pick<Config, 'listenerTls' | 'http2Cleartext' | 'heartbeatIntervalMs'>): ListenerProtocolOptions {
  const http2SessionTimeout = http2SessionTimeoutMs(config.heartbeatIntervalMs)
  const tls = config.listenerTls
  if (tls !== undefined) return { http2: true, https: { allowHTTP1: true, cert: tls.cert, key: tls.key }, http2SessionTimeout, forceCloseConnections: false }
  if (config.http2Cleartext) return { http2: true, http2SessionTimeout, forceCloseConnections: false }
  return {}
}

/** At least Fastify's 72 s, and three heartbeats plus a margin. */
export function http2SessionTimeoutMs (heartbeatIntervalMs: number): number {
  return Math.max(72_000, heartbeatIntervalMs * 3 + 10_000)
}

/** The raw server under the Fastify instance, whichever kind it is. */
type RawServer = HttpServer | TlsServer

/**
 * HTTP/1.1 over the TLS listener (ALPN http/1.1) runs node's HTTP/1.1
 * connection code under the HTTP/2 server, with that server's own timeouts
 * (headers 60 s, request 300 s), not the ones Fastify gives an HTTP/1.1
 * server: set them as for plain HTTP/1.1, before listening (the checking
 * interval is read then). A client that drips its headers is cut after
 * HEADERS_TIMEOUT_MS over TLS too.
 */
export function applyHttp1Timeouts (server: RawServer, config: Pick<Config, 'listenerTls' | 'headersTimeoutMs'>, checkingIntervalMs: number): void {
  if (config.listenerTls === undefined) return
  const s = server as unknown as { headersTimeout: number, requestTimeout: number, connectionsCheckingInterval: number }
  s.headersTimeout = config.headersTimeoutMs
  s.requestTimeout = 0
  s.connectionsCheckingInterval = checkingIntervalMs
}

/**
 * The HTTP/2 sessions of the listener, so that shutdown can end them:
 * `server.close()` stops new connections but leaves open HTTP/2 sessions
 * (and so itself) waiting forever.
 */
export class ListenerSessions {
  /** Each open HTTP/2 connection and how many of its streams are not closed yet. */
  private readonly sessions = new Map<Http2Session, number>()

  constructor (server: RawServer) {
    server.on('session', (session: Http2Session) => {
      this.sessions.set(session, 0)
      session.once('close', () => { this.sessions.delete(session) })
    })
    server.on('stream', (stream: ServerHttp2Stream) => {
      const session = stream.session
      if (session === undefined || !this.sessions.has(session)) return
      this.sessions.set(session, (this.sessions.get(session) ?? 0) + 1)
      stream.once('close', () => {
        const n = this.sessions.get(session)
        if (n !== undefined) this.sessions.set(session, n - 1)
      })
    })
  }

  /** HTTP/2 connections open now. */
  get size (): number {
    return this.sessions.size
  }

  /**
   * Sends GOAWAY on every HTTP/2 connection and closes it. The drain has
   * ended every stream with a `retry:` by then, but a stream's last DATA
   * may still wait in its buffer: GOAWAY goes out once the connection's
   * streams have closed (their last frames sent), so that a client reads
   * each `retry:` before it learns the connection is going; at most
   * `graceMs` for that, and as long again before a connection still open
   * is destroyed. Resolves when all closed.
   */
  async goAway (graceMs = 2000): Promise<void> {
    const open = [...this.sessions.keys()]
    if (open.length === 0) return
    await Promise.all(open.map(async session => {
      const deadline = Date.now() + graceMs
      while ((this.sessions.get(session) ?? 0) > 0 && Date.now() < deadline && !session.destroyed) {
        await new Promise(resolve => setTimeout(resolve, 10))
      }
      await new Promise<void>(resolve => {
        if (session.closed || session.destroyed) {
          resolve()
          return
        }
        const timer = setTimeout(() => { session.destroy() }, graceMs)
        timer.unref()
        session.once('close', () => { clearTimeout(timer); resolve() })
        session.close()
      })
    }))
  }
}

/**
 * Watches TLS_CERT_FILE and TLS_KEY_FILE (stat polling, which follows the
 * symlinks a Kubernetes Secret volume swaps when cert-manager renews) and
 * puts a new pair in service with `setSecureContext`: new handshakes get
 * it, open connections keep theirs. A pair that cannot be read or does not
 * match (the files are written one after the other) is refused, counted and
 * logged, and the previous pair keeps serving until the next change.
 */
export class TlsReloader {
  private current: ListenerTls
  private timer: NodeJS.Timeout | undefined
  private lastRefusal: string | undefined
  private readonly onChange = (now: Stats, before: Stats): void => {
    if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return
    // Both files usually change together: look once both are written.
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.reload() }, 200)
    this.timer.unref()
  }

  constructor (
    private readonly server: TlsServer,
    initial: ListenerTls,
    private readonly metrics: Metrics,
    private readonly logger: Pick<Logger, 'info' | 'warn'>,
    private readonly intervalMs = 1000
  ) {
    this.current = initial
    metrics.tlsNotAfter.set(Math.floor(initial.notAfterMs / 1000))
  }

  start (): void {
    for (const file of [this.current.certFile, this.current.keyFile]) {
      watchFile(file, { interval: this.intervalMs, persistent: false }, this.onChange)
    }
  }

  stop (): void {
    clearTimeout(this.timer)
    unwatchFile(this.current.certFile, this.onChange)
    unwatchFile(this.current.keyFile, this.onChange)
  }

  /** Reads the files again and serves them if they are a new, matching pair. @internal (tests call it). */
  reload (): void {
    const { certFile, keyFile } = this.current
    let next: ListenerTls
    try {
      next = readListenerTls(certFile, keyFile, path => readFileSync(path, 'utf8'))
    } catch (err) {
      const message = (err as Error).message
      this.metrics.tlsReloads.inc({ result: 'refused' })
      // Once per distinct problem: a rotation half done is retried at the next change.
      if (message !== this.lastRefusal) this.logger.warn({ certFile, keyFile, problem: message }, 'new TLS certificate refused; the previous one keeps serving')
      this.lastRefusal = message
      return
    }
    this.lastRefusal = undefined
    if (next.cert === this.current.cert && next.key === this.current.key) return
    this.server.setSecureContext({ cert: next.cert, key: next.key })
    this.current = next
    this.metrics.tlsReloads.inc({ result: 'ok' })
    this.metrics.tlsNotAfter.set(Math.floor(next.notAfterMs / 1000))
    this.logger.info({ certFile, notAfter: new Date(next.notAfterMs).toISOString() }, 'TLS certificate reloaded')
  }
}
