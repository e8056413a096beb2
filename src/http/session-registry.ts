/**
 * Every session of this replica, from the moment it is admitted: the
 * connection limits, heartbeats, token expiry and shutdown. Sessions do not
 * know it: each reports its end through the callback it was built with
 * (SessionContext.onEnd), which the route points at {@link SessionRegistry.delete}.
 */
import { signalEnds, type ControlCommand, type ControlledSession } from '../core/control.js'
import { Deadlines, type DeadlineSlot } from '../core/deadlines.js'
import type { CloseReason } from '../core/protocol.js'
import { jitteredRetryMs } from '../core/retry.js'

/** What the registry asks of a session (Session implements it). */
export interface RegisteredSession extends DeadlineSlot, ControlledSession {
  /** Token `sub`, counted against MAX_CONNECTIONS_PER_USER; undefined for anonymous streams. */
  readonly user: string | undefined
  /** When it was admitted (ms since epoch). */
  readonly openedAt: number
  /** Writes a heartbeat comment if nothing was written for `intervalMs`. */
  heartbeat (now: number, intervalMs: number): void
  /** The token expired: a `gateway.token-expired` event, then the end. */
  expire (): void
  /** Ends the stream with a `retry:` of `retryMs`. */
  closeWithRetry (reason: CloseReason, retryMs: number): void
  /** A control command ended it: `gateway.revoked`, or `gateway.disconnected` with a `retry:` of `retryMs`. */
  endByControl (reason: 'revoked' | 'disconnected', retryMs: number): void
}

/** Why {@link SessionRegistry.reserve} refused a session. */
export type ReserveRefusal = 'at-capacity' | 'user-limit'

export class SessionRegistry {
  private readonly sessions = new Set<RegisteredSession>()
  private readonly perUser = new Map<string, number>()
  private readonly timer: NodeJS.Timeout
  /** Token expiry of every open session, under one timer. */
  private readonly expiries = new Deadlines<RegisteredSession>(session => { session.expire() })

  /** @param heartbeatIntervalMs a session idle this long gets a comment line (HEARTBEAT_INTERVAL_MS). */
  constructor (private readonly heartbeatIntervalMs: number) {
    // One timer for all sessions; a session idle for a full interval gets a comment.
    this.timer = setInterval(() => {
      const now = Date.now()
      for (const s of this.sessions) s.heartbeat(now, this.heartbeatIntervalMs)
    }, Math.max(250, Math.floor(heartbeatIntervalMs / 2)))
    this.timer.unref()
  }

  /** Sessions admitted: open, or still subscribing. */
  get size (): number {
    return this.sessions.size
  }

  /** Sessions of one user (token `sub`) on this replica, open or subscribing. */
  countFor (user: string): number {
    return this.perUser.get(user) ?? 0
  }

  /**
   * Admits `session` if the limits allow it, counting it at once: the check
   * and the count are one step, with no await between them, so concurrent
   * connects cannot all pass a limit that only one more fits under. The
   * slot is given back by {@link delete} when the session ends, which every
   * path that does not open the stream must make it do.
   */
  reserve (session: RegisteredSession, maxSessions: number, maxPerUser: number): ReserveRefusal | undefined {
    if (this.sessions.size >= maxSessions) return 'at-capacity'
    if (session.user !== undefined && this.countFor(session.user) >= maxPerUser) return 'user-limit'
    this.sessions.add(session)
    if (session.user !== undefined) this.perUser.set(session.user, this.countFor(session.user) + 1)
    return undefined
  }

  /** Ends `session` with `gateway.token-expired` at `atMs` (ms since epoch). */
  expireAt (session: RegisteredSession, atMs: number): void {
    if (this.sessions.has(session)) this.expiries.add(session, atMs)
  }

  /** The session ended: its slot and its expiry are given back. Nothing happens for one not admitted. */
  delete (session: RegisteredSession): void {
    this.expiries.remove(session)
    if (!this.sessions.delete(session) || session.user === undefined) return
    const n = this.countFor(session.user) - 1
    if (n > 0) this.perUser.set(session.user, n)
    else this.perUser.delete(session.user)
  }

  /**
   * Ends every session with a jittered `retry:` (`retryMs` to `retryMs +
   * retryJitterMs`), each at its own moment within `windowMs`, so that the
   * other replicas are not stampeded.
   */
  async closeAll (reason: CloseReason, retryMs: number, retryJitterMs: number, windowMs = 0): Promise<void> {
    const all = [...this.sessions]
    if (windowMs <= 0) {
      for (const s of all) s.closeWithRetry(reason, jitteredRetryMs(retryMs, retryJitterMs))
      return
    }
    await Promise.all(all.map(s => new Promise<void>(resolve => {
      setTimeout(() => {
        s.closeWithRetry(reason, jitteredRetryMs(retryMs, retryJitterMs))
        resolve()
      }, Math.floor(Math.random() * windowMs))
    })))
  }

  /**
   * Ends the sessions `command` names (README "Control"), admitted ones
   * still subscribing included, and returns how many. A revocation ends
   * every session it matches; a disconnect only those opened before
   * `atMs` (when it was given), so a client that came back after it stays.
   * A scan of every session: commands are rare, and a scan of 10,000
   * sessions is about a millisecond.
   */
  applyControl (command: ControlCommand, atMs: number, retryMs: number, retryJitterMs: number): number {
    const reason = command.kind === 'revoke' ? 'revoked' : 'disconnected'
    const ended: RegisteredSession[] = []
    for (const s of this.sessions) {
      if (signalEnds(command, s) && (command.kind === 'revoke' || s.openedAt <= atMs)) ended.push(s)
    }
    for (const s of ended) s.endByControl(reason, jitteredRetryMs(retryMs, retryJitterMs))
    return ended.length
  }

  /** Stops the heartbeat and expiry timers (the app's close). */
  stop (): void {
    clearInterval(this.timer)
    this.expiries.stop()
  }
}
