/**
 * Redis Streams as the event source: the Redis engine's read side, composed
 * of a connection factory (redis-connection.ts), one live reader at a time
 * (live-readers.ts: blocking-reader.ts or notify-reader.ts) and the history
 * queries (redis-queries.ts). What is here is what ties them together: the
 * command connection, which reader suits the server, the proof of flow and
 * the epoch.
 *
 * Ordinary commands (XRANGE, XREVRANGE, the wake and probe XADDs) use one
 * command connection, auto-pipelined, separate from the readers' own.
 *
 * The reader: `block` (sharded blocking XREAD) reads any Redis; `notify`
 * (keyspace notifications) reads only the keys that changed, when the
 * server publishes notifications for streams; `track` (client tracking,
 * Redis >= 6, no server setting) reads only the keys that changed too;
 * `auto` takes track where the server gives CLIENT TRACKING to this user,
 * else notify when the server has notifications on (and follows that
 * setting both ways while it runs), else block. On a Redis Cluster
 * (REDIS_CLUSTER_NODES) the reader is always `cluster`, whose feed per
 * master follows READER_MODE (cluster-feed.ts: client tracking, or
 * keyspace notifications with `notify`; `block` reads as `auto`).
 *
 * Live reads must prove they flow (see LiveHealth): every
 * READER_PROBE_INTERVAL_MS a probe entry is written where the live reader
 * must see it (each shard's wake stream; the notify reader's probe stream,
 * through a notification). A probe not seen in time makes the replica not
 * ready; in notify mode it also means notifications stopped (a restart lost
 * a `CONFIG SET notify-keyspace-events`), in track mode that invalidations
 * stopped, and the source falls back to blocking reads. After every reconnect, before any live read, the source
 * checks what the server is (`redis_mode`), which reader suits it, and
 * whether it still holds the data this replica read (the epoch, below).
 *
 * The epoch: `<prefix>__gateway:epoch` holds a random token and the Redis
 * time at which it was written, set once per dataset (`SET NX`), checked
 * after every reconnect and read with every probe. A Redis that comes back
 * without it (restarted without persistence, flushed) may have lost
 * history: each watched key whose last read entry is gone (or that was
 * empty) starts over from 0-0 and its sessions are told (`gateway.gap`,
 * reason `reset`); a cursor older than the epoch's time is checked against
 * it at resume (see Session).
 */
import { randomBytes } from 'node:crypto'
import { Cluster, type Redis } from 'ioredis'
import type { Logger } from 'pino'
import { ZERO_ID, type StreamId } from '../core/stream-id.js'
import type { StallReason } from '../core/protocol.js'
import { LiveHealth, errorSummary } from './live-health.js'
import { sleep, type LiveReader, type LiveReaderOptions, type ReaderHost } from './live-reader.js'
import { LIVE_READERS, type LiveReaderKind } from './live-readers.js'
import { RECONNECT_BASE_MS, RECONNECT_MAX_MS, REQUEST_REPLY, connectionFor, type RedisConnectionFactory } from './redis-connection.js'
import { RedisQueries } from './redis-queries.js'
import { ACL_RULES, isPermanent, isRefused, notificationsCoverStreams, notificationsSeen, readerBySetting, serverMode, serverRunId, trackingAllowed } from './server-check.js'
import { claimEpoch, epochTimeMs } from './epoch.js'
import { isClusterFactory } from './cluster-connection.js'
import type { EntriesListener, RawEntry, ResetListener, SourceState, StreamSource } from './stream-source.js'

export interface RedisSourceOptions {
  /** `redis://`, `rediss://` or `unix:///path/redis.sock`; unused when `connection` is given. */
  readonly url?: string
  /** How to reach Redis; defaults to the factory for `url` (see connectionFor). */
  readonly connection?: RedisConnectionFactory
  readonly keyPrefix: string
  readonly shards: number
  readonly blockMs: number
  /**
   * Blocking reader: most keys listed to Redis per second over all shards
   * (each XREAD lists its shard's every key); a shard waits between reads to
   * stay under it. 0 or unset: no wait.
   */
  readonly maxKeysPerSecond?: number
  readonly count: number
  /** `block`: sharded blocking XREAD; `notify`: keyspace notifications; `track`: client tracking; `auto`: track, else notify, else block. */
  readonly mode: ReaderMode
  readonly logger: Logger
  /** Called after each XREAD with its round-trip time in seconds (metrics). */
  readonly onRead?: (seconds: number) => void
  readonly onReaderError?: () => void
  /** Called each time the command connection starts reconnecting. */
  readonly onReconnect?: () => void
  /**
   * Every this many ms a probe entry proves that live reads flow (see the
   * file header); 0 turns the probe off. Default 5000.
   */
  readonly probeIntervalMs?: number
  /** Live reads stopped flowing (metrics). */
  readonly onStall?: (reason: StallReason) => void
  /** The live reader changed: `to` is the new mode, `because` why (metrics). */
  readonly onModeChange?: (to: LiveReaderKind, because: 'start' | 'server-setting' | 'probe-timeout') => void
  /** Redis lost the data this replica read (a new epoch): metrics. */
  readonly onDataLost?: () => void
  /** A Redis Cluster, after each probe: each master, whether live reads from it flow, and what feeds it (metrics). */
  readonly onMasters?: (masters: ReadonlyArray<readonly [string, boolean, string]>) => void
}

