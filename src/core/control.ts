/**
 * The control plane's words: what an operator or a service can ask of every
 * replica (end a user's or one session's streams, revoke a token by `jti`,
 * refuse a user's tokens issued before a time), how that is written to
 * Redis (the keys, the control stream's entry), and which sessions a
 * signal ends. Pure: no I/O. The Redis writes are in
 * src/source/redis-control.ts, the in-process ones in memory-control.ts.
 */
import { isValidSubject } from './channels.js'

/**
 * One control command, as the endpoint, the CLI and the control stream
 * carry it:
 *  - `disconnect` with `user`: end every stream of that user (they may come back);
 *  - `disconnect` with `session`: end that one stream (it may come back);
 *  - `revoke` with `jti` (and the token's `exp`): end the streams opened
 *    with that token and refuse it until `exp`;
 *  - `revoke` with `user` (and `before`, ms): end the user's streams whose
 *    token was issued before `before` and refuse those tokens.
 */
export type ControlCommand =
  | { readonly kind: 'disconnect', readonly user: string }
  | { readonly kind: 'disconnect', readonly session: string }
  | { readonly kind: 'revoke', readonly jti: string, readonly expMs: number }
  | { readonly kind: 'revoke', readonly user: string, readonly beforeMs: number }

/** The label of a command on `sse_gateway_control_applied_total` and in logs. */
export type ControlKind = 'disconnect-user' | 'disconnect-session' | 'revoke-jti' | 'revoke-user'

export function controlKind (c: ControlCommand): ControlKind {
  if (c.kind === 'disconnect') return 'user' in c ? 'disconnect-user' : 'disconnect-session'
  return 'jti' in c ? 'revoke-jti' : 'revoke-user'
}

/** A bad control request: the message says what to fix (never echoes a secret). */
export class ControlRequestError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ControlRequestError'
  }
}

/** Session ids are the gateway's UUIDs, as its logs (`session`) and presence show them. */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** A `jti` is opaque text: printable, no spaces, up to 256 characters. */
const JTI = /^[\x21-\x7e]{1,256}$/

/** A `before` more than this far ahead of now is taken for a mistake (seconds for ms, a wrong year). */
const MAX_FUTURE_MS = 60_000

/**
 * A time as a request gives it: Unix milliseconds, an ISO 8601 date, or
 * `now`. Undefined when it is none of them.
 */
export function parseControlTime (value: unknown, nowMs: number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined
  if (typeof value !== 'string') return undefined
  if (value === 'now') return nowMs
  if (/^\d{1,15}$/.test(value)) return Number(value)
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const ms = Date.parse(value)
    return Number.isFinite(ms) ? ms : undefined
  }
  return undefined
}

export interface ControlLimits {
  readonly nowMs: number
  /** CONTROL_MAX_TOKEN_LIFETIME_MS: a `jti` revocation without `exp` lasts this long. */
  readonly maxTokenLifetimeMs: number
}

/**
 * A command from a request body (the endpoint's JSON, the CLI's options):
 * `kind` and exactly one target, each checked, or a {@link ControlRequestError}.
 */
