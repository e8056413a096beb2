/**
 * What a producer may write, checked before anything is written: the same
 * rules the gateway applies when it reads (a channel it can serve, an event
 * name it will frame, data it will relay). Pure: no I/O. Used by the producer
 * helper, the CLI and `POST /publish`, so all three refuse the same things
 * with the same codes.
 */
import { isValidSubject, isValidTopicName, topicChannel, userChannel, type Channel } from './channels.js'
import { Errors, GatewayError } from './errors.js'
import { isValidEventName, MAX_EVENT_NAME_LENGTH } from './frame.js'
import { isStreamId } from './stream-id.js'

/** The gateway's default `MAX_EVENT_BYTES`: larger data is skipped by the reader. */
export const DEFAULT_MAX_DATA_BYTES = 262144
/** Default `MAXLEN ~` of a topic stream. */
export const DEFAULT_TOPIC_MAX_LEN = 10000
/** Default `MAXLEN ~` of a per-user stream (fewer readers, many more streams). */
export const DEFAULT_USER_MAX_LEN = 1000
/** Default `EXPIRE` of a per-user stream, in seconds (24 h). */
export const DEFAULT_USER_EXPIRE_SECONDS = 86400

/** How a stream is trimmed and expired on each write. */
export interface AppendOptions {
  /** `MAXLEN ~ n`: keep about the newest n entries. */
  readonly maxLen?: number
  /** `MINID ~ id`: drop entries older than this id (instead of `maxLen`). */
  readonly minId?: string
  /** `EXPIRE` of the key in seconds after this write; 0 or absent: none. */
  readonly expireSeconds?: number
}

export interface ValidEntry {
  readonly channel: Channel
  /** XADD field/value list: `event` (when given) then `data`. */
  readonly fields: string[]
}

const CHANNEL_RULES = 'use "topic:<name>" (name: 1 to 128 of A-Z a-z 0-9 . _ - : @ /, starting with a letter or digit) or "user:<sub>" (1 to 256 characters, no control characters)'

function quote (value: string): string {
  return JSON.stringify(value.length > 140 ? `${value.slice(0, 140)}...` : value)
}

/** `user:<sub>` or `topic:<name>` as a channel with its key; throws `SSEGW_ERR_PUBLISH_CHANNEL_INVALID`. */
export function parseChannel (prefix: string, name: unknown): Channel {
  if (typeof name !== 'string') {
    throw new GatewayError(Errors.PUBLISH_CHANNEL_INVALID, `\`channel\` must be a string: ${CHANNEL_RULES}.`)
  }
  if (name.startsWith('topic:') && isValidTopicName(name.slice(6))) return topicChannel(prefix, name.slice(6))
  if (name.startsWith('user:') && isValidSubject(name.slice(5))) return userChannel(prefix, name.slice(5))
  throw new GatewayError(Errors.PUBLISH_CHANNEL_INVALID, `Channel ${quote(name)} is not valid: ${CHANNEL_RULES}.`)
}

/** True when `text` has no lone UTF-16 surrogate, so it encodes to UTF-8 unchanged. */
export function isWellFormedText (text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0xd800 || c > 0xdfff) continue
    if (c > 0xdbff) return false
    const next = text.charCodeAt(i + 1)
    if (!(next >= 0xdc00 && next <= 0xdfff)) return false
    i++
  }
  return true
}

export interface EntryInput {
  readonly channel: unknown
  readonly event?: unknown
  readonly data: unknown
}

export interface EntryLimits {
  /** Largest `data` in UTF-8 bytes. */
  readonly maxDataBytes: number
  /** Where that limit comes from, for the message (`MAX_EVENT_BYTES`, `maxDataBytes`). */
  readonly limitName: string
}

/**
 * Checks one entry and builds its XADD fields. Throws a {@link GatewayError}
 * whose code says which part is wrong: `SSEGW_ERR_PUBLISH_CHANNEL_INVALID`,
 * `_EVENT_INVALID`, `_DATA_INVALID` or `_TOO_LARGE`. Event names are checked
 * here, before they reach a stream: a CR or LF in one would otherwise be
 * skipped by every reader instead of refused to the producer.
 */
