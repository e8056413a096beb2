/**
 * What the Redis engine asks a server after every (re)connect, before any
 * live read: what it is (`redis_mode`), whether it gives client tracking,
 * and which live reader its `notify-keyspace-events` setting calls for.
 * Managed Redis may refuse INFO, CONFIG or CLIENT: a refusal is an answer (unknown), not an outage.
 */
import type { Cluster, Redis } from 'ioredis'

/**
 * The ACL rules the gateway's commands need, as `ACL SETUSER` takes them,
 * named in the log line when Redis refuses one (README, "TLS and ACL", has
 * the whole rule per reader mode). `prefix` is KEY_PREFIX.
 */
export const ACL_RULES = {
  /** INFO: the server's `redis_mode` after each reconnect, and ioredis's ready check. */
  info: () => '+info',
  /** CONFIG GET notify-keyspace-events: which reader the server's setting calls for. */
  config: () => '+config|get',
  /** The epoch key: TIME, SET NX and GET on it. */
  epoch: (prefix: string) => `+time +get +set ~${prefix}__gateway:*`,
  /** The wake and probe streams: MULTI, XADD, PEXPIRE, EXEC on them. */
  wake: (prefix: string) => `+multi +exec +xadd +pexpire ~${prefix}__gateway:*`,
  /** Resume, catch-up and gap checks: the history queries on the stream keys. */
  history: (prefix: string) => `+xrange +xrevrange +xinfo|stream %R~${prefix}*`,
  /** Live reads: XREAD on the stream keys and on the readers' wake and probe streams. */
  read: (prefix: string) => `+xread %R~${prefix}*`,
  /** The notify reader's subscriptions to keyspace channels. */
  notify: (prefix: string) => `+subscribe +unsubscribe &__keyspace@*__:${prefix}*`,
  /** The tracking reader: its read connection's CLIENT TRACKING toward a subscriber of the invalidation channel. */
  track: () => '+client|id +client|tracking +subscribe &__redis__:invalidate',
  /**
   * A Redis Cluster: the slot map and cluster state the ioredis `Cluster`
   * client asks every node for (CLUSTER SLOTS, CLUSTER INFO).
   */
  cluster: () => '+cluster|slots +cluster|info',
  /**
   * A cluster master's notification feed (cluster-feed.ts): CONFIG GET, and
   * one pattern subscription per node (an ACL matches a PSUBSCRIBE pattern
   * literally, so the rule names database 0).
   */
  clusterNotify: (prefix: string) => `+config|get +psubscribe +punsubscribe &__keyspace@0__:${prefix}*`,
} as const

/**
 * The least-privilege ACL rule (the part after `ACL SETUSER <user> on
 * ><password>`) for a gateway with KEY_PREFIX `prefix` in reader `mode`:
 * read-only on the stream keys, read-write under `<prefix>__gateway:` (the
 * epoch, wake and probe streams); notify adds CONFIG GET and the keyspace
 * channels, track CLIENT ID, CLIENT TRACKING and the invalidation channel,
 * auto both (it takes track, else notify, else block); `publish` (POST
 * /publish, on by default) adds writing streams. `cluster` (REDIS_CLUSTER_NODES)
 * adds the slot map, and its notification feeds pattern-subscribe (see
 * ACL_RULES.clusterNotify); `block` reads as `auto` there. The README
 * quotes these for `sse:` (a test holds it to this).
 */
export function aclRule (mode: 'auto' | 'block' | 'notify' | 'track', prefix: string, opts: { publish: boolean, cluster?: boolean }): string {
  const parts = [
    'resetkeys resetchannels -@all',
    '+info +time +get +set +multi +exec +xadd +pexpire +xread +xrange +xrevrange +xinfo|stream',
    // The control plane (README "Control"): its scripts and what they run, on keys under __gateway:.
    '+evalsha +eval +exists +zadd +zrem +zremrangebyscore +zcard +zcount +zrangebyscore',
    opts.publish ? `+expire ~${prefix}*` : `%R~${prefix}* ~${prefix}__gateway:*`,
  ]
  if (opts.cluster === true) {
    parts.push(ACL_RULES.cluster())
    // A cluster has no blocking reader: block reads as auto (tracking, else notifications, per master).
    if (mode !== 'notify') parts.push(ACL_RULES.track())
    if (mode !== 'track') parts.push(ACL_RULES.clusterNotify(prefix))
    return [...new Set(parts.join(' ').split(' '))].join(' ')
  }
  if (mode === 'track' || mode === 'auto') parts.push(ACL_RULES.track())
  if (mode === 'notify' || mode === 'auto') parts.push(`+config|get +subscribe +unsubscribe &__keyspace@*__:${prefix}*`)
  // auto needs both readers' rights; each right once.
  return [...new Set(parts.join(' ').split(' '))].join(' ')
}