export function parseControlCommand (body: unknown, limits: ControlLimits): ControlCommand {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ControlRequestError('The body must be a JSON object: {"user":"42"}, {"session":"<id>"}, {"jti":"<jti>","exp":<s>} or {"user":"42","before":"now"}.')
  }
  const b = body as Record<string, unknown>
  const kind = b.kind
  if (kind !== 'disconnect' && kind !== 'revoke') throw new ControlRequestError('`kind` must be "disconnect" or "revoke".')
  const targets = (['user', 'session', 'jti'] as const).filter(k => b[k] !== undefined)
  const allowed = kind === 'disconnect' ? ['user', 'session', 'before'] : ['user', 'jti', 'exp', 'before']
  for (const k of Object.keys(b)) {
    if (k !== 'kind' && !allowed.includes(k)) throw new ControlRequestError(`\`${k}\` does not apply to ${kind}: give ${allowed.map(a => `\`${a}\``).join(', ')}.`)
  }
  if (targets.length !== 1) {
    throw new ControlRequestError(kind === 'disconnect' ? 'Give one of `user` or `session`.' : 'Give one of `jti` (with `exp`) or `user` (with `before`).')
  }
  if (b.user !== undefined && (typeof b.user !== 'string' || !isValidSubject(b.user))) {
    throw new ControlRequestError('`user` must be a token `sub`: a string of 1 to 256 characters with no control characters.')
  }
  if (kind === 'disconnect') {
    if (b.before !== undefined) throw new ControlRequestError('`before` applies to revoke: a disconnect ends streams and refuses nothing.')
    if (b.user !== undefined) return { kind, user: b.user as string }
    if (typeof b.session !== 'string' || !SESSION_ID.test(b.session)) {
      throw new ControlRequestError('`session` must be a session id as the logs (`session`) and presence show it: a lowercase UUID.')
    }
    return { kind, session: b.session }
  }
  if (b.jti !== undefined) {
    if (typeof b.jti !== 'string' || !JTI.test(b.jti)) throw new ControlRequestError('`jti` must be 1 to 256 printable characters with no spaces.')
    if (b.before !== undefined) throw new ControlRequestError('`before` goes with `user`, not `jti`.')
    let expMs = limits.nowMs + limits.maxTokenLifetimeMs
    if (b.exp !== undefined) {
      // `exp` as the token has it: seconds since the epoch.
      if (typeof b.exp !== 'number' || !Number.isSafeInteger(b.exp) || b.exp <= 0) throw new ControlRequestError('`exp` must be the token\'s `exp` claim: whole seconds since the epoch.')
      expMs = b.exp * 1000
    }
    if (expMs <= limits.nowMs) throw new ControlRequestError('`exp` is in the past: that token is refused already (it expired).')
    return { kind, jti: b.jti, expMs }
  }
  if (b.exp !== undefined) throw new ControlRequestError('`exp` goes with `jti`, not `user`.')
  const beforeMs = b.before === undefined ? limits.nowMs : parseControlTime(b.before, limits.nowMs)
  if (beforeMs === undefined) throw new ControlRequestError('`before` must be "now", Unix milliseconds or an ISO 8601 date (2026-11-23T10:00:00Z).')
  if (beforeMs > limits.nowMs + MAX_FUTURE_MS) throw new ControlRequestError('`before` is more than a minute ahead: give a time up to now (Unix milliseconds, not seconds).')
  return { kind, user: b.user as string, beforeMs }
}

/** The control stream's `data` field: the command as JSON, `exp`/`before` in ms. */
export function encodeControlSignal (c: ControlCommand): string {
  return JSON.stringify(c)
}

/** The command in a control stream entry's `data`, or undefined for anything else (logged and skipped). */
export function decodeControlSignal (data: string | undefined): ControlCommand | undefined {
  if (data === undefined) return undefined
  let v: unknown
  try { v = JSON.parse(data) } catch { return undefined }
  if (typeof v !== 'object' || v === null) return undefined
  const o = v as Record<string, unknown>
  const str = (x: unknown): x is string => typeof x === 'string' && x.length > 0
  if (o.kind === 'disconnect' && str(o.user)) return { kind: 'disconnect', user: o.user }
  if (o.kind === 'disconnect' && str(o.session)) return { kind: 'disconnect', session: o.session }
  if (o.kind === 'revoke' && str(o.jti)) return { kind: 'revoke', jti: o.jti, expMs: typeof o.expMs === 'number' ? o.expMs : 0 }
  if (o.kind === 'revoke' && str(o.user) && typeof o.beforeMs === 'number') return { kind: 'revoke', user: o.user, beforeMs: o.beforeMs }
  return undefined
}

/** What a signal needs to know of a session to tell whether it ends it. */
export interface ControlledSession {
  readonly id: string
  readonly user: string | undefined
  readonly jti: string | undefined
  /** The token's `iat` in ms; undefined when it had none. */
  readonly issuedAtMs: number | undefined
}

/**
 * Whether a token issued at `issuedAtMs` is refused by a cut-off at
 * `beforeMs`. `iat` has whole seconds: a token whose `iat` is the cut-off's
 * second or later is accepted (so a token issued right after a cut-off is
 * never refused); one without `iat` is refused, since nothing says it is newer.
 */
export function issuedBefore (issuedAtMs: number | undefined, beforeMs: number): boolean {
  return issuedAtMs === undefined || issuedAtMs < Math.floor(beforeMs / 1000) * 1000
}

/** Whether `c` ends `s`. */
export function signalEnds (c: ControlCommand, s: ControlledSession): boolean {
  if (c.kind === 'disconnect') return 'user' in c ? s.user === c.user : s.id === c.session
  if ('jti' in c) return s.jti === c.jti
  return s.user === c.user && issuedBefore(s.issuedAtMs, c.beforeMs)
}

/**
 * The Redis keys of the control plane under the key prefix. Keys of one
 * user share a hash tag (`{<user>}`, whatever the prefix or the user holds,
 * the first `{...}` is the same for both), so a Lua script may touch them
 * together on a Redis Cluster.
 */
export const controlKeys = {
  /** The control stream every replica watches. */
  stream: (prefix: string): string => `${prefix}__gateway:control`,
  /** Refused `jti`: a string, expiring at the token's `exp`. */
  jti: (prefix: string, jti: string): string => `${prefix}__gateway:jti:${jti}`,
  /** A user's cut-off (ms): tokens issued before it are refused. */
  before: (prefix: string, user: string): string => `${prefix}__gateway:user:{${user}}:before`,
  /** A user's open streams: a sorted set of leases, member `<session> <channels>`, score its expiry (ms). */
  leases: (prefix: string, user: string): string => `${prefix}__gateway:user:{${user}}:conn`,
  /** Streams reading a topic: a sorted set of leases, member `<session> <user>`, score its expiry (ms). */
  presence: (prefix: string, topic: string): string => `${prefix}__gateway:presence:{${topic}}`,
}

/** How many entries the control stream keeps (`MAXLEN ~`): replicas read it live, not its history. */
export const CONTROL_STREAM_MAXLEN = 1000

/**
 * A lease's sorted-set member: the session id, then the channels it reads
 * (user leases) or its user (topic leases), separated by spaces (neither a
 * session id nor a topic name holds one; a user may, and comes last).
 */
export function leaseMember (session: string, rest: string): string {
  return rest === '' ? session : `${session} ${rest}`
}

/** The session id and the rest of a lease member. */
export function splitLeaseMember (member: string): [string, string] {
  const i = member.indexOf(' ')
  return i < 0 ? [member, ''] : [member.slice(0, i), member.slice(i + 1)]
}

/** Presence answers list at most this many users, channels or sessions (`limit`). */
export const PRESENCE_MAX_LIMIT = 1000
export const PRESENCE_DEFAULT_LIMIT = 100

/** `GET /control/presence?channel=topic:x` or `?user=42`. */
export type PresenceQuery =
  | { readonly channel: string, readonly limit: number }
  | { readonly user: string, readonly limit: number }

/** Who reads a channel: streams counted cluster-wide, users listed up to `limit`. */
export interface ChannelPresence {
  readonly channel: string
  readonly streams: number
  readonly users: readonly string[]
  /** More users read it than listed. */
  readonly truncated: boolean
}

/** What a user reads: its streams and the channels of each. */
export interface UserPresence {
  readonly user: string
  readonly streams: number
  readonly sessions: ReadonlyArray<{ readonly session: string, readonly channels: readonly string[] }>
  readonly channels: readonly string[]
  readonly truncated: boolean
}
