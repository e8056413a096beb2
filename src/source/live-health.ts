/**
 * Whether live reads are flowing, for readiness. A replica is ready only
 * while every live reader answers and the last proof of flow (a probe entry
 * written and seen by the live reader, see RedisSource) came back in time:
 * a feed that stops without an error (a frozen Redis, keyspace
 * notifications switched off) must not look healthy. Each change is logged
 * once, and counted.
 */
import type { Logger } from 'pino'
import type { StallReason } from '../core/protocol.js'

export interface LiveHealthOptions {
  readonly logger: Pick<Logger, 'error' | 'info'>
  /** Called when live reads stop flowing, with the reason. */
  readonly onStall?: (reason: StallReason) => void
}

export class LiveHealth {
  private readonly failing = new Set<object>()
  private probe: StallReason | undefined
  private server: string | undefined
  private serverCheck = false
  private stalled: StallReason | undefined

  constructor (private readonly opts: LiveHealthOptions) {}

  /** Undefined while live reads flow; otherwise why not. */
  get reason (): StallReason | undefined {
    if (this.server !== undefined) return 'not-standalone'
    if (this.failing.size > 0) return 'reader-error'
    if (this.serverCheck) return 'server-check'
    return this.probe
  }

  get flowing (): boolean {
    return this.reason === undefined
  }

  /** A read of `reader` failed; it stays failing until one succeeds. */
  readerFailed (reader: object, err: unknown): void {
    this.failing.add(reader)
    this.update(err)
  }

  readerSucceeded (reader: object): void {
    if (!this.failing.delete(reader)) return
    this.update()
  }

  /** A reader that is gone (closed, replaced) no longer counts. */
  forget (reader: object): void {
    if (this.failing.delete(reader)) this.update()
  }

  /** The outcome of a proof of flow: undefined when it came back in time. */
  probed (failure: 'probe-timeout' | 'probe-error' | undefined, err?: unknown): void {
    this.probe = failure
    this.update(err)
  }

  /** What the server said it is (`redis_mode`): only a standalone Redis can be read. */
  serverMode (mode: string | undefined): void {
    this.server = mode === undefined || mode === 'standalone' ? undefined : mode
    this.update()
  }

  /** The checks after a (re)connect (data lost? which reader?) have not finished yet. */
  checking (pending: boolean): void {
    this.serverCheck = pending
    this.update()
  }

  private update (err?: unknown): void {
    const reason = this.reason
    if (reason === this.stalled) return
    const was = this.stalled
    this.stalled = reason
    if (reason === undefined) {
      this.opts.logger.info({ was }, 'live reads flowing again: the replica is ready')
      return
    }
    this.opts.onStall?.(reason)
    const detail = reason === 'not-standalone'
      ? this.server === 'cluster'
        ? 'REDIS_URL points at a Redis in cluster mode (a Redis Cluster node), which one connection cannot read (CROSSSLOT, MOVED): unset REDIS_URL and set REDIS_CLUSTER_NODES=host:port,host:port (seed nodes) instead'
        : this.server === 'sentinel'
          ? 'REDIS_URL points at a Sentinel (a Redis in sentinel mode), not a Redis that holds data: set REDIS_SENTINELS=<host:port,...> and REDIS_SENTINEL_MASTER=<name> instead (REDIS_URL may then carry the data nodes\' credentials, as redis://[user:password@]<name>)'
          : `REDIS_URL points at a Redis in ${this.server ?? '?'} mode: this version reads one standalone Redis (a primary or a replica of one), a Redis Cluster (REDIS_CLUSTER_NODES) or a Sentinel-managed Redis (REDIS_SENTINELS)`
      : reason === 'probe-timeout'
        ? 'a probe entry written to Redis was not seen by the live reader in time (Redis frozen or overloaded, or keyspace notifications stopped)'
        : reason === 'probe-error'
          ? 'the probe entry could not be written'
          : reason === 'server-check'
            ? 'the checks after a reconnect to Redis have not finished'
            : 'live reads from Redis fail'
    this.opts.logger.error({ reason, ...(err === undefined ? {} : { err: errorSummary(err) }) }, `live reads are not flowing: ${detail}; the replica is not ready until they flow again`)
  }
}

export function errorSummary (err: unknown): { message: string, code?: string } {
  if (err instanceof Error) return { message: err.message, ...('code' in err ? { code: String((err as { code: unknown }).code) } : {}) }
  return { message: String(err) }
}