export type ReaderMode = 'auto' | 'block' | 'notify' | 'track'

export { notificationsCoverStreams }

const DEFAULT_PROBE_INTERVAL_MS = 5000
/** How long `auto` waits for a keyspace notification when it cannot read the setting (see notificationsObserved). */
const NOTIFY_CHECK_MS = 1000

/** Probes in a row that must go unseen before live reads count as stopped. */
const PROBE_MISSES = 2

async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`no answer in ${ms} ms`)) }, ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}

/** TLS errors that mean the server's certificate was not trusted or did not match, by code. */
const CERTIFICATE_ERRORS = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_UNTRUSTED|CERT_HAS_EXPIRED|ERR_TLS_CERT_ALTNAME_INVALID)$/
/** The same by Node's message, for errors that carry only the text (ioredis's Sentinel client: "... Last error: <message>"). */
const CERTIFICATE_MESSAGES = /self[- ]signed certificate|unable to verify the first certificate|unable to get (local )?issuer certificate|certificate has expired|certificate is not trusted|does not match certificate's altnames/i
const NAME_MISMATCH = /does not match certificate's altnames/i
/** A TLS client that reached a port that does not speak TLS. */
const NOT_TLS = /wrong version number|packet length too long|ERR_SSL_WRONG_VERSION_NUMBER/i

/**
 * The error under `err`: a Redis Cluster's "Failed to refresh slots cache"
 * carries the last node's (ioredis `lastNodeError`); a Sentinel client's
 * "All sentinels are unreachable ... Last error: <message>" only its text.
 */
function causeOf (err: Error): { error: Error, sentinels: boolean } {
  const last = (err as { lastNodeError?: unknown }).lastNodeError
  if (last instanceof Error) return { error: last, sentinels: false }
  const m = /^All sentinels are unreachable.*? Last error: (.*)$/s.exec(err.message)
  return m !== null ? { error: new Error(m[1]), sentinels: true } : { error: err, sentinels: false }
}

/**
 * What to set when the TLS handshake or the login failed ('' otherwise);
 * `explained`: the error one plain connection found under `err` (see
 * RedisConnectionFactory.explain). The error's own text never holds the password.
 */
function connectHint (err: Error, explained?: Error): string {
  const cause = causeOf(err)
  const sentinels = cause.sentinels
  const error = explained ?? cause.error
  const who = sentinels ? 'the Sentinels\'' : 'the server\'s'
  if (/^(WRONGPASS|NOAUTH)/.test(error.message)) {
    return sentinels
      ? ': the Sentinels refused the login; check their user and password (REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD)'
      : ': Redis refused the login; check the user and password (REDIS_USERNAME, REDIS_PASSWORD or REDIS_PASSWORD_FILE, or those in REDIS_URL)'
  }
  const code = (error as { code?: unknown }).code
  if (NOT_TLS.test(error.message) || code === 'ERR_SSL_WRONG_VERSION_NUMBER') return `: ${sentinels ? 'a Sentinel' : 'the server'} does not speak TLS on that port (use redis:// there, or the port TLS is served on)`
  const byCode = typeof code === 'string' && CERTIFICATE_ERRORS.test(code)
  if (!byCode && !CERTIFICATE_MESSAGES.test(error.message)) return ''
  return code === 'ERR_TLS_CERT_ALTNAME_INVALID' || NAME_MISMATCH.test(error.message)
    ? `: ${who} TLS certificate does not name the host connected to (${error.message}); connect by a name it holds, or set REDIS_TLS_SERVERNAME to that name (a cluster or Sentinels that announce IP addresses)`
    : `: ${who} TLS certificate is not trusted (${error.message}); set REDIS_TLS_CA_FILE to the CA that signed it`
}

/** The log fields of a connection error: its summary, and its cause's when it wraps one. */
function errorFields (err: Error): { err: ReturnType<typeof errorSummary>, cause?: ReturnType<typeof errorSummary> } {
  const { error } = causeOf(err)
  return { err: errorSummary(err), ...(error !== err ? { cause: errorSummary(error) } : {}) }
}

/**
 * The Redis engine's read side (see the file header). Its readers are made
 * from the table in live-readers.ts and get callbacks (ReaderHost), never
 * this object.
 */