export function validateEntry (prefix: string, input: EntryInput, limits: EntryLimits): ValidEntry {
  const channel = parseChannel(prefix, input.channel)
  const { event, data } = input
  if (event !== undefined && event !== null) {
    if (typeof event !== 'string' || !isValidEventName(event)) {
      throw new GatewayError(Errors.PUBLISH_EVENT_INVALID, `\`event\` must be a string of 1 to ${MAX_EVENT_NAME_LENGTH} characters with no control characters, not starting with "gateway." (reserved for the gateway's own events); omit it for plain messages.`)
    }
  }
  if (typeof data !== 'string') {
    throw new GatewayError(Errors.PUBLISH_DATA_INVALID, '`data` is required and must be a string (UTF-8 text; send JSON as a string: JSON.stringify(value)).')
  }
  if (!isWellFormedText(data)) {
    throw new GatewayError(Errors.PUBLISH_DATA_INVALID, '`data` holds a lone UTF-16 surrogate, which is not text: it cannot be sent as UTF-8 unchanged.')
  }
  const bytes = Buffer.byteLength(data, 'utf8')
  if (bytes > limits.maxDataBytes) {
    throw new GatewayError(Errors.PUBLISH_TOO_LARGE, `\`data\` is ${bytes} bytes; the gateway relays at most ${limits.maxDataBytes} (${limits.limitName}). Send a reference (an id or URL) to fetch instead.`)
  }
  const fields = typeof event === 'string' ? ['event', event, 'data', data] : ['data', data]
  return { channel, fields }
}

/**
 * Checks trimming and expiry options: positive whole `maxLen`, a stream id
 * (or a Unix time in ms) for `minId`, not both, and whole non-negative
 * `expireSeconds`. Throws `SSEGW_ERR_PUBLISH_OPTION_INVALID`.
 */
export function validateAppendOptions (opts: AppendOptions): void {
  const { maxLen, minId, expireSeconds } = opts
  if (maxLen !== undefined && (!Number.isSafeInteger(maxLen) || maxLen < 1)) {
    throw new GatewayError(Errors.PUBLISH_OPTION_INVALID, `\`maxLen\` must be a whole number of entries, at least 1, got ${String(maxLen)}.`)
  }
  if (minId !== undefined && (typeof minId !== 'string' || !(isStreamId(minId) || /^(?:0|[1-9]\d{0,19})$/.test(minId)))) {
    throw new GatewayError(Errors.PUBLISH_OPTION_INVALID, `\`minId\` must be a stream entry id (<ms>-<seq>) or a Unix time in ms, got ${quote(String(minId))}.`)
  }
  if (maxLen !== undefined && minId !== undefined) {
    throw new GatewayError(Errors.PUBLISH_OPTION_INVALID, 'Give `maxLen` or `minId`, not both: one XADD trims one way.')
  }
  if (expireSeconds !== undefined && (!Number.isSafeInteger(expireSeconds) || expireSeconds < 0)) {
    throw new GatewayError(Errors.PUBLISH_OPTION_INVALID, `\`expireSeconds\` must be a whole number of seconds (0: no EXPIRE), got ${String(expireSeconds)}.`)
  }
}

/** The defaults for a channel kind: `MAXLEN ~` 10,000 (topics) or 1,000 and a 24 h `EXPIRE` (users). */
export function defaultAppendOptions (channel: Channel, opts: AppendOptions): AppendOptions {
  const user = channel.kind === 'user'
  return {
    ...(opts.minId !== undefined ? { minId: opts.minId } : { maxLen: opts.maxLen ?? (user ? DEFAULT_USER_MAX_LEN : DEFAULT_TOPIC_MAX_LEN) }),
    expireSeconds: opts.expireSeconds ?? (user ? DEFAULT_USER_EXPIRE_SECONDS : 0),
  }
}
