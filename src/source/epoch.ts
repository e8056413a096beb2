/**
 * The epoch of a Redis dataset: `<prefix>__gateway:epoch` holds a random
 * token and the Redis time (ms) at which it was written, set once per
 * dataset. A Redis that comes back without it, or with another, may have
 * lost the history this replica read (see RedisSource for what follows).
 */
import { randomBytes } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'

/**
 * Sets the epoch if the dataset has none (`SET NX`, then `GET`: Redis 6.2
 * has no `SET NX GET`) and returns the one that stands ('' if it vanished
 * in between). Rejects where the commands fail or are refused.
 */
export async function claimEpoch (cmd: Redis | Cluster, key: string): Promise<string> {
  // Redis's clock, not ours: cursors hold Redis ids, and are compared with it.
  const [seconds, micros] = await cmd.time() as [string | number, string | number]
  const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
  await cmd.set(key, `${randomBytes(8).toString('hex')}:${now}`, 'NX')
  return await cmd.get(key) ?? ''
}

/** When an epoch began (Redis ms), or undefined for a value this gateway did not write. */
export function epochTimeMs (epoch: string): number | undefined {
  const colon = epoch.indexOf(':')
  const ms = Number(epoch.slice(colon + 1))
  return colon > 0 && Number.isFinite(ms) ? ms : undefined
}
