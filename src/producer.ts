/**
 * The producer helper: how a service writes an event for the gateway, with
 * Contract 1 done right (a `*` id, `MAXLEN ~` trimming, an EXPIRE on per-user
 * streams, one round trip), after the same checks the gateway applies.
 *
 *     import { Redis } from 'ioredis'
 *     import { publish } from 'sse-gateway'
 *     const id = await publish(new Redis(), { channel: 'user:42', event: 'notice', data: JSON.stringify({ text: 'hi' }) })
 */
import {
  DEFAULT_MAX_DATA_BYTES,
  defaultAppendOptions,
  validateAppendOptions,
  validateEntry,
} from './core/publish.js'
import { Errors, GatewayError } from './core/errors.js'
import type { StreamId } from './core/stream-id.js'
import { redisAppend, type RedisLike } from './source/redis-publisher.js'

export type { RedisLike }
export {
  DEFAULT_MAX_DATA_BYTES,
  DEFAULT_TOPIC_MAX_LEN,
  DEFAULT_USER_EXPIRE_SECONDS,
  DEFAULT_USER_MAX_LEN,
} from './core/publish.js'

export interface PublishOptions {
  /** Key prefix, as the gateway's `KEY_PREFIX` (default `sse:`). */
  readonly prefix?: string
  /** `topic:<name>` or `user:<sub>`. */
  readonly channel: string
  /** SSE event name (default: none, a plain `message`). Not under `gateway.`. */
  readonly event?: string
  /** The event's data: UTF-8 text, may span lines. */
  readonly data: string
  /** `MAXLEN ~`: entries to keep, about (default 10,000 for topics, 1,000 for user channels). */
  readonly maxLen?: number
  /** `MINID ~`: trim entries older than this id or Unix time in ms, instead of `maxLen`. */
  readonly minId?: string
  /** `EXPIRE` of the stream in seconds (default 86,400 for user channels, none for topics; 0: none). */
  readonly expireSeconds?: number
  /** Largest `data` in UTF-8 bytes, as the gateway's `MAX_EVENT_BYTES` (default 262,144): larger is refused here rather than skipped there. */
  readonly maxDataBytes?: number
}

/**
 * Appends one event to a channel's stream and returns its entry id (the SSE
 * `id:` a one-channel client sees). XADD and EXPIRE go as one MULTI/EXEC in
 * one round trip.
 *
 * Throws a `GatewayError` before anything is written when an argument breaks
 * the rules; its `code` says which: `SSEGW_ERR_PUBLISH_CHANNEL_INVALID`,
 * `SSEGW_ERR_PUBLISH_EVENT_INVALID`, `SSEGW_ERR_PUBLISH_DATA_INVALID`,
 * `SSEGW_ERR_PUBLISH_TOO_LARGE`, `SSEGW_ERR_PUBLISH_OPTION_INVALID`. Redis
 * errors are passed on as they are.
 *
 * `redis` is any ioredis client (`Redis` or `Cluster`) without a `keyPrefix`
 * option of its own (give `prefix` here instead).
 */
export async function publish (redis: RedisLike, opts: PublishOptions): Promise<StreamId> {
  if (opts === null || typeof opts !== 'object') {
    throw new GatewayError(Errors.PUBLISH_OPTION_INVALID, 'publish(redis, options): options must be an object with `channel` and `data`.')
  }
  const prefix = opts.prefix ?? 'sse:'
  if (typeof prefix !== 'string' || /\s/.test(prefix)) {
    throw new GatewayError(Errors.PUBLISH_OPTION_INVALID, '`prefix` must be a string with no white space, the same as the gateway\'s KEY_PREFIX.')
  }
  const maxDataBytes = opts.maxDataBytes ?? DEFAULT_MAX_DATA_BYTES
  if (!Number.isSafeInteger(maxDataBytes) || maxDataBytes < 1) {
    throw new GatewayError(Errors.PUBLISH_OPTION_INVALID, `\`maxDataBytes\` must be a whole number of bytes, at least 1, got ${String(maxDataBytes)}.`)
  }
  const { channel, fields } = validateEntry(prefix, opts, { maxDataBytes, limitName: 'maxDataBytes; match the gateway\'s MAX_EVENT_BYTES' })
  const append = { maxLen: opts.maxLen, minId: opts.minId, expireSeconds: opts.expireSeconds }
  validateAppendOptions(append)
  if (typeof redis?.multi !== 'function') {
    throw new GatewayError(Errors.PUBLISH_OPTION_INVALID, 'publish(redis, options): `redis` must be an ioredis client (it needs `multi`).')
  }
  return await redisAppend(redis, channel.key, fields, defaultAppendOptions(channel, append))
}