/** Whether Redis refused a command for want of a right (ACL), not because it failed. */
export function isRefused (err: unknown): boolean {
  if (/NOPERM/.test((err as Error)?.message ?? '')) return true
  // A refused command inside MULTI fails the EXEC (EXECABORT); ioredis keeps why.
  const previous = (err as { previousErrors?: unknown[] })?.previousErrors
  return Array.isArray(previous) && previous.some(e => /NOPERM/.test((e as Error)?.message ?? ''))
}

/**
 * Marks a refused command's error with the ACL rule it lacked (`grant`), so
 * that whoever logs it can name the rule; other errors pass unchanged.
 */
export function withGrant (err: unknown, grant: string): unknown {
  if (isRefused(err) && err instanceof Error) Object.assign(err, { grant })
  return err
}

/** Errors that retrying the same command will not mend: no such command, no permission, a read-only replica. */
export function isPermanent (err: unknown): boolean {
  return /unknown command|unknown subcommand|NOPERM|READONLY|syntax error|wrong number of arguments/i.test((err as Error)?.message ?? '')
}

/**
 * Whether the server publishes keyspace notifications for stream commands:
 * `K` (keyspace channel) and `t` (streams) or `A` (all classes).
 */
export function notificationsCoverStreams (flags: string): boolean {
  return flags.includes('K') && (flags.includes('t') || flags.includes('A'))
}

/**
 * The server's `redis_mode` (`standalone`, `cluster`, `sentinel`);
 * `unknown` where it has no INFO, undefined where INFO is refused (ACLs: the
 * probe and the reads still tell), after `refused` is told why. Rejects on
 * an outage.
 */
export async function serverMode (cmd: Redis | Cluster, refused?: (err: unknown) => void): Promise<string | undefined> {
  try {
    const info = String(await cmd.info('server'))
    return /^redis_mode:(\S+)/m.exec(info)?.[1]
  } catch (err) {
    if (!isPermanent(err)) throw err
    if (isRefused(err)) refused?.(err)
    return /unknown command/i.test((err as Error).message) ? 'unknown' : undefined
  }
}

/**
 * The reader the server's `notify-keyspace-events` calls for, asked for or
 * not (a server that does not publish them cannot be read by notification);
 * undefined where CONFIG is refused (managed Redis), after `refused` is told
 * why. Rejects on an outage.
 */
export async function readerBySetting (cmd: Redis | Cluster, refused: (err: unknown) => void): Promise<'block' | 'notify' | undefined> {
  try {
    const reply = await (cmd.config('GET', 'notify-keyspace-events') as Promise<unknown>)
    return notificationsCoverStreams(Array.isArray(reply) ? String(reply[1] ?? '') : '') ? 'notify' : 'block'
  } catch (err) {
    if (!isPermanent(err)) throw err
    refused(err)
    return undefined
  }
}

/**
 * Whether the server publishes keyspace notifications for streams, seen
 * rather than read from its setting: for a Redis that refuses CONFIG (and
 * client tracking, as Memorystore does), `auto` subscribes `sub` to the
 * keyspace channel of `key`, writes an entry to `key` with `append` and
 * waits up to `timeoutMs` for the `xadd` event. False when none comes or
 * the subscription is refused (the notify rule is missing). `sub` is the
 * caller's to open and close.
 */
export async function notificationsSeen (sub: Redis, key: string, db: number, append: (key: string) => Promise<unknown>, timeoutMs: number): Promise<boolean> {
  const channel = `__keyspace@${db}__:${key}`
  let timer: NodeJS.Timeout | undefined
  const seen = new Promise<boolean>(resolve => {
    timer = setTimeout(() => { resolve(false) }, timeoutMs)
    sub.on('message', (ch: string, event: string) => { if (ch === channel && event === 'xadd') resolve(true) })
  })
  try {
    await sub.subscribe(channel)
    await append(key)
    return await seen
  } catch (err) {
    if (!isPermanent(err)) throw err
    return false
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Whether the server gives client tracking (the track reader) to this user:
 * `CLIENT ID` and `CLIENT TRACKING off` (a no-op on the command connection,
 * which tracks nothing) both answer. False where Redis is older than 6 or
 * the ACL lacks `+client|id` or `+client|tracking`, after `refused` is told
 * why. Rejects on an outage.
 */
export async function trackingAllowed (cmd: Redis | Cluster, refused: (err: unknown) => void): Promise<boolean> {
  try {
    await cmd.client('ID')
    await cmd.call('CLIENT', 'TRACKING', 'off')
    return true
  } catch (err) {
    if (!isPermanent(err)) throw err
    refused(err)
    return false
  }
}

/**
 * The server's `run_id` (new at every start, and another node's after a
 * failover), or undefined where INFO is refused or has none. Rejects on an
 * outage.
 */
export async function serverRunId (cmd: Redis | Cluster): Promise<string | undefined> {
  try {
    return /^run_id:(\S+)/m.exec(String(await cmd.info('server')))?.[1]
  } catch (err) {
    if (!isPermanent(err)) throw err
    return undefined
  }
}
