/**
 * A small client for sse-gateway, for browsers and Node, over EventSource.
 * No imports: the compiled file is an ES module a browser loads as it is
 * (a gateway with DEMO_ENABLED serves it at `/client/sse-client.js`).
 *
 * What it adds to a bare EventSource, and why:
 *  - `gateway.token-expired` ends the stream, and EventSource would come back
 *    with the old URL (old token: 401, then it gives up for good). So the
 *    helper closes it, asks the app for a fresh token and opens a new one
 *    that resumes from the last cursor.
 *  - A non-200 answer (401, 403, 429...) or a network failure that makes
 *    EventSource give up (readyState CLOSED): back off with jitter, then ask
 *    for a fresh token and reconnect with the cursor. A browser does not say
 *    which status it got, so every such reconnect asks for a token.
 *  - A 200 stream that ends (`gateway.unavailable`, a drain, a proxy cutting
 *    it): EventSource comes back by itself after the `retry:` it was sent,
 *    with `Last-Event-ID`; the helper leaves that alone.
 *  - The cursor (last `id:`) is kept in storage (sessionStorage by default),
 *    so a page reload resumes where it was: sent as `lastEventId` on the
 *    first connect, since EventSource cannot send the header then.
 *  - `gateway.gap` goes to `onGap` with the channels that lost history.
 *  - Every event comes with its channel (`user:42`, `topic:news`), read off
 *    its `id:` with nothing added to the wire: on a stream of one channel
 *    it is that one; on a stream of several, the id is a cursor whose first
 *    segment is the event's channel's, named by the FNV-1a hash of the
 *    channel name ({@link channelHash}). `channelOnWire` asks the gateway to
 *    send the name as the first data line instead (`channel=data`).
 *
 * EventSource hands a named event only to listeners for that name: give the
 * names the app expects in `events` (or add them later with `listen`).
 * Unnamed events arrive as `message`.
 */

/** The gateway's control events (see the README, "Control events"). */
export const CONTROL_EVENTS = {
  gap: 'gateway.gap',
  tokenExpired: 'gateway.token-expired',
  unavailable: 'gateway.unavailable',
  revoked: 'gateway.revoked',
  disconnected: 'gateway.disconnected',
} as const

/** The part of a `MessageEvent` this client reads. */
export interface MessageEventLike {
  readonly type: string
  readonly data: string
  readonly lastEventId: string
}

/** The part of an `EventSource` this client uses (the browser's, or the `eventsource` package's). */
export interface EventSourceLike {
  readonly readyState: number
  // `never`: any EventSource's handler type fits (browsers type the event `Event`, Node's package `ErrorEvent`).
  onopen: ((event: never) => unknown) | null
  onerror: ((event: never) => unknown) | null
  addEventListener (type: string, listener: (event: MessageEventLike) => void): void
  close (): void
}

export type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike

/** `sessionStorage`, `localStorage`, or anything with these methods. */
export interface StorageLike {
  getItem (key: string): string | null
  setItem (key: string, value: string): void
  removeItem (key: string): void
}

export type GapReason = 'trimmed' | 'missing' | 'ahead' | 'invalid-cursor' | 'reset'

/** One channel of a `gateway.gap` event: the app should refetch its state. */
export interface GapChannel {
  /** `topic:<name>` or `user:<sub>`. */
  readonly channel: string
  readonly reason: GapReason
}

/**
 * Why a token is asked for: first connect, after `gateway.token-expired`,
 * after `gateway.revoked` (the token was revoked: the user may have been
 * signed out, so the app may rather `close()`), or after EventSource gave
 * up (e.g. a 401).
 */
export type TokenReason = 'initial' | 'token-expired' | 'revoked' | 'error'

/**
 * - `connecting`: getting a token and opening a new EventSource.
 * - `open`: the stream is open.
 * - `reconnecting`: the stream ended or the network failed; EventSource comes back by itself.
 * - `backing-off`: EventSource gave up (non-200 answer) or getting a token failed; a new one is opened after `delayMs`.
 * - `closed`: `close()` was called.
 */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'backing-off' | 'closed'

export interface StateDetail {
  /** What led here: `token-expired`, `unavailable`, `error` (EventSource error event) or `token-error` (getToken failed). */
  readonly reason?: TokenReason | 'unavailable' | 'token-error'
  /** Backing off: milliseconds until the next attempt. */
  readonly delayMs?: number
  /** Backing off: consecutive failed attempts so far (1 on the first). */
  readonly attempt?: number
  /** The error event or the error getToken threw. Node's `eventsource` error events carry the HTTP status as `code`. */
  readonly error?: unknown
  /** `gateway.unavailable` and `gateway.token-expired`: the gateway's explanation. */
  readonly message?: string
}