export class RedisSource implements StreamSource {
  private readonly cmd: Redis | Cluster
  /** REDIS_CLUSTER_NODES: the command connection routes by slot, and the cluster reader reads. */
  private readonly clustered: boolean
  private readonly queries: RedisQueries
  /** What every live reader is made with (settings, connections, health). */
  private readonly readerOptions: LiveReaderOptions
  private reader: LiveReader | undefined
  /** Watched keys and the id they were watched from. */
  private readonly watched = new Map<string, StreamId>()
  private listener: EntriesListener = () => {}
  private resetListener: ResetListener = () => {}
  /** The live reading strategy in use, once {@link start} has chosen it. */
  mode: LiveReaderKind | undefined
  private wakeFailed = false
  /** INFO, CONFIG GET refused (ACL): said once each. */
  private infoRefused = false
  private configRefused = false
  private epochFailed = false
  private readonly instance = randomBytes(6).toString('hex')
  state: SourceState = 'connecting'
  private readonly health: LiveHealth
  private readonly epochKey: string
  /** The epoch this replica read under (the key's whole value), once known. */
  private epoch: string | undefined
  /** The `run_id` of the server the last check passed on: another one is a restart or a failover. */
  private runId: string | undefined
  /** Redis time (ms) at which the current dataset's epoch was written. */
  epochMs: number | undefined
  /** Pending while the server is being checked after a (re)connect: live reads wait. */
  private gated: Promise<void> | undefined
  private openGate: (() => void) | undefined
  private checking = false
  /** Connections lost so far: a loss during a check makes it run again. */
  private losses = 0
  /** The reader mode the last server check chose. */
  private checkedMode: LiveReaderKind | undefined
  /** Client tracking refused (logged once per refusal). */
  private trackingRefused = false
  private closed = false
  private probeTimer: NodeJS.Timeout | undefined
  /** Bumped to retire a probe loop when a new one starts. */
  private probeRound = 0
  private probeMisses = 0
  /** Notifications did not arrive although the setting claimed them (until the next reconnect). */
  private notificationsFailed = false
  private readonly probeIntervalMs: number

  constructor (private readonly opts: RedisSourceOptions) {
    this.health = new LiveHealth({ logger: opts.logger, onStall: opts.onStall })
    this.epochKey = `${opts.keyPrefix}__gateway:epoch`
    this.probeIntervalMs = opts.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS
    const connection = opts.connection ?? connectionFor(opts.url ?? 'redis://127.0.0.1:6379')
    const commands = { ...REQUEST_REPLY, connectionName: 'sse-gateway:commands', enableAutoPipelining: true }
    this.clustered = isClusterFactory(connection)
    this.cmd = isClusterFactory(connection) ? connection.cluster(commands) : connection.connect(commands)
    this.queries = new RedisQueries(this.cmd, opts.keyPrefix)
    this.readerOptions = {
      connection,
      keyPrefix: opts.keyPrefix,
      instance: this.instance,
      db: this.cmd instanceof Cluster ? 0 : this.cmd.options.db ?? 0,
      shards: opts.shards,
      blockMs: opts.blockMs,
      maxKeysPerSecond: opts.maxKeysPerSecond ?? 0,
      count: opts.count,
      mode: opts.mode,
      logger: opts.logger,
      health: this.health,
      onRead: opts.onRead,
      onReaderError: opts.onReaderError,
    }
    this.cmd.on('ready', () => {
      if (this.state !== 'ready') opts.logger.info('redis ready')
      this.state = 'ready'
    })
    this.cmd.on('error', (err: Error) => {
      if (this.state !== 'down') {
        const hint = connectHint(err)
        // A cluster that no seed answered, or Sentinels that none answered,
        // say only "Connection is closed" (ioredis drops the errors of the
        // connections it asks them on): one plain connection tells why.
        if (hint !== '' || connection.explain === undefined) opts.logger.error(errorFields(err), `redis unreachable${hint}`)
        else {
          void connection.explain().catch(() => undefined).then(why => {
            opts.logger.error({ ...errorFields(err), ...(why !== undefined ? { explained: errorSummary(why) } : {}) }, `redis unreachable${why !== undefined ? connectHint(err, why) : ''}`)
          })
        }
      }
      this.state = 'down'
    })
    if (this.cmd instanceof Cluster) {
      // A node the cluster named that cannot be reached (its certificate, its
      // login, a master down) fails only that node's commands: said once per
      // node and error, and again when it changes.
      const said = new Map<string, string>()
      this.cmd.on('node error', (err: Error, address: string) => {
        const text = `${(err as { code?: unknown }).code ?? ''} ${err.message}`
        if (said.get(address) === text) return
        said.set(address, text)
        opts.logger.error({ node: address, ...errorFields(err) }, `redis cluster node ${address} unreachable${connectHint(err)}`)
      })
      this.cmd.on('-node', (_redis: unknown, address: string) => { said.delete(address) })
    }
    this.cmd.on('close', () => { this.connectionLost() })
    this.cmd.on('end', () => { this.state = 'down' })
    this.cmd.on('reconnecting', () => { opts.onReconnect?.() })
  }

