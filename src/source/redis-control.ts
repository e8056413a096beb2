/**
 * The control plane in Redis (README "Control"): every replica enforces
 * what any of them, the CLI or a service wrote, and none has to remember it.
 *
 * State, each key with an expiry (src/core/control.ts names them):
 *  - `<prefix>__gateway:jti:<jti>`: a revoked token, until its `exp`;
 *  - `<prefix>__gateway:user:{<user>}:before`: a user's cut-off (ms),
 *    until no token issued before it can still be valid
 *    (CONTROL_MAX_TOKEN_LIFETIME_MS after it);
 *  - `<prefix>__gateway:user:{<user>}:conn`: the user's open streams, one
 *    lease each (score: its expiry in Redis time), renewed by the replica
 *    that holds the stream; the per-user limit counts them;
 *  - `<prefix>__gateway:presence:{<topic>}`: the streams reading a topic,
 *    leased the same way.
 * Signals: `<prefix>__gateway:control`, a stream (a command is its entry's
 * `data`, JSON) that each replica reads every {@link CONTROL_POLL_MS} with
 * a non-blocking `XREAD` from its last id: a command reaches every replica
 * within that (and after a reconnect: the id is explicit), whatever the
 * live reader, on a Cluster too (one key), and the streams the hub reads
 * are the clients' only.
 *
 * Every script touches the keys of one user (one hash tag) or one key, so
 * all of it works on a Redis Cluster; time is Redis's (`TIME`), so replicas'
 * clocks do not decide whose lease has expired.
 */
import { createHash } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import type { Logger } from 'pino'
import {
  CONTROL_STREAM_MAXLEN, controlKeys, decodeControlSignal, encodeControlSignal, leaseMember, splitLeaseMember,
  type ChannelPresence, type ControlCommand, type PresenceQuery, type UserPresence,
} from '../core/control.js'
import { idMs, type StreamId } from '../core/stream-id.js'
import type { AdmissionRefusal, AdmissionRequest, ControlListener, ControlStore } from './control-store.js'
import { isClusterFactory } from './cluster-connection.js'
import type { RedisConnectionFactory } from './redis-connection.js'

/** A Lua script run by EVALSHA, sent whole once when the server does not know it. */
class Script {
  readonly sha: string
  constructor (readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex')
  }

  async run (client: Redis | Cluster, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args)
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err
      return await client.eval(this.lua, keys.length, ...keys, ...args)
    }
  }
}

const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/**
 * One connect: refused (-1) when the user's cut-off is after the token's
 * `iat` (ARGV[3], '' when none: refused by any cut-off); else, with a cap
 * (ARGV[4] > 0), expired leases go, and the lease is taken only when fewer
 * than the cap remain (-2 otherwise). Atomic: concurrent connects on other
 * replicas cannot all pass a cap only one more fits under.
 * KEYS: leases, cut-off. ARGV: member, lease ms, iat ms (or ''), cap (0: none).
 */