export interface ConnectOptions {
  /** The gateway's `/events` URL, absolute, or relative to the page in a browser. Query parameters in it are kept (e.g. `history=20`). */
  readonly url: string | URL
  /** Topics to read, besides the token's own user channel. */
  readonly topics?: readonly string[]
  /**
   * Returns a token (sent as the `token` query parameter), or undefined to
   * send none (cookie auth). Called before every new EventSource: on the
   * first connect, after `gateway.token-expired` and after EventSource gave
   * up (which is what a 401 looks like), so return a fresh one then.
   */
  readonly getToken?: (reason: TokenReason) => string | null | undefined | Promise<string | null | undefined>
  /**
   * Every event that is not a control event: its name (`message` when it
   * has none), data, `id:` (its cursor) and channel (`user:<id>` or
   * `topic:<name>`; `user:` alone for the user channel when the page gave
   * no `user` and the token tells none; undefined only for an id this
   * client cannot read).
   */
  readonly onEvent: (name: string, data: string, id: string, channel: string | undefined) => void
  /**
   * The user whose channel the token opens (the gateway's `JWT_USER_CLAIM`
   * of the token), to name that channel in `onEvent`. Default: the `sub`
   * claim of the token `getToken` returns, when it is a JWT.
   */
  readonly user?: string
  /**
   * Ask the gateway to put each event's channel on the wire (`channel=data`:
   * the first data line is the channel), for pages whose cursors another
   * client reads too; `onEvent` gets the data without that line either way.
   */
  readonly channelOnWire?: boolean
  /** Channels that lost history (`gateway.gap`): refetch their state. Delivery goes on. */
  readonly onGap?: (channels: GapChannel[]) => void
  /** Connection state changes, for a status indicator or logging. */
  readonly onState?: (state: ConnectionState, detail: StateDetail) => void
  /** Event names to listen for besides `message` (EventSource delivers named events only to their own listeners). */
  readonly events?: readonly string[]
  /** Where the cursor survives a page reload. Default: `sessionStorage` when there is one; `null` keeps it in memory only. */
  readonly storage?: StorageLike | null
  /** Storage key of the cursor. Default: derived from the URL and the topics. */
  readonly storageKey?: string
  /** Cursor to start from, instead of the stored one. */
  readonly lastEventId?: string
  /** EventSource constructor. Default: the global one (browsers); in Node pass `EventSource` from the `eventsource` package. */
  readonly EventSource?: EventSourceConstructor
  /** Send cookies cross-origin (the gateway must list the page's origin in CORS_ORIGINS). */
  readonly withCredentials?: boolean
  /** Back-off after EventSource gives up: the first delay and the ceiling, in milliseconds. Default 1,000 and 30,000. */
  readonly backoff?: { readonly initialMs?: number, readonly maxMs?: number }
}

export interface Connection {
  /** Stops for good: closes the EventSource, cancels any pending reconnect. The stored cursor stays. */
  close (): void
  /** Also deliver events named `name` to `onEvent`, from now on. */
  listen (name: string): void
  readonly state: ConnectionState
  /** The last cursor seen (or the one started from); what a reconnect resumes from. */
  readonly lastEventId: string | undefined
}

const CLOSED = 2
/** A token-expired this soon after open is treated as a failure, so a token that is always about to expire cannot spin. */
const SHORT_LIVED_MS = 1000

/**
 * Delay before attempt `attempt` (1, 2, ...): exponential from `initialMs`,
 * capped at `maxMs`, with "equal jitter": half of it fixed, half random, so
 * clients that failed together do not come back together.
 */
export function backoffDelay (attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30)))
  return Math.round(ceiling / 2 + random() * ceiling / 2)
}

const HASH_WIDTH = 6
const HASH_SPACE = 36 ** HASH_WIDTH

/** 6 base-36 digits of the FNV-1a hash of a channel name, as the gateway's cursor has them (src/core/cursor.ts). */
export function channelHash (name: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return (h % HASH_SPACE).toString(36).padStart(HASH_WIDTH, '0')
}

/**
 * The channels of a stream in the gateway's order: the token's user channel
 * first (when it has a user), then each topic once, in the order asked.
 */
export function streamChannels (user: string | undefined, topics: readonly string[]): string[] {
  const channels = user === undefined || user === '' ? [] : [`user:${user}`]
  for (const topic of new Set(topics)) channels.push(`topic:${topic}`)
  return channels
}

/**
 * Names the channel of each event of a stream from its `id:` (see the
 * module comment). With `user` undefined (cookie auth, or a token that is
 * not a JWT), the user channel, where the stream has one, is the hash that
 * no topic has, named `user:`.
 */