  /** Why live reads do not flow now, or undefined when they do (readiness). */
  get liveReason (): string | undefined {
    const reason = this.health.reason
    // A Redis Cluster: which master (see ClusterReader.trouble).
    if (reason === 'probe-timeout' || reason === 'reader-error') return this.reader?.trouble?.() ?? reason
    return reason
  }

  /**
   * A Redis Cluster: what feeds each master's live reads (`track`, or
   * `notify` asked for or where tracking is refused), for readiness, in
   * the form of {@link liveReason}: `track 10.0.0.11:6379,10.0.0.12:6379;
   * notify 10.0.0.13:6379`. Undefined elsewhere, and before the slot map.
   */
  get feeds (): string | undefined {
    const nodes = this.clustered ? this.reader?.nodes?.() : undefined
    if (nodes === undefined || nodes.length === 0) return undefined
    const byFeed = new Map<string, string[]>()
    for (const [node, , feed] of nodes) byFeed.set(feed, [...(byFeed.get(feed) ?? []), node])
    return [...byFeed].sort(([a], [b]) => b.localeCompare(a)).map(([feed, list]) => `${feed} ${list.sort().join(',')}`).join('; ')
  }

  /**
   * Checks the server, chooses the live reader and starts the proof of flow.
   * With `auto`, the reader follows keyspace notifications when the server
   * has them on for streams (CONFIG GET, which managed Redis may refuse:
   * then sharded blocking reads, which work everywhere). A Redis that does
   * not answer within 3 s does not hold the start: the check runs when it
   * does, and live reads wait for it.
   */
  async start (): Promise<void> {
    if (this.reader !== undefined) return
    // As after a reconnect: the first server check, with live reads held.
    this.connectionLost()
    try {
      await withTimeout(this.gated ?? Promise.resolve(), 3000)
    } catch {
      this.opts.logger.info('Redis does not answer yet; live reads start once it does and the server is checked')
    }
    this.useReader(this.checkedMode ?? (this.clustered ? 'cluster' : this.opts.mode === 'notify' || this.opts.mode === 'track' ? this.opts.mode : 'block'), 'start')
    this.startProbing()
  }

  /**
   * After a (re)connect, before any live read: what the server is, whether
   * it still holds the data read so far (the epoch), and which live reader
   * suits it. Resolves with the reader mode to use.
   */
  private async checkServer (): Promise<LiveReaderKind> {
    const mode = await serverMode(this.cmd, err => {
      if (this.infoRefused) return
      this.infoRefused = true
      this.opts.logger.warn({ err: errorSummary(err), grant: ACL_RULES.info() }, `Redis refused INFO: the gateway cannot tell a Cluster node or a Sentinel from a standalone Redis (the probe still proves that reads flow); grant ${ACL_RULES.info()}`)
    })
    if (this.clustered) return await this.checkCluster(mode)
    this.health.serverMode(mode)
    // A Cluster node or a Sentinel: not readable by this version, and not
    // ready (LiveHealth says why); nothing more to check.
    if (mode !== undefined && mode !== 'standalone') return 'block'
    const runId = await serverRunId(this.cmd)
    const newEpoch = await this.checkEpoch()
    if (!newEpoch && runId !== undefined && this.runId !== undefined && runId !== this.runId) await this.checkPositions()
    this.runId = runId
    if (this.opts.mode === 'block') return 'block'
    if ((this.opts.mode === 'auto' || this.opts.mode === 'track') && await this.trackingGiven()) return 'track'
    const wanted = await this.modeBySetting()
    // Unknown (CONFIG refused): `notify` keeps what it has (notify at start;
    // the probe tells if notifications do not come), `auto` reads by
    // notifications if one is seen to arrive (Memorystore: no CONFIG, no
    // CLIENT, notifications set in its console), else by blocking.
    if (wanted === undefined && this.opts.mode === 'auto') return await this.notificationsObserved() ? 'notify' : 'block'
    return wanted ?? (this.opts.mode === 'notify' ? this.mode ?? 'notify' : 'block')
  }

  /**
   * Whether the server gives client tracking to this user (see
   * trackingAllowed); a refusal is logged once, naming the missing rule,
   * and the reader falls back to notify or block.
   */
  private async trackingGiven (): Promise<boolean> {
    const given = await trackingAllowed(this.cmd, err => {
      if (this.trackingRefused) return
      this.trackingRefused = true
      const grant = ACL_RULES.track()
      const message = `client tracking refused (Redis older than 6, or an ACL without it: grant ${grant}): live reads use keyspace notifications where the server has them on, else sharded blocking XREAD`
      if (this.opts.mode === 'track') this.opts.logger.error({ err: errorSummary(err), grant }, message)
      else this.opts.logger.warn({ err: errorSummary(err), grant }, message)
    })
    if (given) this.trackingRefused = false
    return given
  }

