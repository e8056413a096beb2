/**
 * Channels, their Redis keys, and who may read them. Pure: no I/O.
 *
 * A channel is `user:<sub>` (the token's subject) or `topic:<name>`. Its stream
 * key is the configured prefix followed by the channel, e.g. `sse:topic:orders`.
 */

/** Topic names: 1 to 128 of `A-Z a-z 0-9 . _ - : @ /`, starting with a letter or digit. */
export const TOPIC_NAME = /^[A-Za-z0-9][A-Za-z0-9._\-:@/]{0,127}$/
export const MAX_SUBJECT_LENGTH = 256

export type ChannelKind = 'user' | 'topic'

export interface Channel {
  readonly kind: ChannelKind
  /** `user:<sub>` or `topic:<name>`: the name clients and producers see. */
  readonly name: string
  /** Redis stream key: prefix + name. */
  readonly key: string
}

export function isValidTopicName (name: string): boolean {
  return TOPIC_NAME.test(name)
}

/**
 * A subject may be any text a token issuer uses, but it becomes part of a key
 * and of log lines: no control characters, at most 256 characters.
 */
export function isValidSubject (sub: string): boolean {
  if (sub.length === 0 || sub.length > MAX_SUBJECT_LENGTH) return false
  for (let i = 0; i < sub.length; i++) {
    const c = sub.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return false
  }
  return true
}

export function userChannel (prefix: string, sub: string): Channel {
  const name = `user:${sub}`
  return { kind: 'user', name, key: prefix + name }
}

export function topicChannel (prefix: string, topic: string): Channel {
  const name = `topic:${topic}`
  return { kind: 'topic', name, key: prefix + name }
}

/**
 * A compiled list of topic patterns. `*` matches any run of characters
 * (including none and including `.` or `/`); every other character matches
 * itself. `orders.*` matches `orders.eu`; `*` matches every topic.
 */
export class TopicPatterns {
  private readonly exact = new Set<string>()
  private readonly globs: string[] = []
  private matchAll = false

  constructor (patterns: Iterable<string>) {
    for (const p of patterns) {
      if (p === '*') this.matchAll = true
      else if (p.includes('*')) this.globs.push(p)
      else this.exact.add(p)
    }
  }

  get empty (): boolean {
    return !this.matchAll && this.exact.size === 0 && this.globs.length === 0
  }

  matches (topic: string): boolean {
    if (this.matchAll || this.exact.has(topic)) return true
    for (const g of this.globs) if (globMatches(g, topic)) return true
    return false
  }
}

/**
 * `*` glob match in O(pattern x topic) time. Not a RegExp: `.*` per star
 * backtracks exponentially in the number of stars, and the topic is client
 * input. On a mismatch only the last star is retried, one character further.
 */
function globMatches (pattern: string, text: string): boolean {
  let p = 0
  let t = 0
  let star = -1
  let resume = 0
  while (t < text.length) {
    if (pattern[p] === '*') {
      star = p++
      resume = t
    } else if (p < pattern.length && pattern[p] === text[t]) {
      p++
      t++
    } else if (star !== -1) {
      p = star + 1
      t = ++resume
    } else {
      return false
    }
  }
  while (pattern[p] === '*') p++
  return p === pattern.length
}

/**
 * Reads the topics claim of a verified token: an array of strings, or one
 * string of space- or comma-separated patterns (as OAuth `scope` is). Anything
 * else grants nothing.
 */
export function topicsFromClaim (claim: unknown): string[] {
  if (typeof claim === 'string') return claim.split(/[\s,]+/).filter(s => s.length > 0)
  if (Array.isArray(claim)) return claim.filter((s): s is string => typeof s === 'string' && s.length > 0)
  return []
}