export class EventChannels {
  private readonly byHash = new Map<string, string>()
  /** What a bare entry id (a stream of one channel) names. */
  private readonly single: string | undefined

  constructor (private readonly user: string | undefined, topics: readonly string[]) {
    const channels = streamChannels(user, topics)
    // Unknown user: no topic is the user's own stream; one topic is that
    // topic alone (with a user channel beside it the id would be a cursor).
    this.single = user !== undefined ? (channels.length === 1 ? channels[0] : undefined) : channels.length === 0 ? 'user:' : channels.length === 1 ? channels[0] : undefined
    // The gateway's hashes, colliding ones rehashed as it does (one in two billion).
    const used = new Set<string>()
    for (const channel of channels) {
      let hash = channelHash(channel)
      for (let n = 1; used.has(hash); n++) hash = channelHash(`${channel}\u0000${n}`)
      used.add(hash)
      this.byHash.set(hash, channel)
    }
  }

  /** The channel of the event whose `id:` is `id`, or undefined when the id names none this stream has. */
  channelOf (id: string): string | undefined {
    if (!id.startsWith('1.')) return this.single
    const channel = this.byHash.get(id.slice(2, 2 + HASH_WIDTH))
    return channel ?? (this.user === undefined ? 'user:' : undefined)
  }
}

/** The `sub` claim of a JWT, read without verifying it (only to name the user channel); undefined for anything else. */
export function tokenSubject (token: string | undefined): string | undefined {
  const payload = token?.split('.')[1]
  if (payload === undefined || typeof atob !== 'function') return undefined
  try {
    const bytes = Uint8Array.from(atob(payload.replace(/-/g, '+').replace(/_/g, '/')), c => c.charCodeAt(0))
    const sub = (JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown }).sub
    return typeof sub === 'string' ? sub : undefined
  } catch {
    return undefined
  }
}

/** The URL a new EventSource opens: topics, token and the cursor as query parameters. */
export function streamUrl (base: string | URL, topics: readonly string[], token: string | undefined, lastEventId: string | undefined, channelOnWire = false): string {
  const url = new URL(String(base), pageHref())
  for (const topic of topics) url.searchParams.append('topic', topic)
  if (channelOnWire) url.searchParams.set('channel', 'data')
  if (token !== undefined && token !== '') url.searchParams.set('token', token)
  else url.searchParams.delete('token')
  if (lastEventId !== undefined && lastEventId !== '') url.searchParams.set('lastEventId', lastEventId)
  return url.toString()
}

function pageHref (): string | undefined {
  return (globalThis as { location?: { href?: string } }).location?.href
}

function defaultStorage (): StorageLike | null {
  try {
    // Throws in some sandboxed frames and with storage disabled.
    return (globalThis as { sessionStorage?: StorageLike }).sessionStorage ?? null
  } catch {
    return null
  }
}

function readStored (storage: StorageLike | null, key: string): string | undefined {
  try {
    return storage?.getItem(key) ?? undefined
  } catch {
    return undefined
  }
}

