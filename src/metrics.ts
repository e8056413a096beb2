/**
 * The gateway's Prometheus metrics. One registry per gateway instance (tests
 * build several in one process). Label values come from closed sets only:
 * never a user id, topic name or key.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

import type { DeliverySource } from './core/protocol.js'

export class Metrics {
  readonly registry = new Registry()
  readonly connectionsOpen: Gauge
  readonly connectionsOpened: Counter<'protocol'>
  readonly connectionsClosed: Counter<'reason' | 'protocol'>
  readonly connectionDuration: Histogram
  readonly subscriptions: Counter<'kind'>
  readonly streamsRead: Gauge
  readonly eventsDelivered: Counter<'source'>
  /** Per-source children, bound once: incremented per session per batch. */
  readonly delivered: Record<DeliverySource, { inc: (n: number) => void }>
  readonly entriesSkipped: Counter<'reason'>
  readonly gaps: Counter<'reason'>
  readonly authFailures: Counter<'reason'>
  readonly requestsRejected: Counter<'code'>
  readonly slowClientPauses: Counter
  readonly slowClientCloses: Counter
  readonly readerErrors: Counter
  readonly redisReconnects: Counter
  readonly xreadSeconds: Histogram
  readonly liveStalls: Counter<'reason'>
  readonly readerMode: Gauge<'mode'>
  readonly masterFlowing: Gauge<'node' | 'feed'>
  readonly readerModeChanges: Counter<'mode' | 'because'>
  readonly dataLost: Counter
  readonly unavailable: Counter<'reason'>
  /** Control commands this replica applied (read from the control stream, or in process), by kind. */
  readonly controlApplied: Counter<'kind'>
  /** Streams this replica ended for a control command, by kind. */
  readonly controlEnded: Counter<'kind'>
  readonly jwksFetches: Counter<'issuer'>
  readonly jwksFetchFailures: Counter<'issuer' | 'reason'>
  readonly ready: Gauge
  readonly tlsReloads: Counter<'result'>
  readonly tlsNotAfter: Gauge
  readonly connectionsLimit: Gauge
  /** Reports readiness at scrape time (set by the app). */
  readyNow: () => boolean = () => false
  readonly deliveryLag: Histogram
  /** Reports the live key count at scrape time (set by the app). */
  streamsReadNow: () => number = () => 0

  constructor (opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry]
    const p = 'sse_gateway_'
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: p })
    this.connectionsOpen = new Gauge({ name: `${p}connections_open`, help: 'SSE connections open now', registers })
    this.connectionsOpened = new Counter({ name: `${p}connections_opened_total`, help: 'SSE streams opened (200 sent), by protocol (h1: HTTP/1.1, h2: HTTP/2)', labelNames: ['protocol'], registers })
    this.connectionsClosed = new Counter({ name: `${p}connections_closed_total`, help: 'SSE streams closed, by reason and protocol (h1, h2)', labelNames: ['reason', 'protocol'], registers })
    this.connectionDuration = new Histogram({
      name: `${p}connection_duration_seconds`,
      help: 'How long SSE streams stayed open',
      buckets: [1, 10, 60, 300, 900, 1800, 3600, 14400, 86400],
      registers,
    })
    this.subscriptions = new Counter({ name: `${p}subscriptions_total`, help: 'Channels subscribed by opened streams, by kind (user, topic)', labelNames: ['kind'], registers })
    const self = this
    this.streamsRead = new Gauge({
      name: `${p}streams_read`,
      help: 'Stream keys this replica reads live',
      registers,
      collect () { this.set(self.streamsReadNow()) },
    })
    // Counted per batch and per stream on the delivery path: a plain tally,
    // added to the counter when it is scraped (cheaper than a counter update
    // per stream per batch in a fan-out).
    const tally = { live: 0, replay: 0 }
    this.eventsDelivered = new Counter({
      name: `${p}events_delivered_total`,
      help: 'Events written to clients, by source (live, replay)',
      labelNames: ['source'],
      registers,
      collect () {
        for (const source of ['live', 'replay'] as const) {
          if (tally[source] > 0) this.inc({ source }, tally[source])
          tally[source] = 0
        }
      },
    })
    this.eventsDelivered.labels('live').inc(0)
    this.eventsDelivered.labels('replay').inc(0)
    this.delivered = {
      live: { inc: n => { tally.live += n } },
      replay: { inc: n => { tally.replay += n } },
    }
    this.entriesSkipped = new Counter({ name: `${p}entries_skipped_total`, help: 'Stream entries skipped for breaking the producer contract, by reason', labelNames: ['reason'], registers })
    this.gaps = new Counter({ name: `${p}gaps_total`, help: 'Gap control events sent, per channel, by reason', labelNames: ['reason'], registers })
    this.authFailures = new Counter({ name: `${p}auth_failures_total`, help: 'Refused connections for authentication or authorization, by reason', labelNames: ['reason'], registers })
    this.requestsRejected = new Counter({ name: `${p}requests_rejected_total`, help: 'Requests answered with an error before the stream opened, by error code', labelNames: ['code'], registers })
    this.slowClientPauses = new Counter({ name: `${p}slow_client_pauses_total`, help: 'Times a session stopped taking live events because its socket was not draining', registers })
    this.slowClientCloses = new Counter({ name: `${p}slow_client_closes_total`, help: 'Sessions closed for not draining within SLOW_CLIENT_TIMEOUT_MS', registers })
    this.readerErrors = new Counter({ name: `${p}redis_reader_errors_total`, help: 'Failed XREAD calls (connection lost, Redis errors)', registers })
    this.redisReconnects = new Counter({ name: `${p}redis_reconnects_total`, help: 'Reconnection attempts of the Redis command connection', registers })
    this.controlApplied = new Counter({ name: `${p}control_applied_total`, help: 'Control commands applied by this replica (disconnect-user, disconnect-session, revoke-jti, revoke-user), whoever gave them', labelNames: ['kind'], registers })
    this.controlEnded = new Counter({ name: `${p}control_streams_ended_total`, help: 'Streams this replica ended for a control command, by kind (disconnect-user, disconnect-session, revoke-jti, revoke-user)', labelNames: ['kind'], registers })
    this.unavailable = new Counter({ name: `${p}unavailable_answers_total`, help: 'New streams told to come back later, by reason (draining, at-capacity, source-unavailable, keys-unavailable, disconnected)', labelNames: ['reason'], registers })
    this.jwksFetches = new Counter({ name: `${p}jwks_fetches_total`, help: 'Fetches of an issuer\'s JWKS key set (JWT_JWKS_URL), by issuer', labelNames: ['issuer'], registers })
    this.jwksFetchFailures = new Counter({ name: `${p}jwks_fetch_failures_total`, help: 'Failed JWKS fetches, by issuer and reason (timeout, network, http-status, too-large, invalid-json, invalid-jwks, no-usable-keys); the last good key set keeps serving', labelNames: ['issuer', 'reason'], registers })
    this.ready = new Gauge({
      name: `${p}ready`,
      help: '1 when this replica is ready (Redis reachable, live reads flowing, not draining), else 0',
      registers,
      collect () { this.set(self.readyNow() ? 1 : 0) },
    })
    this.liveStalls = new Counter({ name: `${p}live_stalls_total`, help: 'Times live reads stopped flowing and the replica became not ready, by reason (reader-error, probe-timeout, probe-error, not-standalone, server-check)', labelNames: ['reason'], registers })
    this.readerMode = new Gauge({ name: `${p}reader_mode`, help: 'The live reader in use: 1 for its mode (block, notify, track; cluster on a Redis Cluster), 0 for the others', labelNames: ['mode'], registers })
    this.readerModeChanges = new Counter({ name: `${p}reader_mode_changes_total`, help: 'Live reader changes after start-up, by new mode and cause (server-setting: notify-keyspace-events or client tracking changed; probe-timeout: notifications or invalidations stopped arriving)', labelNames: ['mode', 'because'], registers })
    this.masterFlowing = new Gauge({ name: `${p}redis_master_flowing`, help: 'Redis Cluster only: per master (host:port) and what feeds it (track: client tracking; notify: keyspace notifications), 1 while its live feed delivers (its probe seen) and its reads answer, else 0; set after each probe', labelNames: ['node', 'feed'], registers })
    this.dataLost = new Counter({ name: `${p}redis_data_lost_total`, help: 'Times Redis came back without the data this replica had read (a new epoch, and streams whose last read entry is gone: restarted without persistence, flushed); their connected clients were told with gateway.gap', registers })
    this.tlsReloads = new Counter({ name: `${p}tls_reloads_total`, help: 'Times the public listener\'s TLS_CERT_FILE or TLS_KEY_FILE changed, by result (ok: the new pair serves; refused: unreadable or not a matching pair, the previous one keeps serving)', labelNames: ['result'], registers })
    this.tlsNotAfter = new Gauge({ name: `${p}tls_certificate_expiry_timestamp_seconds`, help: 'When the public listener\'s certificate in service expires (Unix time, seconds); absent without TLS', registers })
    this.connectionsLimit = new Gauge({ name: `${p}connections_limit`, help: 'MAX_CONNECTIONS of this replica', registers })
    this.deliveryLag = new Histogram({
      name: `${p}delivery_lag_seconds`,
      help: 'From the time in a live entry\'s id (when Redis stored it) to the end of its fan-out to the socket buffers of this replica; one observation per read from Redis, for the entry that waited longest',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    })
    this.xreadSeconds = new Histogram({
      name: `${p}redis_xread_duration_seconds`,
      help: 'XREAD round-trip time, blocking included',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
      registers,
    })
  }
}