  /**
   * REDIS_CLUSTER_NODES: the cluster reader, after the epoch and, since a
   * failover can promote a replica that lacks the newest entries
   * (asynchronous replication), a look at every watched key's last read
   * entry: one that is gone starts the key over, and its clients are told
   * (`gateway.gap`, reason `reset`).
   */
  private async checkCluster (mode: string | undefined): Promise<LiveReaderKind> {
    this.health.serverMode(mode === 'cluster' || mode === undefined ? undefined : mode)
    await this.checkEpoch(true)
    return 'cluster'
  }

  /**
   * Whether keyspace notifications for streams arrive, for `auto` on a Redis
   * that refuses CONFIG GET and client tracking (see notificationsSeen): a
   * subscriber of its own for the check, closed after it. Said when seen.
   */
  private async notificationsObserved (): Promise<boolean> {
    const sub = this.readerOptions.connection.connect({ connectionName: 'sse-gateway:notify-check', maxRetriesPerRequest: 1, autoResubscribe: false })
    sub.on('error', () => { /* an outage fails the check, which runs again */ })
    try {
      const key = `${this.opts.keyPrefix}__gateway:notify-check:${this.instance}`
      const seen = await notificationsSeen(sub, key, this.readerOptions.db, async k => await this.append(k), NOTIFY_CHECK_MS)
      if (seen && this.mode !== 'notify') this.opts.logger.info('keyspace notifications for streams arrive (seen, since CONFIG GET is refused): live reads by notifications')
      return seen
    } finally {
      sub.disconnect()
    }
  }

  /** The reader the server's setting calls for (see readerBySetting). */
  private async modeBySetting (): Promise<'block' | 'notify' | undefined> {
    return await readerBySetting(this.cmd, err => {
      if (this.configRefused) return
      this.configRefused = true
      const grant = ACL_RULES.config()
      const fields = { err: errorSummary(err), ...(isRefused(err) ? { grant } : {}) }
      const why = isRefused(err) ? `Redis refused CONFIG GET (grant ${grant})` : 'this Redis has no CONFIG GET (managed Redis)'
      if (this.opts.mode === 'auto') this.opts.logger.warn(fields, `cannot read notify-keyspace-events: ${why}; live reads use keyspace notifications if they are seen to arrive, else sharded blocking XREAD`)
      else this.opts.logger.info(fields, `cannot read notify-keyspace-events: ${why}; reading by keyspace notifications as READER_MODE=notify asks (the probe tells if none arrive)`)
    })
  }

  /**
   * Between reconnects, with each probe: the reader follows the setting both
   * ways (an operator who turns notifications off, or back on with CONFIG
   * SET, needs no restart). Not back to notify after notifications failed to
   * arrive although the setting claimed them: that waits for a reconnect.
   */
  private async followSetting (): Promise<void> {
    if (this.opts.mode === 'block' || this.reader === undefined || this.mode === 'track' || this.clustered) return
    const wanted = await this.modeBySetting().catch(() => undefined)
    if (wanted === undefined || wanted === this.mode || this.gated !== undefined || this.closed) return
    if (wanted === 'notify' && this.notificationsFailed) return
    this.useReader(wanted, 'server-setting')
  }

