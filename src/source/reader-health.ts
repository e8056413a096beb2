/**
 * Outage bookkeeping of one live reader: the first failure is logged once,
 * every failure counted, retries back off exponentially, and the recovery
 * is logged once. Readiness (LiveHealth) holds the reader failing until a
 * read of it succeeds.
 */
import { errorSummary } from './live-health.js'
import type { LiveReaderOptions } from './live-reader.js'
import { sleep } from './live-reader.js'
import { RECONNECT_BASE_MS, RECONNECT_MAX_MS } from './redis-connection.js'
import { ACL_RULES, isRefused } from './server-check.js'

export type ReaderHealthOptions = Pick<LiveReaderOptions, 'logger' | 'health' | 'onRead' | 'onReaderError' | 'keyPrefix'>

export class ReaderHealth {
  private failing = false
  private backoff = RECONNECT_BASE_MS

  constructor (private readonly opts: ReaderHealthOptions) {}

  /** Whether the last read failed (and none has succeeded since). */
  get failingNow (): boolean {
    return this.failing
  }

  /** Records a failed read; resolves when it is time to try again. */
  async failed (err: unknown): Promise<void> {
    if (!this.failing) {
      this.failing = true
      if (isRefused(err)) {
        const grant = ACL_RULES.read(this.opts.keyPrefix)
        this.opts.logger.error({ err: errorSummary(err), grant }, `Redis refused a live read: the stream keys and ${this.opts.keyPrefix}__gateway:* (the readers' wake and probe streams) must be readable (grant ${grant}); retrying with backoff`)
      } else {
        this.opts.logger.error({ err: errorSummary(err) }, 'stream reader lost Redis; retrying with backoff, reading resumes from explicit ids')
      }
    }
    this.opts.health.readerFailed(this, err)
    this.opts.onReaderError?.()
    await sleep(this.backoff)
    this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX_MS)
  }

  /** Records a read that answered, with its round trip since `started` (process.hrtime.bigint()). */
  succeeded (started: bigint): void {
    this.opts.onRead?.(Number(process.hrtime.bigint() - started) / 1e9)
    if (this.failing) {
      this.failing = false
      this.opts.logger.info('stream reader reading again')
      this.opts.health.readerSucceeded(this)
    }
    this.backoff = RECONNECT_BASE_MS
  }

  /** The reader has nothing to read or is gone: its failure no longer holds readiness. */
  forget (): void {
    this.opts.health.forget(this)
  }
}