function store (storage: StorageLike | null, key: string, value: string): void {
  try {
    storage?.setItem(key, value)
  } catch {
    // Quota or privacy mode: the cursor is still kept in memory.
  }
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Opens a stream that keeps itself connected until `close()`. */
export function connect (options: ConnectOptions): Connection {
  const found = options.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource
  if (typeof found !== 'function') {
    throw new TypeError('sse-client: no EventSource here; pass one as `EventSource` (in Node: import { EventSource } from \'eventsource\')')
  }
  const ES: EventSourceConstructor = found
  if (typeof options.onEvent !== 'function') throw new TypeError('sse-client: `onEvent` must be a function')
  const topics = [...(options.topics ?? [])]
  const onWire = options.channelOnWire === true
  // Fail now, not in a later turn: a relative URL needs a page to resolve against.
  streamUrl(options.url, topics, undefined, undefined)
  const storage = options.storage === undefined ? defaultStorage() : options.storage
  const storageKey = options.storageKey ?? `sse-gateway:cursor:${String(options.url)}|${[...topics].sort().join(',')}`
  const initialMs = options.backoff?.initialMs ?? 1000
  const maxMs = Math.max(initialMs, options.backoff?.maxMs ?? 30000)
  const names = new Set<string>()

  let cursor = options.lastEventId ?? readStored(storage, storageKey)
  let state: ConnectionState = 'connecting'
  let source: EventSourceLike | undefined
  let deliver: ((event: MessageEventLike) => void) | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let attempt = 0
  let openedAt = 0
  let closed = false
  // Bumped by every new attempt and by close(): stale callbacks see a newer value and stop.
  let generation = 0

  const setState = (next: ConnectionState, detail: StateDetail = {}): void => {
    state = next
    options.onState?.(next, detail)
  }

  const remember = (id: string): void => {
    if (id === '' || id === cursor) return
    cursor = id
    store(storage, storageKey, id)
  }

  const drop = (): void => {
    const es = source
    source = undefined
    deliver = undefined
    es?.close()
  }

  const retryLater = (reason: TokenReason | 'token-error', error?: unknown, message?: string): void => {
    drop()
    attempt++
    const delayMs = backoffDelay(attempt, initialMs, maxMs)
    const next: TokenReason = reason === 'token-error' ? 'error' : reason
    setState('backing-off', { reason, delayMs, attempt, error, message })
    const gen = generation
    timer = setTimeout(() => {
      timer = undefined
      if (gen === generation && !closed) void open(next)
    }, delayMs)
  }

  const listenOn = (es: EventSourceLike, name: string): void => {
    es.addEventListener(name, event => { if (es === source) deliver?.(event) })
  }

  async function open (reason: TokenReason): Promise<void> {
    const gen = ++generation
    drop()
    setState('connecting', { reason })
    let token: string | undefined
    if (options.getToken !== undefined) {
      try {
        token = (await options.getToken(reason)) ?? undefined
      } catch (error) {
        if (gen === generation && !closed) retryLater('token-error', error)
        return
      }
      if (gen !== generation || closed) return
    }
    const es = new ES(streamUrl(options.url, topics, token, cursor, onWire), options.withCredentials === true ? { withCredentials: true } : undefined)
    source = es
    const current = (): boolean => es === source && !closed
    const channels = new EventChannels(options.user ?? tokenSubject(token), topics)

    deliver = event => {
      remember(event.lastEventId)
      if (onWire) {
        const cut = event.data.indexOf('\n')
        const data = cut === -1 ? '' : event.data.slice(cut + 1)
        options.onEvent(event.type, data, event.lastEventId, cut === -1 ? event.data : event.data.slice(0, cut))
      } else {
        options.onEvent(event.type, event.data, event.lastEventId, channels.channelOf(event.lastEventId))
      }
    }
    es.onopen = () => {
      if (!current()) return
      openedAt = Date.now()
      attempt = 0
      setState('open')
    }
    es.onerror = (error: unknown) => {
      if (!current()) return
      // CLOSED: EventSource gave up (non-200, wrong type, or a fatal network
      // error); only a new EventSource, with a fresh token, can go on.
      if (es.readyState === CLOSED) retryLater('error', error)
      else if (state !== 'reconnecting') setState('reconnecting', { reason: 'error', error })
    }
    listenOn(es, 'message')
    for (const name of names) listenOn(es, name)
    es.addEventListener(CONTROL_EVENTS.gap, event => {
      if (!current()) return
      remember(event.lastEventId)
      const body = parseJson(event.data) as { channels?: unknown } | undefined
      const channels = Array.isArray(body?.channels) ? body.channels as GapChannel[] : []
      options.onGap?.(channels)
    })
    es.addEventListener(CONTROL_EVENTS.tokenExpired, event => {
      if (!current()) return
      const message = (parseJson(event.data) as { message?: string } | undefined)?.message
      if (Date.now() - openedAt < SHORT_LIVED_MS) {
        retryLater('token-expired', undefined, message)
      } else {
        void open('token-expired')
      }
    })
    es.addEventListener(CONTROL_EVENTS.revoked, event => {
      if (!current()) return
      // The same token would get 401: a fresh one, after a back-off (a
      // revoked user may get another revoked token, and must not spin).
      const message = (parseJson(event.data) as { message?: string } | undefined)?.message
      retryLater('revoked', undefined, message)
    })
    es.addEventListener(CONTROL_EVENTS.unavailable, event => {
      if (!current()) return
      // The stream ends after this; EventSource reconnects after its `retry:`.
      const message = (parseJson(event.data) as { message?: string } | undefined)?.message
      setState('reconnecting', { reason: 'unavailable', message })
    })
  }

  for (const name of options.events ?? []) if (name !== 'message' && !name.startsWith('gateway.')) names.add(name)
  void open('initial')

  return {
    close () {
      if (closed) return
      closed = true
      generation++
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      drop()
      setState('closed')
    },
    listen (name: string) {
      if (name === 'message' || name.startsWith('gateway.') || names.has(name)) return
      names.add(name)
      if (source !== undefined) listenOn(source, name)
    },
    get state () { return state },
    get lastEventId () { return cursor },
  }
}