  /**
   * Sets the epoch if the dataset has none (see claimEpoch) and compares it
   * with the one this replica read under. A different one (or none where one was) means Redis may have lost
   * data: each watched key whose last read entry is gone, or that was still
   * empty, starts over from 0-0, and its sessions are told. A key whose
   * entry is still there lost nothing (the epoch alone was evicted or
   * deleted): its sessions read on, with no duplicate.
   */
  private async checkEpoch (cursorsToo = false): Promise<boolean> {
    let epoch: string
    try {
      epoch = await claimEpoch(this.cmd, this.epochKey)
    } catch (err) {
      if (!isPermanent(err)) throw err
      if (!this.epochFailed) {
        this.epochFailed = true
        const grant = ACL_RULES.epoch(this.opts.keyPrefix)
        this.opts.logger.error({ err: errorSummary(err), key: this.epochKey, ...(isRefused(err) ? { grant } : {}) }, `cannot keep the epoch, so a Redis that loses its data (a restart without persistence) cannot be told to clients: ${isRefused(err) ? `grant ${grant}` : 'point REDIS_URL at a primary'}`)
      }
      return false
    }
    this.epochFailed = false
    const epochMs = epochTimeMs(epoch)
    const before = this.epoch
    const changed = before !== undefined && before !== epoch
    if (changed || (cursorsToo && before !== undefined)) {
      // Until the resets are done the old epoch stays: a check that fails
      // half-way runs again and still sees the change.
      const lost: string[] = []
      await Promise.all([...(this.reader?.positions() ?? this.watched)].map(async ([key, id]) => {
        // Same epoch (a failover): an empty key lost nothing we know of.
        if (id === ZERO_ID ? changed : !(await this.has(key, id))) lost.push(key)
      }))
      // Keys whose last session left during those reads are not watched again.
      const reset = lost.filter(key => this.watched.has(key))
      if (reset.length > 0) {
        this.opts.logger.error({ key: this.epochKey, streams: this.watched.size, lost: reset.length }, 'Redis lost its data (its epoch changed: restarted without persistence, flushed, or replaced): the streams whose last read entry is gone start over, and their clients are told with gateway.gap (reason reset)')
        this.opts.onDataLost?.()
        for (const key of reset) {
          this.watched.set(key, ZERO_ID)
          this.reader?.add(key, ZERO_ID)
        }
        this.resetListener(reset)
      } else if (changed) {
        this.opts.logger.info({ key: this.epochKey, streams: this.watched.size }, 'the epoch key was replaced (evicted or deleted), but every stream still holds its last read entry: nothing was lost')
      }
    }
    this.epoch = epoch
    this.epochMs = epochMs
    return before !== undefined && before !== epoch
  }

  /**
   * Another server under the same epoch (a failover, or a restart with
   * persistence): the dataset is the one read so far, but a promoted replica
   * may lack the newest entries (asynchronous replication). Each watched key
   * whose last read entry is gone goes back to the newest entry the server
   * still holds before it (0-0 if none), and the sessions past it are told
   * (`gateway.gap`, reason `reset`); what the server writes next is read
   * from there, even with a clock behind the old master's.
   */
  private async checkPositions (): Promise<void> {
    const from = new Map<string, StreamId>()
    await Promise.all([...(this.reader?.positions() ?? this.watched)].map(async ([key, id]) => {
      if (id === ZERO_ID) return
      const kept = await this.queries.newestUpTo(key, id)
      if (kept !== id) from.set(key, kept ?? ZERO_ID)
    }))
    // Keys whose last session left during those reads are not watched again.
    const reset = [...from.keys()].filter(key => this.watched.has(key))
    if (reset.length === 0) {
      this.opts.logger.info({ streams: this.watched.size }, 'Redis is another server now (a failover or a restart), and every stream still holds its last read entry: nothing was lost')
      return
    }
    this.opts.logger.error({ streams: this.watched.size, lost: reset.length }, 'Redis is another server now (a failover or a restart) and lacks the newest entries read from the old one (asynchronous replication lost them): those streams go back to the newest entry it holds, and their clients are told with gateway.gap (reason reset)')
    this.opts.onDataLost?.()
    for (const key of reset) {
      const to = from.get(key) as StreamId
      this.watched.set(key, to)
      this.reader?.add(key, to)
    }
    this.resetListener(reset, from)
  }

  /** Any connection dropped: Redis may have restarted; no live read until the server is checked again. */
  private connectionLost (): void {
    if (this.closed) return
    this.losses++
    if (this.gated === undefined) this.gated = new Promise<void>(resolve => { this.openGate = resolve })
    if (!this.checking) void this.recheck()
  }

  /** Runs the server check until it passes with no connection lost meanwhile, then lets live reads go on. */
  private async recheck (): Promise<void> {
    this.checking = true
    // The first check at start-up is not a stall: the replica is not serving yet.
    const first = this.reader === undefined
    if (!first) this.health.checking(true)
    let backoff = RECONNECT_BASE_MS
    let logged = false
    try {
      while (!this.closed) {
        const losses = this.losses
        if (this.state !== 'ready') {
          await this.ready(1000).catch(() => {})
          continue
        }
        try {
          const mode = await this.checkServer()
          if (this.losses !== losses) continue
          this.checkedMode = mode
          this.notificationsFailed = false
          if (this.reader !== undefined && mode !== this.mode) this.useReader(mode, 'server-setting')
          break
        } catch (err) {
          if (this.closed) return
          // Worth a line when connected: an outage is reported already.
          if (!logged && this.state === 'ready') {
            logged = true
            this.opts.logger.warn({ err: errorSummary(err) }, 'cannot check the Redis server after a reconnect; live reads wait, retrying')
          }
          await sleep(backoff)
          backoff = Math.min(backoff * 2, RECONNECT_MAX_MS)
        }
      }
    } finally {
      this.checking = false
      this.health.checking(false)
      const open = this.openGate
      this.gated = undefined
      this.openGate = undefined
      open?.()
    }
    // Prove the flow again now rather than at the next interval: readiness
    // comes back as soon as reads do.
    if (!this.closed && this.reader !== undefined) this.startProbing()
  }