const ADMIT = new Script(`${NOW_MS}
local before = redis.call('GET', KEYS[2])
if before then
  local cut = math.floor(tonumber(before) / 1000) * 1000
  if ARGV[3] == '' or tonumber(ARGV[3]) < cut then return -1 end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[4])
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return -2 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

/** Renews leases (adds them back if they had expired meanwhile) and drops expired ones. KEYS: the set. ARGV: lease ms, members... */
const RENEW = new Script(`${NOW_MS}
local exp = now + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], exp, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`)

/** Live leases of a set: their count and up to ARGV[1] members. KEYS: the set. */
const LIVE = new Script(`${NOW_MS}
local n = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local m = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
return {n, m}`)

/** A user's cut-off moves only forward. KEYS: cut-off. ARGV: before ms, keep until (ms since epoch). */
const CUT_OFF = new Script(`local old = redis.call('GET', KEYS[1])
if old and tonumber(old) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1`)

/**
 * Writes `command` as every replica reads it: its state first (so a
 * replica told of it, or a client reconnecting, finds it), then its signal
 * on the control stream. Used by the gateway's endpoint and by the CLI;
 * any language does the same (README "Control").
 */
export async function writeControl (client: Redis | Cluster, prefix: string, command: ControlCommand, maxTokenLifetimeMs: number): Promise<StreamId> {
  if (command.kind === 'revoke') {
    if ('jti' in command) await client.set(controlKeys.jti(prefix, command.jti), '1', 'PXAT', command.expMs)
    else await CUT_OFF.run(client, [controlKeys.before(prefix, command.user)], [command.beforeMs, command.beforeMs + maxTokenLifetimeMs])
  }
  const id = await client.xadd(controlKeys.stream(prefix), 'MAXLEN', '~', CONTROL_STREAM_MAXLEN, '*', 'data', encodeControlSignal(command))
  return id as StreamId
}

export interface RedisControlOptions {
  readonly connection: RedisConnectionFactory
  readonly keyPrefix: string
  /** CONTROL_LEASE_MS: a stream's lease lasts this long unrenewed (a killed replica's streams are freed within it). */
  readonly leaseMs: number
  /** CONTROL_MAX_TOKEN_LIFETIME_MS */
  readonly maxTokenLifetimeMs: number
  /** PRESENCE_ENABLED: lease topic reads too (one more key per topic per stream). */
  readonly presence: boolean
  readonly logger: Pick<Logger, 'warn' | 'debug'>
}

/** What this replica holds of one admitted stream. */
interface Held {
  readonly user: string | undefined
  readonly member: string
  readonly topics: readonly string[]
}

/** How often each replica reads the control stream: a command reaches every replica within this. */
export const CONTROL_POLL_MS = 250

/** Members per RENEW call, so one script never runs long. */
const RENEW_CHUNK = 500
/**
 * Renewals go out in slices this often, spread over each renewal interval:
 * 10,000 streams renewed at once cost Redis about 110 ms in one burst (and
 * the gateway as long to build and read), which held up every live read and
 * delivery behind it (per-user p99 65 ms in the bench instead of 5).
 */
const RENEW_TICK_MS = 100
/** Entries per read of the control stream. */
const SIGNAL_PAGE = 100

export class RedisControlStore implements ControlStore {
  readonly countsAcrossReplicas = true
  private readonly signalKey: string
  private readonly client: Redis | Cluster
  private readonly held = new Map<string, Held>()
  private listener: ControlListener = () => {}
  /** Last control stream entry read (or where reading starts); undefined before start(). */
  private cursor: StreamId | undefined
  private reading = false
  private timer: NodeJS.Timeout | undefined
  private pollTimer: NodeJS.Timeout | undefined
  private renewFailing = false
  /** The streams of this renewal round, renewed a slice per tick. */
  private round: string[] = []
  private roundAt = 0
  private sliceSize = 0
  private ticksPerRound = 1

  constructor (private readonly opts: RedisControlOptions) {
    this.signalKey = controlKeys.stream(opts.keyPrefix)
    const options = {
      connectionName: 'sse-gateway:control',
      maxRetriesPerRequest: 1,
      commandTimeout: 5000,
      connectTimeout: 5000,
      lazyConnect: true,
    }
    // One connection of its own: a Cluster client routes each script by its keys' slot.
    this.client = isClusterFactory(opts.connection) ? opts.connection.cluster(options) : opts.connection.connect(options)
    this.client.on('error', () => {})
  }

  async start (): Promise<void> {
    // Renew at a third of the lease: two renewals can fail before a live
    // stream's lease lapses. One round per interval, a slice per tick.
    const interval = Math.max(250, Math.floor(this.opts.leaseMs / 3))
    this.ticksPerRound = Math.max(1, Math.floor(interval / RENEW_TICK_MS))
    this.timer = setInterval(() => { this.renewSlice() }, interval / this.ticksPerRound)
    this.timer.unref()
    // Commands from a minute ago on, read without waiting for Redis (which may
    // not answer yet): no stream is open before this, so an old disconnect
    // ends nothing (it ends streams opened before it) and an old revocation
    // ends only what it refuses anyway.
    this.cursor = `${Date.now() - 60_000}-0` as StreamId
    void this.readSignals()
    this.pollTimer = setInterval(() => { void this.readSignals() }, CONTROL_POLL_MS)
    this.pollTimer.unref()
  }

  setListener (listener: ControlListener): void {
    this.listener = listener
  }

  async admit (r: AdmissionRequest): Promise<AdmissionRefusal | undefined> {
    const p = this.opts.keyPrefix
    const member = leaseMember(r.session, r.topics.join(' '))
    // Sent together: one round trip, the jti on its own slot beside the user's script.
    const [revokedJti, verdict] = await Promise.all([
      r.jti === undefined ? undefined : this.client.exists(controlKeys.jti(p, r.jti)),
      r.user === undefined
        ? 0
        : ADMIT.run(this.client, [controlKeys.leases(p, r.user), controlKeys.before(p, r.user)],
          [member, this.opts.leaseMs, r.issuedAtMs ?? '', r.maxPerUser]),
    ])
    const leased = verdict === 1
    if (revokedJti === 1 || verdict === -1) {
      if (leased && r.user !== undefined) void this.client.zrem(controlKeys.leases(p, r.user), member).catch(() => {})
      return 'revoked'
    }
    if (verdict === -2) return 'user-limit'
    this.held.set(r.session, { user: r.user, member, topics: this.opts.presence ? r.topics : [] })
    if (this.opts.presence) {
      const m = leaseMember(r.session, r.user ?? '')
      for (const topic of r.topics) void RENEW.run(this.client, [controlKeys.presence(p, topic)], [this.opts.leaseMs, m]).catch(() => {})
    }
    return undefined
  }

  release (session: string): void {
    const h = this.held.get(session)
    if (h === undefined) return
    this.held.delete(session)
    const p = this.opts.keyPrefix
    // Not awaited: a lease that is not removed expires within CONTROL_LEASE_MS.
    if (h.user !== undefined) void this.client.zrem(controlKeys.leases(p, h.user), h.member).catch(() => {})
    const m = leaseMember(session, h.user ?? '')
    for (const topic of h.topics) void this.client.zrem(controlKeys.presence(p, topic), m).catch(() => {})
  }

  /**
   * The next slice of this round's streams; a new round (every stream held
   * now) once the last one is out. A stream opened during a round holds a
   * fresh lease and is in the next round, within two intervals: under the
   * lease (three).
   */
  private renewSlice (): void {
    if (this.roundAt >= this.round.length) {
      if (this.held.size === 0) return
      this.round = [...this.held.keys()]
      this.roundAt = 0
      this.sliceSize = Math.ceil(this.round.length / this.ticksPerRound)
    }
    const slice = this.round.slice(this.roundAt, this.roundAt + this.sliceSize)
    this.roundAt += this.sliceSize
    void this.renew(slice)
  }

  /** One RENEW per key (per 500 members) for these streams, those still held. */
  private async renew (sessions: readonly string[]): Promise<void> {
    const p = this.opts.keyPrefix
    const byKey = new Map<string, string[]>()
    const add = (key: string, member: string): void => {
      const list = byKey.get(key)
      if (list === undefined) byKey.set(key, [member])
      else list.push(member)
    }
    for (const session of sessions) {
      const h = this.held.get(session)
      if (h === undefined) continue
      if (h.user !== undefined) add(controlKeys.leases(p, h.user), h.member)
      for (const topic of h.topics) add(controlKeys.presence(p, topic), leaseMember(session, h.user ?? ''))
    }
    const calls: Array<Promise<unknown>> = []
    for (const [key, members] of byKey) {
      for (let i = 0; i < members.length; i += RENEW_CHUNK) {
        calls.push(RENEW.run(this.client, [key], [this.opts.leaseMs, ...members.slice(i, i + RENEW_CHUNK)]))
      }
    }
    const failed = (await Promise.allSettled(calls)).filter(r => r.status === 'rejected').length
    // Once per spell of failures (Redis down), not at every renewal.
    if (failed > 0 && !this.renewFailing) this.opts.logger.warn({ failed, keys: calls.length }, 'could not renew stream leases; they expire after CONTROL_LEASE_MS unless a later renewal succeeds')
    this.renewFailing = failed > 0
  }

  async apply (command: ControlCommand): Promise<void> {
    await writeControl(this.client, this.opts.keyPrefix, command, this.opts.maxTokenLifetimeMs)
  }

  /** Reads the control stream from the cursor to its end, one read at a time. */
  private async readSignals (): Promise<void> {
    if (this.reading) return
    this.reading = true
    try {
      if (this.cursor === undefined) return
      for (;;) {
        const reply = await this.client.xread('COUNT', SIGNAL_PAGE, 'STREAMS', this.signalKey, this.cursor) as Array<[string, Array<[string, string[]]>]> | null
        const entries = reply?.[0]?.[1] ?? []
        for (const [id, fields] of entries) {
          this.cursor = id as StreamId
          let data: string | undefined
          for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'data') data = fields[i + 1]
          const command = decodeControlSignal(data)
          if (command === undefined) {
            this.opts.logger.warn({ key: this.signalKey, entryId: id }, 'skipped a control stream entry that is not a control command (README "Control")')
            continue
          }
          try {
            this.listener(command, idMs(id as StreamId))
          } catch (err) {
            this.opts.logger.warn({ err: { message: (err as Error).message } }, 'applying a control command failed')
          }
        }
        if (entries.length < SIGNAL_PAGE) break
      }
    } catch (err) {
      // The next poll reads again from the cursor.
      this.opts.logger.debug({ err: { message: (err as Error).message } }, 'could not read the control stream; retrying')
    } finally {
      this.reading = false
    }
  }

  async presence (q: PresenceQuery): Promise<ChannelPresence | UserPresence> {
    const p = this.opts.keyPrefix
    if ('user' in q) {
      const [n, members] = await LIVE.run(this.client, [controlKeys.leases(p, q.user)], [q.limit]) as [number, string[]]
      const sessions = members.map(m => {
        const [session, rest] = splitLeaseMember(m)
        return { session, channels: [`user:${q.user}`, ...(rest === '' ? [] : rest.split(' ').map(t => `topic:${t}`))] }
      })
      const channels = [...new Set(sessions.flatMap(s => s.channels))]
      return { user: q.user, streams: n, sessions, channels, truncated: n > members.length }
    }
    const channel = q.channel
    if (channel.startsWith('user:')) {
      const user = channel.slice('user:'.length)
      const [n] = await LIVE.run(this.client, [controlKeys.leases(p, user)], [0]) as [number, string[]]
      return { channel, streams: n, users: n > 0 ? [user] : [], truncated: false }
    }
    // Users listed from up to `limit` streams' leases: the count is exact, the list bounded.
    const [n, members] = await LIVE.run(this.client, [controlKeys.presence(p, channel.slice('topic:'.length))], [q.limit]) as [number, string[]]
    const users = [...new Set(members.map(m => splitLeaseMember(m)[1]).filter(u => u !== ''))]
    return { channel, streams: n, users, truncated: n > members.length }
  }

  async close (): Promise<void> {
    clearInterval(this.timer)
    clearInterval(this.pollTimer)
    // Give the leases back now rather than after CONTROL_LEASE_MS.
    for (const session of [...this.held.keys()]) this.release(session)
    await this.client.quit().catch(() => {})
    this.client.disconnect()
  }
}
