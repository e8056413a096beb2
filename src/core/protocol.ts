/**
 * The gateway's protocol words in one place: its control events and their
 * payloads, and every closed set of reasons (each is a metric label and a
 * log field too). Pure: no I/O. The browser client (src/client) keeps its
 * own copy of the names, checked against these by a test.
 */
import { ZERO_ID, compareIds, idBefore, idMs, isTimeCursor, type StreamId } from './stream-id.js'

/** Event names under this prefix are the gateway's own; producers cannot use them. */
export const CONTROL_EVENT_PREFIX = 'gateway.'

export const CONTROL_EVENTS = {
  /** Some channels lost history (or the cursor was unusable); data names them. */
  gap: `${CONTROL_EVENT_PREFIX}gap`,
  /** The token expired; the stream ends after this event. */
  tokenExpired: `${CONTROL_EVENT_PREFIX}token-expired`,
  /** This replica cannot serve the stream now (draining, full, Redis down); it ends with a `retry:`. */
  unavailable: `${CONTROL_EVENT_PREFIX}unavailable`,
  /** The token was revoked (by `jti`, or its user's tokens issued before a time); the stream ends, and reconnecting with that token gets 401. */
  revoked: `${CONTROL_EVENT_PREFIX}revoked`,
  /** An operator ended this stream (its user's, or this session); it ends with a `retry:` and may come back. */
  disconnected: `${CONTROL_EVENT_PREFIX}disconnected`,
} as const

/** Where a delivered event came from. */
export type DeliverySource = 'live' | 'replay'
/** Why a channel's history may be incomplete (`gateway.gap`, README "Control events"). */
export type GapReason = 'trimmed' | 'missing' | 'ahead' | 'invalid-cursor' | 'reset'
/** Why a stream ended. */
export type CloseReason = 'client-closed' | 'token-expired' | 'slow-client' | 'shutdown' | 'source-error' | 'revoked' | 'disconnected'
/** Why a connection was refused for authentication or authorization. */
export type AuthFailure = 'missing' | 'invalid' | 'expired' | 'not-configured' | 'forbidden' | 'unknown-issuer' | 'unknown-key' | 'keys-unavailable' | 'revoked'
/** Why a new stream was told to come back later (`gateway.unavailable`). */
export type UnavailableReason = 'draining' | 'at-capacity' | 'source-unavailable' | 'keys-unavailable' | 'disconnected'
/** Why a stream entry was skipped (it breaks the producer contract). */
export type SkipReason = 'no-data' | 'bad-event-name' | 'too-large'
/** Why live reads do not flow (readiness, `/readyz` `live`). */
export type StallReason = 'reader-error' | 'probe-timeout' | 'probe-error' | 'not-standalone' | 'server-check'

/** One channel of a `gateway.gap` event. */
export interface GapNotice {
  readonly channel: string
  readonly reason: GapReason
}

export function gapPayload (channels: readonly GapNotice[]): string {
  return JSON.stringify({ channels })
}

export function tokenExpiredPayload (): string {
  return JSON.stringify({ reason: 'token-expired', message: 'The access token expired: reconnect with a fresh token.' })
}

/** `gateway.revoked`: the token may not be used again. */
export function revokedPayload (): string {
  return JSON.stringify({ reason: 'revoked', message: 'This token was revoked: reconnect with a fresh token.' })
}

/** `gateway.disconnected`: an operator ended the stream. */
export function disconnectedPayload (): string {
  return JSON.stringify({ reason: 'disconnected', message: 'The stream was ended by an operator.' })
}

/** What a client is told with `gateway.unavailable` (or a 503). */
export function unavailableMessage (reason: UnavailableReason): string {
  switch (reason) {
    case 'draining': return 'This replica is shutting down: reconnect.'
    case 'at-capacity': return 'This replica is at its connection limit (MAX_CONNECTIONS): reconnect.'
    case 'disconnected': return 'An operator ended this stream as it opened: reconnect.'
    case 'keys-unavailable': return 'The keys of this token\'s issuer cannot be fetched right now: reconnect shortly.'
    default: return 'The event source (Redis) is unreachable: reconnect shortly.'
  }
}

export function unavailablePayload (reason: UnavailableReason): string {
  return JSON.stringify({ reason, message: unavailableMessage(reason) })
}

/** What is known of a channel whose cursor names no retained entry (see {@link classifyGap}). */
export interface GapFacts {
  /** The channel's cursor (it names no retained entry). */
  readonly cursor: StreamId
  /** Oldest and newest retained entries; undefined when the stream is empty or gone. */
  readonly head: StreamId | undefined
  readonly tail: StreamId | undefined
  /**
   * Entries ever removed from the stream (StreamSource.entriesRemoved);
   * asked for only when the cursor is 0-0 and the stream holds entries.
   */
  readonly removed: number | undefined
  /** When the engine's current dataset began (ms), if it can tell. */
  readonly epochMs: number | undefined
  /** Newest time (ms) among a resume cursor's positions, while it is being checked. */
  readonly resumedFromMs: number | undefined
}

/** A gap to report, and where the channel's cursor moves. */
export interface GapVerdict {
  readonly reason: GapReason
  readonly cursor: StreamId
}

/**
 * Classifies a cursor that names no retained entry: undefined when nothing
 * can have been lost, else the reason and where delivery continues.
 *  - reset: the resume cursor was made before the engine's current dataset
 *    began (Redis restarted without persistence, or was flushed): what the
 *    channel had then, and what was written while the client was away, may
 *    be gone, even if the channel was empty at connect and is empty now;
 *    from the oldest entry held now;
 *  - trimmed: older than the oldest retained entry, the stream gone, or an
 *    empty-at-connect channel that has had entries removed since; from the
 *    oldest retained entry;
 *  - ahead: newer than the newest entry (a failover to a replica that was
 *    behind); from the newest entry;
 *  - missing: within the retained range but deleted; right after the cursor.
 * "From the oldest entry" is just before the head: nothing can be lost
 * between there and the head, and a client reconnecting with that cursor is
 * not told the same gap twice.
 */
export function classifyGap (f: GapFacts): GapVerdict | undefined {
  const beforeHead = f.head === undefined ? ZERO_ID : idBefore(f.head)
  if (f.epochMs !== undefined && f.resumedFromMs !== undefined && f.resumedFromMs < f.epochMs && idMs(f.cursor) < f.epochMs) {
    return { reason: 'reset', cursor: beforeHead }
  }
  if (f.cursor === beforeHead) return undefined
  if (f.cursor === ZERO_ID) {
    // Empty when this cursor was set: lost only if entries were removed since.
    return f.removed === undefined || f.removed === 0 ? undefined : { reason: 'trimmed', cursor: beforeHead }
  }
  if (f.head === undefined || f.tail === undefined || compareIds(f.cursor, f.head) < 0) return { reason: 'trimmed', cursor: beforeHead }
  if (compareIds(f.cursor, f.tail) > 0) return { reason: 'ahead', cursor: f.tail }
  // A `since=` start that a multi-channel id carried before this channel's
  // history was sent: it names a moment, and every entry after it is retained.
  if (isTimeCursor(f.cursor)) return undefined
  return { reason: 'missing', cursor: f.cursor }
}