  /** Replaces the live reader (or makes the first): the new one starts where the old one got to. */
  private useReader (mode: LiveReaderKind, because: 'start' | 'server-setting' | 'probe-timeout'): void {
    const old = this.reader
    const previous = this.mode
    const reader: LiveReader = LIVE_READERS[mode](this.readerOptions, this.hostFor(() => this.reader === reader))
    const positions = new Map(old?.positions() ?? this.watched)
    this.reader = reader
    this.mode = mode
    for (const key of this.watched.keys()) reader.add(key, positions.get(key) ?? this.watched.get(key) as StreamId)
    if (old !== undefined) {
      void old.close()
      const message = because === 'probe-timeout'
        ? previous === 'track'
          ? 'client-tracking invalidations stopped arriving (is SUBSCRIBE to __redis__:invalidate refused?): live reads now use sharded blocking XREAD until the next reconnect'
          : 'keyspace notifications stopped arriving (was notify-keyspace-events lost in a restart?): live reads now use sharded blocking XREAD'
        : mode === 'track'
          ? 'live reads now use client tracking: the server gives CLIENT TRACKING again'
          : `live reads now use ${mode === 'notify' ? 'keyspace notifications' : 'sharded blocking XREAD'}: the server's notify-keyspace-events ${mode === 'notify' ? 'covers' : 'no longer covers'} streams`
      if (mode === 'block') this.opts.logger.error({ from: previous, to: mode, because }, message)
      else this.opts.logger.info({ from: previous, to: mode, because }, message)
    } else {
      if (mode === 'cluster' && this.opts.mode === 'block') this.opts.logger.warn({ mode: this.opts.mode }, 'READER_MODE=block has no Redis Cluster reader (a multi-key XREAD needs one slot): live reads follow a feed per master as with auto (client tracking, else keyspace notifications)')
      this.opts.logger.info({ mode }, mode === 'cluster'
        ? `live reads follow a Redis Cluster: one ${this.opts.mode === 'notify' ? 'keyspace-notification' : 'client-tracking'} feed per master, single-key XREADs routed by slot`
        : mode === 'track'
          ? 'live reads follow client-tracking invalidations (CLIENT TRACKING, no server setting)'
          : mode === 'notify'
            ? 'live reads follow keyspace notifications (notify-keyspace-events covers streams)'
            : this.opts.mode === 'auto'
              ? 'live reads use sharded blocking XREAD; for many per-user channels enable keyspace notifications (CONFIG SET notify-keyspace-events Kt) so only changed keys are read'
              : 'live reads use sharded blocking XREAD')
    }
    this.opts.onModeChange?.(mode, because)
  }

  private hostFor (current: () => boolean): ReaderHost {
    return {
      emit: (key, entries) => {
        // A replaced reader's last reads are dropped: the new one reads them again.
        if (current()) this.listener(key, entries)
      },
      gate: () => this.gated,
      connectionLost: () => { if (current()) this.connectionLost() },
      append: async key => await this.append(key),
    }
  }

  /**
   * The proof of flow, every probeIntervalMs: the live reader must read an
   * entry written now within the interval (plus the blocking reader's pacing
   * wait). PROBE_MISSES in a row make live reads count as stopped; in notify
   * mode, while the reads themselves answer, that means notifications
   * stopped: fall back to blocking reads. Each probe also rereads the epoch,
   * so a Redis flushed without a reconnect is caught too.
   */
  private startProbing (): void {
    if (this.probeIntervalMs <= 0 || this.closed) return
    clearTimeout(this.probeTimer)
    const round = ++this.probeRound
    this.scheduleProbe(round, 0)
  }

  private scheduleProbe (round: number, delayMs: number): void {
    if (this.closed || round !== this.probeRound) return
    this.probeTimer = setTimeout(() => { void this.runProbe(round) }, delayMs)
    this.probeTimer.unref()
  }

