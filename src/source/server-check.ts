/**
 * What the Redis engine asks a server after every (re)connect, before any
 * live read: what it is (`redis_mode`) and which live reader its
 * `notify-keyspace-events` setting calls for. Managed Redis may refuse INFO
 * or CONFIG: a refusal is an answer (unknown), not an outage.
 */
import type { Redis } from 'ioredis'

/** Errors that retrying the same command will not mend: no such command, no permission, a read-only replica. */
export function isPermanent (err: unknown): boolean {
  return /unknown command|NOPERM|READONLY|syntax error|wrong number of arguments/i.test((err as Error)?.message ?? '')
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
 * probe and the reads still tell). Rejects on an outage.
 */
export async function serverMode (cmd: Redis): Promise<string | undefined> {
  try {
    const info = String(await cmd.info('server'))
    return /^redis_mode:(\S+)/m.exec(info)?.[1]
  } catch (err) {
    if (!isPermanent(err)) throw err
    return /unknown command/i.test((err as Error).message) ? 'unknown' : undefined
  }
}

/**
 * The reader the server's `notify-keyspace-events` calls for, asked for or
 * not (a server that does not publish them cannot be read by notification);
 * undefined where CONFIG is refused (managed Redis), after `refused` is told
 * why. Rejects on an outage.
 */
export async function readerBySetting (cmd: Redis, refused: (err: unknown) => void): Promise<'block' | 'notify' | undefined> {
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
 * The server's `run_id` (new at every start, and another node's after a
 * failover), or undefined where INFO is refused or has none. Rejects on an
 * outage.
 */
export async function serverRunId (cmd: Redis): Promise<string | undefined> {
  try {
    return /^run_id:(\S+)/m.exec(String(await cmd.info('server')))?.[1]
  } catch (err) {
    if (!isPermanent(err)) throw err
    return undefined
  }
}