  private async runProbe (round: number): Promise<void> {
    const reader = this.reader
    if (reader === undefined || this.closed) return
    const current = (): boolean => round === this.probeRound && this.reader === reader && !this.closed
    if (this.state !== 'ready' || this.gated !== undefined) {
      // Not connected, or being checked: readiness already says so.
      this.scheduleProbe(round, this.probeIntervalMs)
      return
    }
    // A blocked read wakes at once for the probe, but a shard may first wait
    // out its share of the key budget (Pacing): about watched keys / budget.
    const budget = this.opts.maxKeysPerSecond ?? 0
    const pacingMs = this.mode === 'block' && budget > 0 ? this.watched.size * 1000 / budget : 0
    const timeoutMs = Math.max(this.probeIntervalMs, 1000) + pacingMs
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>(resolve => {
      timer = setTimeout(() => { resolve('timeout') }, timeoutMs)
      timer.unref()
    })
    try {
      const [outcome, epoch] = await Promise.all([
        Promise.race([reader.probe().then(() => 'seen' as const), timedOut]),
        // Bounded like the probe: a frozen Redis must not hold the outcome
        // for the command timeout (a reader fed by the server's signals has
        // no blocked read of its own that would fail first).
        this.epochFailed ? Promise.resolve(this.epoch) : withTimeout(this.cmd.get(this.epochKey), timeoutMs).catch(() => this.epoch),
      ])
      if (!current()) return
      if (epoch !== this.epoch && this.epoch !== undefined) {
        // Flushed (or the epoch deleted) with no reconnect: check as after one.
        this.connectionLost()
        return
      }
      const nodes = reader.nodes?.()
      if (nodes !== undefined) this.opts.onMasters?.(nodes)
      if (outcome === 'seen') {
        this.probeMisses = 0
        this.health.probed(undefined)
      } else if (this.gated === undefined && this.state === 'ready' && ++this.probeMisses >= PROBE_MISSES) {
        this.health.probed('probe-timeout')
        if ((this.mode === 'notify' || this.mode === 'track') && this.health.reason === 'probe-timeout') {
          this.probeMisses = 0
          this.notificationsFailed = true
          this.useReader('block', 'probe-timeout')
        }
      }
    } catch (err) {
      if (!current()) return
      if (isRefused(err)) {
        // The probe needs XADD under the prefix, as the wake streams do.
        const grant = ACL_RULES.wake(this.opts.keyPrefix)
        this.opts.logger.warn({ err: errorSummary(err), grant }, `cannot write the probe stream: readiness cannot prove that live reads flow (grant ${grant})`)
        this.health.probed(undefined)
        return
      }
      // Not connected: the connection state already says so.
      if (this.state === 'ready' && this.gated === undefined) this.health.probed('probe-error', err)
    } finally {
      clearTimeout(timer)
    }
    if (current()) await this.followSetting()
    this.scheduleProbe(round, this.probeIntervalMs)
  }

  /** Resolves when the command connection is ready (or rejects after `ms`). */
  async ready (ms = 10000): Promise<void> {
    if (this.state === 'ready') return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error(`Redis not ready after ${ms} ms`)) }, ms)
      timer.unref()
      const onReady = (): void => { cleanup(); resolve() }
      const cleanup = (): void => { clearTimeout(timer); this.cmd.off('ready', onReady) }
      this.cmd.on('ready', onReady)
    })
  }

  get watchedKeys (): number {
    return this.watched.size
  }

  setListener (listener: EntriesListener): void {
    this.listener = listener
  }

  setResetListener (listener: ResetListener): void {
    this.resetListener = listener
  }

  /** XADD to a wake or probe stream (MAXLEN 1, expiring): its id. */
  private async append (key: string): Promise<StreamId> {
    try {
      const reply = await this.cmd.multi()
        .xadd(key, 'MAXLEN', '1', '*', 'w', '1')
        .pexpire(key, 60000)
        .exec()
      const [err, id] = reply?.[0] ?? [new Error('no reply'), undefined]
      if (err !== null && err !== undefined) throw err
      return id as StreamId
    } catch (err) {
      if (!this.wakeFailed && isRefused(err)) {
        this.wakeFailed = true
        const grant = ACL_RULES.wake(this.opts.keyPrefix)
        this.opts.logger.warn({ err: errorSummary(err), grant }, `cannot write the wake stream ${key}: new keys are read within READER_BLOCK_MS instead of at once (grant ${grant})`)
      }
      throw err
    }
  }

  watch (key: string, afterId: StreamId): void {
    this.watched.set(key, afterId)
    this.reader?.add(key, afterId)
  }

  unwatch (key: string): void {
    if (!this.watched.delete(key)) return
    this.reader?.remove(key)
  }

  async tail (key: string): Promise<StreamId | undefined> {
    return await this.queries.tail(key)
  }

  async head (key: string): Promise<StreamId | undefined> {
    return await this.queries.head(key)
  }

  async newestIds (key: string, count: number): Promise<StreamId[]> {
    return await this.queries.newestIds(key, count)
  }

  async range (key: string, afterId: StreamId, count: number): Promise<RawEntry[]> {
    return await this.queries.range(key, afterId, count)
  }

  async entriesRemoved (key: string): Promise<number | undefined> {
    return await this.queries.entriesRemoved(key)
  }

  async has (key: string, id: StreamId): Promise<boolean> {
    return await this.queries.has(key, id)
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.probeTimer)
    const open = this.openGate
    this.gated = undefined
    open?.()
    await this.reader?.close()
    this.cmd.disconnect()
    this.state = 'down'
  }
}
